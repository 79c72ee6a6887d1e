"""The one place where domain errors become gRPC status codes."""

from __future__ import annotations

import functools
import inspect
import logging

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from edgeatlas.protos import errors
from edgeatlas.protos.wire import CODES

log = logging.getLogger("edgeatlas.coordinator")


def one_line(text: str, limit: int = 500) -> str:
    """A status message is one line: input echoed in it cannot break it or flood it."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "…"


def code_for(exc: errors.EdgeAtlasError) -> grpc.StatusCode:
    for kind in type(exc).__mro__:
        if kind in CODES:
            return CODES[kind]
    return grpc.StatusCode.INTERNAL


class Malformed:
    """Stands in for a request whose bytes did not parse, so the handler can answer INVALID_ARGUMENT."""

    def __init__(self, type_name: str):
        self.type_name = type_name


def tolerant(deserialize, type_name: str):
    """A request deserializer that turns undecodable bytes into Malformed instead of an UNKNOWN error."""
    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception:  # protobuf's DecodeError, or anything a corrupt message provokes
            return Malformed(type_name)
    return parse


def check_parsed(request) -> None:
    """A request that did not parse, or text in it with a NUL character (no database stores one: PostgreSQL
    refuses it), is invalid input."""
    if isinstance(request, Malformed):
        raise errors.InvalidInput(f"malformed {request.type_name} message")
    if isinstance(request, Message) and (field := nul_field(request)):
        raise errors.InvalidInput(f"{field} contains a NUL character")


def nul_field(message: Message) -> str | None:
    """The path of the first text field (map keys and values too) that holds a NUL character, if any."""
    for fd, value in message.ListFields():
        if fd.type == FieldDescriptor.TYPE_STRING:
            if any("\x00" in v for v in (value if fd.is_repeated else (value,))):
                return fd.name
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if any(isinstance(text, str) and "\x00" in text for text in (key, item)):
                        return f"{fd.name}[{key!r}]"
                    if isinstance(item, Message) and (inner := nul_field(item)):
                        return f"{fd.name}[{key!r}].{inner}"
            else:
                for item in (value if fd.is_repeated else (value,)):
                    if (inner := nul_field(item)):
                        return f"{fd.name}.{inner}"
    return None


def rpc(method):
    """Wraps a servicer method: domain errors abort with their code; anything else is INTERNAL."""
    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def stream(self, request, context):
            try:
                check_parsed(request)
                async for item in method(self, request, context):
                    yield item
            except errors.EdgeAtlasError as exc:
                await context.abort(code_for(exc), one_line(str(exc)))
            except (grpc.aio.AbortError, grpc.RpcError, GeneratorExit):
                raise
            except Exception:
                log.exception("%s failed", method.__name__)
                await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed on the coordinator")
        return stream

    @functools.wraps(method)
    async def unary(self, request, context):
        try:
            check_parsed(request)
            return await method(self, request, context)
        except errors.EdgeAtlasError as exc:
            await context.abort(code_for(exc), one_line(str(exc)))
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed on the coordinator")
    return unary
