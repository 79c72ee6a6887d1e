"""Wire limits and conventions shared by clients and servers: sizes, deadlines, auth metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from edgeatlas.protos import errors
from edgeatlas.protos.errors import InvalidInput

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
MAX_BLOB_BYTES = 2 * 1024 * 1024 * 1024
DEFAULT_DEADLINE_S = 30.0
MAX_LEASE_WAIT_S = 60  # the longest LeaseTask long-poll: an idle device asks about once a minute

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 60_000),
    # ...and the server lets a client ping that often while a call waits without data (a long stage of a
    # secure round): by default it allows one every 5 minutes and answers more with "Too many pings".
    ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
    # gRPC's own reconnect backoff grows to 120 s: after an outage an agent came back a minute late.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# Where opted-in agents look for the coordinator's Flower SuperLink unless told (`serve --superlink`).
DEFAULT_COORDINATOR = "127.0.0.1:50051"  # the CLI's, the dashboard's and `coordinator serve`'s default
DEFAULT_SUPERLINK_PORT = 9092


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now, for a server told to take any (port 0)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_address(address: str) -> str:
    """HOST:PORT with a numeric port; one clear line otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"address {address!r} is not HOST:PORT")
    return address


@dataclass(frozen=True)
class ClientTls:
    """PEM files: the CA that signed the coordinator's certificate, and for mutual TLS our own pair."""

    ca: str
    cert: str | None = None
    key: str | None = None


def read_pem(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise InvalidInput(f"{what} {path} is not a PEM file")
    return data


def open_channel(address: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A channel with our size limits; TLS (and a client certificate) when given."""
    check_address(address)
    if tls is None:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if (tls.cert is None) != (tls.key is None):
        raise InvalidInput("a client certificate needs both --tls-cert and --tls-key")
    credentials = grpc.ssl_channel_credentials(root_certificates=read_pem(tls.ca, "CA certificate"),
                                               private_key=read_pem(tls.key, "client key"),
                                               certificate_chain=read_pem(tls.cert, "client certificate"))
    return grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)


# Domain errors ↔ gRPC status codes: servers abort with these, clients turn them back.
CODES = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.IntegrityError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


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
