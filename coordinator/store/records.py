"""The store's typed records: what goes in (a validated report), what comes out (a lease, a heat-map cell), and a
batch's state while it is written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from edgeatlas.coordinator import aggregate
from edgeatlas.coordinator.tables import CellRow, ModelRow, TaskRow
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import Fidelity, LatencyStats, RunParams, ScenarioOutcome, Setting

OPEN_TASK = ("pending", "leased")


@dataclass(frozen=True)
class IncomingReport:
    """A report that passed validation, in domain terms."""

    report_id: str
    task_id: int
    lease_id: str
    status: str  # ok | failed | declined
    failure_reason: str
    setting: Setting | None
    stats: LatencyStats | None  # trusted mode only
    fidelity: Fidelity
    valid: bool
    invalid_reason: str
    privacy_mode: str  # ldp | trusted
    started_ms: int
    agent_version: str
    privacy: PrivacyParams | None = None  # ldp: the contract the release was made under
    released: dict[str, float] = field(default_factory=dict)  # ldp: noised natural logs
    figures: dict[str, float] = field(default_factory=dict)  # trusted: named figures (protos/metrics.py)
    outcome: ScenarioOutcome = field(default_factory=ScenarioOutcome)
    energy_meter: str = ""
    energy_absent: str = ""
    conditions: dict = field(default_factory=dict)  # trusted: the device's state when it ran

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class LeasedTask:
    task: TaskRow
    model: ModelRow
    setting: Setting
    params: RunParams
    privacy: PrivacyParams


@dataclass(frozen=True)
class HeatCell:
    """A heat-map cell's columns as read (a plain record: reading thousands of cells skips the ORM)."""

    id: int
    model_sha256: str
    model_name: str
    hardware_class: str
    setting_key: str
    setting_json: str
    source: str
    citation: str
    privacy: str
    n_reports: int
    n_devices: int
    updated_ms: int


HEAT_COLUMNS = [getattr(CellRow, f.name) for f in dataclasses.fields(HeatCell)]


@dataclass(frozen=True)
class CellView:
    """A heat-map cell as read: estimates, or suppressed below k devices, and devices still needed."""

    cell: HeatCell
    estimates: dict[str, aggregate.Estimate]
    suppressed: bool
    devices_needed: int


@dataclass
class TaskSnapshot:
    """What a report reads of its task."""

    id: int
    agent_id: str
    status: str
    lease_id: str | None
    campaign_id: int
    model_sha256: str
    hardware_class: str


@dataclass(slots=True)
class Fold:
    """One cell's share of a batch: reports folded, the last one's time, and per metric its running sums
    [n, Σ log, Σ log², Σ noise variance] (lists: they are added to in place, once per metric per report)."""

    reports: int
    last_ms: int
    sums: dict[str, list] = field(default_factory=dict)


@dataclass
class Batch:
    """What one group-commit transaction gathers before it writes (Reports.run_batch), kept in the session's
    info under "batch" for the operations that run in it."""

    reports: dict[str, str] = field(default_factory=dict)  # report_id → agent_id: stored, or earlier in the batch
    tasks: dict[int, TaskSnapshot] = field(default_factory=dict)  # the batch's reports' tasks, read ahead
    new_reports: list[dict] = field(default_factory=list)  # ReportRow rows to insert
    task_updates: list[dict] = field(default_factory=list)  # their tasks' new states
    finish: set[int] = field(default_factory=set)  # campaigns to check for completion once, at the end
    contributors: set[tuple[int, str]] = field(default_factory=set)  # (cell, agent) pairs perhaps not stored
    folds: dict[int, Fold] = field(default_factory=dict)  # cell id → what the batch adds to it
    new_cells: dict[tuple, tuple[int, str]] = field(default_factory=dict)  # cell key → (id, privacy) once committed
    mixed: dict[int, str] = field(default_factory=dict)  # cell id → its privacy, now of mixed contracts
    metric_rows: set[tuple[int, str]] = field(default_factory=set)  # (cell, metric) rows stored by the batch


def batch_of(s) -> Batch | None:
    """The batch a session is writing, or None outside the group-commit writer."""
    return s.info.get("batch")
