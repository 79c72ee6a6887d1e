"""Wire limits and conventions shared by clients and servers: sizes, deadlines, auth metadata."""

from __future__ import annotations

from edgeatlas.protos.errors import InvalidInput

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
MAX_BLOB_BYTES = 2 * 1024 * 1024 * 1024
DEFAULT_DEADLINE_S = 30.0
MAX_LEASE_WAIT_S = 20

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 60_000),
]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def check_address(address: str) -> str:
    """HOST:PORT with a numeric port; one clear line otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"address {address!r} is not HOST:PORT")
    return address
