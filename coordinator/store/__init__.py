"""The coordinator's state, over SQLModel (SQLite WAL or PostgreSQL): one module per aggregate.

`Store` (sql.py) is the one door: tokens, agents, blobs, campaigns, leases, reports, cells, secure rounds
and predictors each add their methods to it from their own module, over one engine (engine.py) and one
group-commit writer (writer.py). Records that cross the door are in records.py. Scheduling rules (selectors, quotas,
runs per task) are not state: they live in coordinator/scheduling.py.
"""

from edgeatlas.coordinator.store.engine import now_ms
from edgeatlas.coordinator.store.records import OPEN_TASK, CellView, HeatCell, IncomingReport, LeasedTask
from edgeatlas.coordinator.store.reports import check_released
from edgeatlas.coordinator.store.sql import Store

__all__ = ["OPEN_TASK", "CellView", "HeatCell", "IncomingReport", "LeasedTask", "Store", "check_released", "now_ms"]
