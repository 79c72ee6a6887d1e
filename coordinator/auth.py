"""Tokens and credentials: random secrets handed out once; only their sha256 is stored."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = {"enroll": "ea_enroll_", "admin": "ea_admin_", "agent": "ea_agent_"}


def new_token(kind: str) -> str:
    return PREFIX[kind] + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_from(metadata) -> str | None:
    """The token of an `authorization: Bearer ...` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip() or None
    return None
