"""What replicas read of each other in the database: the leader's address, and whether the database answers."""

from __future__ import annotations

from sqlalchemy import text

from edgeatlas.coordinator.store.engine import now_ms
from edgeatlas.coordinator.tables import LeaderRow


class Replicas:
    """The Store's methods for replicas (its engine and write lock are set up in sql.Store)."""

    def set_leader(self, replica_id: str, address: str) -> None:
        """Written by the replica that just took the leader lock (coordinator/replicas.Leadership)."""
        with self._write, self.session() as s:
            row = s.get(LeaderRow, 1) or LeaderRow(id=1, replica_id=replica_id, address=address, since_ms=0)
            row.replica_id, row.address, row.since_ms = replica_id, address, now_ms()
            s.add(row)
            s.commit()

    def leader_address(self) -> str:
        with self.session() as s:
            row = s.get(LeaderRow, 1)
            return row.address if row is not None else ""

    def ping(self) -> None:
        """Raises unless the database answers a query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
