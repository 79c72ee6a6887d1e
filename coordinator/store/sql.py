"""The Store over SQLModel: one engine, one writer thread, the caches, and the aggregates' methods."""

from __future__ import annotations

import math
import threading

from sqlalchemy import event
from sqlmodel import SQLModel, Session, create_engine

from edgeatlas.coordinator.store.agents import Agents
from edgeatlas.coordinator.store.blobs import Blobs
from edgeatlas.coordinator.store.campaigns import Campaigns
from edgeatlas.coordinator.store.cells import Cells
from edgeatlas.coordinator.store.engine import add_missing_columns, check_sqlite, sqlite_pragmas
from edgeatlas.coordinator.store.leases import Leases
from edgeatlas.coordinator.store.predictors import Predictors
from edgeatlas.coordinator.store.replicas import Replicas
from edgeatlas.coordinator.store.reports import Reports
from edgeatlas.coordinator.store.secure import SecureRounds
from edgeatlas.coordinator.store.tokens import Tokens
from edgeatlas.coordinator.store.writer import GroupCommit
from edgeatlas.coordinator.tables import AgentRow
from edgeatlas.protos.errors import InvalidInput


class Store(Tokens, Agents, Blobs, Campaigns, Leases, Reports, Cells, SecureRounds, Predictors, Replicas):
    """One database; writes are serialised in-process (SQLite allows one writer at a time)."""

    def __init__(self, url: str):
        if not (url.startswith("sqlite:///") or url.startswith("postgresql")):
            raise InvalidInput(f"database URL {url!r}: expected sqlite:///PATH or postgresql://...")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs = {"connect_args": {"check_same_thread": False, "timeout": 30}} if self.is_sqlite else {
            "pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", sqlite_pragmas)
            check_sqlite(self.engine, url[len("sqlite:///"):])
        SQLModel.metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        self._write = threading.Lock()
        self._swept_ms = 0
        self._writer = GroupCommit(self.run_batch, self.flush_touches)
        self._touches: dict[str, tuple[int, str | None]] = {}  # agent_id → (last seen, state): not yet written
        self._touch_lock = threading.Lock()
        self._credentials: dict[str, AgentRow] = {}  # credential hash → its agent, while none is revoked
        self._revocations: tuple[int, float] = (-1, -math.inf)  # (revoked agents, when counted)
        self._revocation_lock = threading.Lock()
        self._agents: dict[str, AgentRow] = {}  # agent_id → its row as enrolled
        self._contributors: set[tuple[int, str]] = set()  # (cell id, agent id) known to be stored
        self._metric_rows: set[tuple[int, str]] = set()  # (cell id, metric) known to be stored
        self._cells: dict[tuple, tuple[int, str]] = {}  # (model, class, setting key, source) → (cell id, privacy)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self._writer.stop()
        self.flush_touches()
        self.engine.dispose()
