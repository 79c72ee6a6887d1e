"""The one place where domain errors become gRPC status codes."""

from __future__ import annotations

import functools
import inspect
import logging

import grpc

from edgeatlas.protos import errors

log = logging.getLogger("edgeatlas.coordinator")

CODES = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.IntegrityError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def code_for(exc: errors.EdgeAtlasError) -> grpc.StatusCode:
    for kind in type(exc).__mro__:
        if kind in CODES:
            return CODES[kind]
    return grpc.StatusCode.INTERNAL


def rpc(method):
    """Wraps a servicer method: domain errors abort with their code; anything else is INTERNAL."""
    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def stream(self, request, context):
            try:
                async for item in method(self, request, context):
                    yield item
            except errors.EdgeAtlasError as exc:
                await context.abort(code_for(exc), str(exc))
            except (grpc.aio.AbortError, grpc.RpcError, GeneratorExit):
                raise
            except Exception:
                log.exception("%s failed", method.__name__)
                await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed on the coordinator")
        return stream

    @functools.wraps(method)
    async def unary(self, request, context):
        try:
            return await method(self, request, context)
        except errors.EdgeAtlasError as exc:
            await context.abort(code_for(exc), str(exc))
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed on the coordinator")
    return unary


def error_for(exc: grpc.RpcError) -> errors.EdgeAtlasError:
    """The reverse direction, for clients: a gRPC failure as the domain error it stands for."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.Unavailable(f"coordinator unreachable ({code.name.lower()}): {details}")
    for kind, mapped in CODES.items():
        if mapped == code:
            return kind(details)
    return errors.EdgeAtlasError(f"coordinator error {code.name if code else '?'}: {details}")
