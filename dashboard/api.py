"""The dashboard's one door to the coordinator: its admin API, with errors a person can act on."""

from __future__ import annotations

import os
from dataclasses import dataclass

from edgeatlas.protos import errors
from edgeatlas.protos.admin_client import AdminClient
from edgeatlas.protos.wire import DEFAULT_COORDINATOR, ClientTls, check_address


@dataclass(frozen=True)
class Connection:
    address: str
    token: str
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def from_env(cls) -> "Connection":
        env = os.environ
        return cls(env.get("EDGEATLAS_COORDINATOR", DEFAULT_COORDINATOR), env.get("EDGEATLAS_ADMIN_TOKEN", ""),
                   env.get("EDGEATLAS_TLS_CA", ""), env.get("EDGEATLAS_TLS_CERT", ""),
                   env.get("EDGEATLAS_TLS_KEY", ""))

    def client(self) -> AdminClient:
        check_address(self.address)
        tls = ClientTls(ca=self.tls_ca, cert=self.tls_cert or None, key=self.tls_key or None) if self.tls_ca else None
        return AdminClient(self.address, self.token or None, tls)


def explain(exc: errors.EdgeAtlasError, address: str) -> str:
    """One line that says what went wrong and what to do about it."""
    if isinstance(exc, errors.Unavailable):
        return (f"The coordinator at {address} cannot be reached ({exc}). Is it running? Start one with "
                f"`edgeatlas coordinator serve`, or give its address with `--coordinator HOST:PORT`.")
    if isinstance(exc, errors.Unauthenticated):
        return (f"The coordinator at {address} refused the admin token: {exc}. Use the admin token it printed "
                f"on its first start (or EDGEATLAS_ADMIN_TOKEN).")
    if isinstance(exc, errors.InvalidInput):
        return f"Invalid input: {exc}"
    if isinstance(exc, errors.NotFound):
        return f"Not found: {exc}"
    return str(exc)
