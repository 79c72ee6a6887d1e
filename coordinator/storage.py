"""The Store: every read and write of coordinator state, over SQLModel (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

from sqlalchemy import bindparam, event, func, inspect, literal, or_, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlmodel import Session, SQLModel, create_engine, select

from edgeatlas.coordinator import aggregate
from edgeatlas.coordinator.tables import (
    AdaptiveRoundRow, AgentRow, BlobChunkRow, BlobRow, CampaignRow, CellContributorRow, CellMetricRow, CellRow,
    HardwareRow, ModelRow, PredictorRow, ReportRow, TaskRow, TokenRow)
from edgeatlas.protos import scenarios
from edgeatlas.protos.errors import Conflict, EdgeAtlasError, InvalidInput, NotFound, PermissionDenied
from edgeatlas.protos.privacy import STATISTICS, PrivacyParams
from edgeatlas.protos.records import Fidelity, LatencyStats, RunParams, ScenarioOutcome, Schedule, Setting
from edgeatlas.protos.spec import SpecSheet

MAX_LEASE_ATTEMPTS = 3
LEASE_GRACE_S = 300  # model download and session load, on top of the run's own limit
OPEN_TASK = ("pending", "leased")
OFFLINE_AFTER_MS = 90_000  # an agent unheard of this long is offline: its pending tasks are up for adoption
SWEEP_EVERY_MS = 5_000  # how often leasing looks for overdue campaigns and orphaned tasks
TOUCH_FLUSH_S = 1.0  # heartbeats are written together at most this long after they arrive
MAX_BATCH = 256  # operations that share one transaction (and one fsync)
CREDENTIAL_CACHE_S = 10.0

log = logging.getLogger("edgeatlas.coordinator")


def now_ms() -> int:
    return int(time.time() * 1000)


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


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a report is acknowledged only once it is on disk
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """One database; writes are serialised in-process (SQLite allows one writer at a time)."""

    def __init__(self, url: str):
        if not (url.startswith("sqlite:///") or url.startswith("postgresql")):
            raise InvalidInput(f"database URL {url!r}: expected sqlite:///PATH or postgresql://...")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        self.is_sqlite = url.startswith("sqlite")
        kwargs = {"connect_args": {"check_same_thread": False, "timeout": 30}} if self.is_sqlite else {
            "pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        SQLModel.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._write = threading.Lock()
        self._swept_ms = 0
        self._writer = GroupCommit(self)
        self._touches: dict[str, tuple[int, str | None]] = {}  # agent_id → (last seen, state): not yet written
        self._touch_lock = threading.Lock()
        self._credentials: dict[str, tuple[AgentRow, float]] = {}  # credential hash → (agent, valid until)
        self._agents: dict[str, AgentRow] = {}  # agent_id → its row as enrolled
        self._contributors: set[tuple[int, str]] = set()  # (cell id, agent id) known to be stored

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self._writer.stop()
        self.flush_touches()
        self.engine.dispose()

    # ---- tokens -------------------------------------------------------------------------------
    def add_token(self, kind: str, token_hash: str, expires_ms: int | None = None,
                  uses: int | None = None) -> None:
        with self._write, self.session() as s:
            if s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash)).first() is None:
                s.add(TokenRow(kind=kind, token_hash=token_hash, created_ms=now_ms(),
                               expires_ms=expires_ms, uses_left=uses))
                s.commit()

    def has_token(self, kind: str) -> bool:
        with self.session() as s:
            return s.exec(select(TokenRow).where(TokenRow.kind == kind)).first() is not None

    def check_token(self, kind: str, token_hash: str, consume: bool = False) -> bool:
        """True when a live token of this kind has this hash; `consume` spends one use."""
        with self._write, self.session() as s:
            row = s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash,
                                                TokenRow.kind == kind)).first()
            if row is None or row.revoked or (row.expires_ms and row.expires_ms < now_ms()):
                return False
            if row.uses_left is not None:
                if row.uses_left <= 0:
                    return False
                if consume:
                    row.uses_left -= 1
                    s.add(row)
                    s.commit()
            return True

    # ---- agents -------------------------------------------------------------------------------
    def enroll(self, name: str, spec: SpecSheet, credential_hash: str, labels: dict[str, str],
               agent_version: str, simulated: bool = False) -> AgentRow:
        hw = spec.hardware_class("cpu")
        t = now_ms()
        row = AgentRow(agent_id=str(uuid.uuid4()), credential_hash=credential_hash, name=name,
                       spec_json=spec.to_json(), hardware_class=hw, device_class=spec.device_class or "",
                       labels_json=json.dumps(labels), agent_version=agent_version, enrolled_ms=t,
                       last_seen_ms=t, state="enrolled", simulated=simulated)
        with self._write, self.session() as s:
            s.add(row)
            if s.get(HardwareRow, hw) is None:
                s.add(HardwareRow(hardware_class=hw, spec_json=spec.to_json(), first_seen_ms=t))
            s.commit()
        return row

    def agent_by_credential(self, credential_hash: str) -> AgentRow | None:
        """The agent holding this credential, unless it was revoked. Known ones are remembered for
        CREDENTIAL_CACHE_S: a revocation here is seen at once, one made through another replica within that."""
        hit = self._credentials.get(credential_hash)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        with self.session() as s:
            agent = s.exec(select(AgentRow).where(AgentRow.credential_hash == credential_hash,
                                                  AgentRow.revoked == False)).first()  # noqa: E712
        if agent is not None:
            if len(self._credentials) > 100_000:
                self._credentials.clear()
                self._agents.clear()
            self._credentials[credential_hash] = (agent, time.monotonic() + CREDENTIAL_CACHE_S)
            self._agents[agent.agent_id] = agent
        return agent

    def _enrolled(self, s: Session, agent_id: str) -> AgentRow | None:
        """The agent's row, from the credential cache when it is there: what a fold reads of an agent
        (its class, spec sheet, simulated or not) never changes after enrolment."""
        hit = self._agents.get(agent_id)
        return hit if hit is not None else s.get(AgentRow, agent_id)

    def revoke_token(self, token_hash: str) -> bool:
        with self._write, self.session() as s:
            row = s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash)).first()
            if row is None:
                raise NotFound("no such token")
            row.revoked = True
            s.add(row)
            s.commit()
            return True

    def revoke_agent(self, agent_id: str) -> bool:
        with self._write, self.session() as s:
            agent = s.get(AgentRow, agent_id)
            if agent is None:
                raise NotFound(f"agent {agent_id} does not exist")
            agent.revoked = True
            self._credentials.pop(agent.credential_hash, None)
            s.add(agent)
            for task in s.exec(select(TaskRow).where(TaskRow.agent_id == agent_id,
                                                     TaskRow.status.in_(OPEN_TASK))).all():
                task.status, task.failure_reason, task.updated_ms = "cancelled", "agent revoked", now_ms()
                s.add(task)
                self._maybe_finish(s, s.get(CampaignRow, task.campaign_id))
            s.commit()
            return True

    def touch_agent(self, agent_id: str, state: str | None = None) -> None:
        """Notes that the agent was heard from; written with others within TOUCH_FLUSH_S (a heartbeat is
        no report: losing the last second of them in a crash loses nothing)."""
        with self._touch_lock:
            keep = self._touches.get(agent_id, (0, None))[1]
            self._touches[agent_id] = (now_ms(), state or keep)
        self._writer.wake()

    def flush_touches(self) -> None:
        with self._touch_lock:
            touches, self._touches = self._touches, {}
        if not touches:
            return
        table = AgentRow.__table__
        statement = update(table).where(table.c.agent_id == bindparam("aid")).values(
            last_seen_ms=bindparam("t"), state=func.coalesce(bindparam("st"), table.c.state))  # no state: keep it
        with self._write, self.session() as s:
            s.connection().execute(statement, [{"aid": a, "t": t, "st": st} for a, (t, st) in touches.items()])
            s.commit()

    def list_agents(self) -> list[tuple[AgentRow, int]]:
        self.flush_touches()
        with self.session() as s:
            agents = s.exec(select(AgentRow).order_by(AgentRow.enrolled_ms)).all()
            done = dict(s.exec(select(TaskRow.agent_id, func.count()).where(TaskRow.status == "done")
                               .group_by(TaskRow.agent_id)).all())
            return [(a, int(done.get(a.agent_id, 0))) for a in agents]

    def privacy_spent(self, since_ms: int) -> dict[str, tuple[float, int]]:
        """agent_id → (Σ ε, number) of the private releases it sent since `since_ms`.

        Basic composition: an upper bound of what the device's own (Rényi) ledger counts."""
        with self.session() as s:
            rows = s.exec(select(ReportRow.agent_id, ReportRow.privacy_json).where(
                ReportRow.received_ms >= since_ms, ReportRow.privacy_mode == "ldp")).all()
        out: dict[str, tuple[float, int]] = {}
        for agent_id, privacy_json in rows:
            eps = float(json.loads(privacy_json or "{}").get("epsilon", 0.0))
            total, n = out.get(agent_id, (0.0, 0))
            out[agent_id] = (total + eps, n + 1)
        return out

    # ---- blobs and models ---------------------------------------------------------------------
    def put_blob(self, sha256: str, size_bytes: int, chunks: Iterable[bytes]) -> None:
        """Stores a verified blob; chunks are the caller's, already checked against sha256."""
        with self._write, self.session() as s:
            if s.get(BlobRow, sha256) is not None:
                return
            n = 0
            for n, data in enumerate(chunks, start=1):
                s.add(BlobChunkRow(sha256=sha256, idx=n - 1, data=data))
            s.add(BlobRow(sha256=sha256, size_bytes=size_bytes, n_chunks=n, created_ms=now_ms()))
            s.commit()

    def blob(self, sha256: str) -> BlobRow | None:
        with self.session() as s:
            return s.get(BlobRow, sha256)

    def blob_chunks(self, sha256: str, start_idx: int = 0) -> Iterator[bytes]:
        blob = self.blob(sha256)
        if blob is None:
            raise NotFound(f"no blob {sha256}")
        for idx in range(start_idx, blob.n_chunks):
            with self.session() as s:
                yield s.get(BlobChunkRow, (sha256, idx)).data

    def add_model(self, name: str, fmt: str, sha256: str, reference_sha256: str, summary_json: str) -> ModelRow:
        model_blob = self.blob(sha256)
        if model_blob is None:
            raise NotFound(f"model bytes {sha256[:12]} were not uploaded")
        ref_blob = self.blob(reference_sha256) if reference_sha256 else None
        if reference_sha256 and ref_blob is None:
            raise NotFound(f"reference bytes {reference_sha256[:12]} were not uploaded")
        with self._write, self.session() as s:
            existing = s.get(ModelRow, sha256)
            if existing is not None:
                return existing
            if s.exec(select(ModelRow).where(ModelRow.name == name)).first() is not None:
                raise Conflict(f"a different model is already named {name!r}")
            row = ModelRow(sha256=sha256, name=name, format=fmt, size_bytes=model_blob.size_bytes,
                           reference_sha256=reference_sha256,
                           reference_size_bytes=ref_blob.size_bytes if ref_blob else 0,
                           summary_json=summary_json, created_ms=now_ms())
            s.add(row)
            s.commit()
            return row

    def list_models(self) -> list[ModelRow]:
        with self.session() as s:
            return list(s.exec(select(ModelRow).order_by(ModelRow.created_ms, ModelRow.name)).all())

    def resolve_models(self, wanted: list[str]) -> list[ModelRow]:
        """Names or sha256 prefixes (≥ 8 hex) → models, in the order asked; unknown ones are an error."""
        models = self.list_models()
        found = []
        for want in wanted:
            hits = [m for m in models if m.name == want] or (
                [m for m in models if m.sha256.startswith(want)] if len(want) >= 8 else [])
            if len(hits) != 1:
                raise NotFound(f"model {want!r} is {'ambiguous' if hits else 'not registered'}")
            found.append(hits[0])
        return found

    # ---- campaigns and tasks ------------------------------------------------------------------
    def create_campaign(self, name: str, models: list[ModelRow], selectors: dict[str, str], repeats: int,
                        setting: Setting, params: RunParams, privacy: PrivacyParams | None = None,
                        target_precision: float = 0.0, schedule: Schedule = Schedule(), adaptive_json: str = "") -> int:
        """A campaign's id; an adaptive one (adaptive_json set) starts without tasks: its rounds add them."""
        t = now_ms()
        schedule.check(t)
        check_selectors(selectors)
        with self.session() as s:
            agents = [a for a in s.exec(select(AgentRow).where(AgentRow.revoked == False)).all()  # noqa: E712
                      if matches(a, selectors)]
        if not agents:
            raise Conflict("no enrolled agent matches the campaign's selectors"
                           + (f" {selectors}" if selectors else ""))
        if adaptive_json and len({a.simulated for a in agents}) > 1:
            raise Conflict("an adaptive campaign learns from simulated or from real devices, not both: "
                           "add label.simulated=true or label.simulated!=true to its selectors")
        agents = within_quota(agents, schedule.quota, t)
        with self._write, self.session() as s:
            campaign = CampaignRow(name=name, created_ms=t, models_json=json.dumps([m.sha256 for m in models]),
                                   selectors_json=json.dumps(selectors), repeats=repeats,
                                   setting_json=json.dumps(setting.to_dict()),
                                   params_json=json.dumps(asdict(params)),
                                   privacy_json=json.dumps((privacy or PrivacyParams()).check().to_dict()),
                                   target_precision=target_precision, n_agents=len(agents),
                                   priority=schedule.priority, deadline_ms=schedule.deadline_ms or None,
                                   quota=schedule.quota, adaptive_json=adaptive_json)
            s.add(campaign)
            s.flush()
            for repeat in range(0 if adaptive_json else repeats):
                for model in models:
                    for agent in agents:
                        s.add(TaskRow(campaign_id=campaign.id, agent_id=agent.agent_id,
                                      hardware_class=agent.hardware_class, model_sha256=model.sha256,
                                      repeat=repeat, updated_ms=t))
            s.commit()
            return int(campaign.id)

    def create_federated_campaign(self, name: str, federated_json: str, devices: int) -> int:
        """A federated-train campaign: no tasks; coordinator/federated.py runs it on the SuperLink."""
        with self._write, self.session() as s:
            campaign = CampaignRow(name=name, created_ms=now_ms(), models_json="[]", setting_json="{}",
                                   params_json="{}", n_agents=devices, federated_json=federated_json)
            s.add(campaign)
            s.commit()
            return int(campaign.id)

    def finish_federated(self, campaign_id: int, federated_json: str, reason: str) -> None:
        with self._write, self.session() as s:
            campaign = s.get(CampaignRow, campaign_id)
            if campaign is None:
                raise NotFound(f"no campaign {campaign_id}")
            campaign.federated_json, campaign.stop_reason = federated_json, reason
            if campaign.status == "running":
                campaign.status, campaign.finished_ms = "done", now_ms()
            s.add(campaign)
            s.commit()

    def lease(self, agent_id: str) -> LeasedTask | None:
        return self.submit_lease(agent_id).result()

    def submit_lease(self, agent_id: str) -> Future:
        """The agent's next open task, leased to it once the lease is durable (a Future of LeasedTask or None):
        its own first, highest priority first, else one adopted from a vanished or overdue device of its
        hardware class.

        An agent runs one task at a time and reports before it asks again, so a task still leased
        to the asking agent is orphaned (say, the lease reply was lost in a coordinator crash):
        it is offered again first, under a new lease.
        """
        return self._writer.submit(lambda s: self._lease(s, agent_id), flush_first=True)

    def _lease(self, s: Session, agent_id: str) -> LeasedTask | None:
        t = now_ms()
        if t - self._swept_ms >= SWEEP_EVERY_MS:
            self._sweep(s, t)
            self._swept_ms = t
        while True:
            row = s.exec(
                select(TaskRow).join(CampaignRow, CampaignRow.id == TaskRow.campaign_id)
                .where(TaskRow.agent_id == agent_id, CampaignRow.status == "running",
                       TaskRow.status.in_(OPEN_TASK))
                .order_by(TaskRow.status, CampaignRow.priority.desc(),  # leased first
                          TaskRow.campaign_id, TaskRow.repeat, TaskRow.id)
            ).first() or self._adopt(s, agent_id)
            if row is None:
                return None
            campaign = s.get(CampaignRow, row.campaign_id)
            params = RunParams(**json.loads(campaign.params_json))
            if row.attempts >= MAX_LEASE_ATTEMPTS:
                row.status, row.failure_reason = "failed", f"no report after {row.attempts} leases"
                row.orphaned, row.updated_ms = False, t
                s.add(row)
                s.flush()  # the next query must see it failed
                self._maybe_finish(s, campaign)
                continue
            row.status, row.lease_id, row.orphaned = "leased", uuid.uuid4().hex, False
            setting = Setting(**json.loads(campaign.setting_json))
            row.lease_expires_ms = t + int((params.max_duration_s * runs_per_task(setting) + LEASE_GRACE_S) * 1000)
            row.attempts += 1
            row.updated_ms = t
            s.add(row)
            model = s.get(ModelRow, row.model_sha256)
            return LeasedTask(task=row, model=model, setting=setting_for(setting, model.format),
                              params=params, privacy=PrivacyParams.from_dict(json.loads(campaign.privacy_json)))

    def _sweep(self, s: Session, t: int) -> None:
        """Campaigns past their deadline expire; tasks whose device went offline (pending) or whose lease
        ran out (leased) become orphans that another device of the same hardware class may adopt."""
        s.flush()
        for campaign in s.exec(select(CampaignRow).where(CampaignRow.status.in_(("running", "paused")),
                                                         CampaignRow.deadline_ms != None,  # noqa: E711
                                                         CampaignRow.deadline_ms < t)).all():
            campaign.status, campaign.finished_ms = "expired", t
            s.add(campaign)
            _cancel_open_tasks(s, campaign.id, t, "the campaign's deadline passed")
        offline = select(AgentRow.agent_id).where(AgentRow.last_seen_ms < t - OFFLINE_AFTER_MS)
        s.exec(update(TaskRow).where(TaskRow.orphaned == False, or_(  # noqa: E712
            (TaskRow.status == "pending") & TaskRow.agent_id.in_(offline),
            (TaskRow.status == "leased") & (TaskRow.lease_expires_ms < t))).values(orphaned=True))

    def expire_overdue(self) -> None:
        """Campaigns past their deadline expire now (leasing also does it, every few seconds)."""
        with self._write, self.session() as s:
            self._sweep(s, now_ms())
            s.commit()

    def _adopt(self, s: Session, agent_id: str) -> TaskRow | None:
        """An orphaned task of this agent's hardware class, moved to it, unless it already holds the same
        (campaign, model, repeat): no device runs two copies of one task."""
        agent = s.get(AgentRow, agent_id)
        orphans = s.exec(
            select(TaskRow, CampaignRow).join(CampaignRow, CampaignRow.id == TaskRow.campaign_id)
            .where(TaskRow.orphaned == True, TaskRow.hardware_class == agent.hardware_class,  # noqa: E712
                   TaskRow.agent_id != agent_id, TaskRow.status.in_(OPEN_TASK), CampaignRow.status == "running")
            .order_by(CampaignRow.priority.desc(), TaskRow.campaign_id, TaskRow.repeat, TaskRow.id).limit(200)).all()
        if not orphans:
            return None
        held = set(s.exec(select(TaskRow.campaign_id, TaskRow.model_sha256, TaskRow.repeat).where(
            TaskRow.agent_id == agent_id, TaskRow.campaign_id.in_({c.id for _, c in orphans}))).all())
        for task, campaign in orphans:
            if (task.campaign_id, task.model_sha256, task.repeat) in held:
                continue
            if not matches(agent, json.loads(campaign.selectors_json)):
                continue
            task.agent_id, task.status, task.orphaned = agent_id, "pending", False
            return task
        return None

    def set_campaign_state(self, campaign_id: int, action: str) -> CampaignRow:
        """pause (running → paused), resume (paused → running) or cancel (running or paused → cancelled)."""
        allowed = {"pause": ("running",), "resume": ("paused",), "cancel": ("running", "paused")}[action]
        t = now_ms()
        with self._write, self.session() as s:
            row = s.get(CampaignRow, campaign_id)
            if row is None:
                raise NotFound(f"campaign {campaign_id} does not exist")
            if row.status not in allowed:
                if action == "cancel" and row.status == "cancelled":
                    return row
                done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
                raise Conflict(f"campaign {campaign_id} is {row.status}: only a {' or '.join(allowed)} "
                               f"campaign can be {done}")
            if action == "pause":
                row.status = "paused"
            elif action == "resume":
                row.status = "running"
                self._maybe_finish(s, row)
            else:
                row.status, row.finished_ms = "cancelled", t
                _cancel_open_tasks(s, campaign_id, t)
            s.add(row)
            s.commit()
            return row

    def record_report(self, agent_id: str, report: IncomingReport) -> bool:
        return self.submit_report(agent_id, report).result()

    def submit_report(self, agent_id: str, report: IncomingReport) -> Future:
        """Stores a report and folds it into its heat-map cell; a Future of True for a duplicate, resolved
        only once it is durable. Reports that arrive together share one transaction (group commit)."""
        return self._writer.submit(lambda s: self._record(s, agent_id, report), on_integrity=True)

    def _record(self, s: Session, agent_id: str, report: IncomingReport) -> bool:
        """Every check comes before the first write: a refused report leaves nothing in the session."""
        t = now_ms()
        added = s.info.setdefault("reports", {})  # report_id → agent_id, of reports not yet flushed
        existing = added.get(report.report_id) or getattr(s.get(ReportRow, report.report_id), "agent_id", None)
        if existing is not None:
            if existing != agent_id:
                raise PermissionDenied("report_id belongs to another agent")
            return True
        task = s.get(TaskRow, report.task_id)
        if task is None:
            raise InvalidInput(f"task {report.task_id} does not exist")
        if task.agent_id != agent_id:
            raise InvalidInput(f"task {report.task_id} is not this agent's")
        if task.status not in OPEN_TASK:
            raise Conflict(f"task {report.task_id} is already {task.status}")
        if task.lease_id != report.lease_id:
            raise Conflict(f"lease {report.lease_id[:8] or '(none)'} of task {report.task_id} is stale")
        campaign = _kept(s, CampaignRow, task.campaign_id)
        if report.ok and report.privacy_mode == "ldp":
            contract = PrivacyParams.from_dict(json.loads(campaign.privacy_json))
            if report.privacy != contract:
                raise InvalidInput(f"the release's mechanism ({report.privacy.describe()}) does not match "
                                   f"campaign {campaign.id}'s contract ({contract.describe()})")
            check_released(report.released, contract)
        agent = self._enrolled(s, agent_id)
        folds = report.ok and report.valid
        hw = _hardware_class(agent, report.setting) if folds else ""
        s.add(ReportRow(
            report_id=report.report_id, task_id=task.id, agent_id=agent_id, received_ms=t,
            status=report.status, failure_reason=report.failure_reason,
            valid=report.valid, invalid_reason=report.invalid_reason, privacy_mode=report.privacy_mode,
            setting_json=json.dumps(report.setting.to_dict() if report.setting else {}),
            stats_json=json.dumps(report.stats.to_dict() if report.stats else {}),
            privacy_json=json.dumps(report.privacy.to_dict() if report.privacy else {}),
            released_json=json.dumps(report.released), figures_json=json.dumps(report.figures),
            context_json=json.dumps({"outcome": asdict(report.outcome), "energy_meter": report.energy_meter,
                                     "energy_absent": report.energy_absent, "conditions": report.conditions}),
            fidelity_json=json.dumps(asdict(report.fidelity)), started_ms=report.started_ms,
            agent_version=report.agent_version))
        added[report.report_id] = agent_id
        task.status = {"ok": "done", "failed": "failed", "declined": "declined"}[report.status]
        task.failure_reason = report.failure_reason if not report.ok else (
            "" if report.valid else report.invalid_reason)
        task.updated_ms = t
        s.add(task)
        if folds:
            self._fold(s, task, agent, hw, report, t)
        self._maybe_finish(s, campaign)
        return False

    def run_batch(self, batch: list[tuple]) -> None:
        """Runs queued operations in one transaction and answers each after its commit. An operation refused
        by its checks (EdgeAtlasError, raised before it writes) is answered with that error; if a write or
        the commit fails, each operation runs again on its own, so one cannot sink the others."""
        results = []
        try:
            with self._write, self.session() as s, s.no_autoflush:
                # A lease's queries must see the writes queued before it: it flushes them first. A report
                # needs no flush: it reads by key, and what the batch made is kept in the session.
                s.info["finish"] = set()
                for fn, on_integrity, flush_first, future in batch:
                    if flush_first:
                        s.flush()
                    try:
                        results.append((future, fn(s), None))
                    except EdgeAtlasError as exc:
                        results.append((future, None, exc))
                finish = s.info.pop("finish")
                for campaign_id in sorted(finish):
                    self._maybe_finish(s, s.get(CampaignRow, campaign_id))
                s.commit()
                if len(self._contributors) > 1_000_000:
                    self._contributors.clear()
                self._contributors |= s.info.get("contributors", set())
        except Exception as exc:
            if len(batch) > 1:
                for op in batch:
                    self.run_batch([op])
                return
            _, on_integrity, _, future = batch[0]
            if isinstance(exc, SAIntegrityError) and on_integrity is not None:
                settle(future, on_integrity, None)  # a concurrent replica stored the same thing first
            else:
                settle(future, None, exc)
            return
        for future, value, exc in results:
            settle(future, value, exc)

    def _fold(self, s: Session, task: TaskRow, agent: AgentRow, hw: str, report: IncomingReport, t: int) -> None:
        setting = report.setting
        source = "trusted" if report.privacy_mode == "trusted" else "fleet"
        if agent.simulated:  # whatever a virtual device claims, its numbers are synthetic
            source = "simulated"
        if report.privacy_mode == "trusted":
            logs = {m: (math.log(v), "") for m, v in aggregate.metric_values(report.stats, report.figures).items()}
            privacy = "simulated (synthetic)" if agent.simulated else "trusted (exact)"
        else:
            logs = aggregate.released_logs(report.released, setting.batch)
            privacy = report.privacy.describe()
            if agent.simulated:
                privacy = f"simulated, {privacy}"
        cell = self._cell(s, _kept(s, ModelRow, task.model_sha256), hw, setting, source, t, privacy)
        if cell.privacy != privacy:
            cell.privacy = f"{source} (mixed contracts)"
        cell.n_reports += 1
        cell.updated_ms = t
        # known contributors: this session's (flushed or not), and those committed before (never deleted)
        contributors = s.info.setdefault("contributors", set())
        key = (cell.id, agent.agent_id)
        if key not in contributors and key not in self._contributors:
            if s.get(CellContributorRow, key) is None:
                s.add(CellContributorRow(cell_id=cell.id, agent_id=agent.agent_id))
                cell.n_devices += 1
            contributors.add(key)
        s.add(cell)
        known = s.info.setdefault("metrics", {})
        if cell.id not in known:
            known[cell.id] = {row.metric: row for row in s.exec(
                select(CellMetricRow).where(CellMetricRow.cell_id == cell.id))}
        have = known[cell.id]
        for metric, (log, statistic) in logs.items():
            row = have.get(metric)
            if row is None:
                row = have[metric] = CellMetricRow(cell_id=cell.id, metric=metric)
            row.n, row.sum_log, row.sumsq_log = aggregate.fold_log(row.n, row.sum_log, row.sumsq_log, log)
            row.noise_var_sum += report.privacy.noise_variance_log(statistic) if statistic else 0.0
            s.add(row)

    def import_cells(self, model_sha256: str, source: str, citation: str,
                     cells: list[tuple[SpecSheet, Setting, dict[str, float]]]) -> int:
        """Stores published values as their own cells; importing again replaces, never adds."""
        t = now_ms()
        with self._write, self.session() as s:
            model = s.get(ModelRow, model_sha256)
            if model is None:
                raise NotFound(f"model {model_sha256[:12]} is not registered")
            for spec, setting, metrics in cells:
                hw = spec.hardware_class(setting.target)
                cell = self._cell(s, model, hw, setting, source, t, "")
                if s.get(HardwareRow, hw) is None:
                    s.add(HardwareRow(hardware_class=hw, spec_json=spec.to_json(), first_seen_ms=t))
                cell.citation, cell.n_reports, cell.n_devices, cell.updated_ms = citation, 1, 1, t
                s.add(cell)
                for metric, value in metrics.items():
                    row = s.get(CellMetricRow, (cell.id, metric)) or CellMetricRow(cell_id=cell.id, metric=metric)
                    row.n, row.sum_log, row.sumsq_log = aggregate.fold(0, 0.0, 0.0, value)
                    s.add(row)
            s.commit()
        return len(cells)

    def _cell(self, s: Session, model: ModelRow, hw: str, setting: Setting, source: str, t: int,
              privacy: str) -> CellRow:
        """The cell of (model, hardware class, setting, source), made on first use; kept for the session."""
        key = (model.sha256, hw, setting.key(), source)
        cells = s.info.setdefault("cells", {})
        cell = cells.get(key) or s.exec(select(CellRow).where(
            CellRow.model_sha256 == model.sha256, CellRow.hardware_class == hw,
            CellRow.setting_key == setting.key(), CellRow.source == source)).first()
        if cell is None:
            cell = CellRow(model_sha256=model.sha256, model_name=model.name, hardware_class=hw,
                           setting_key=setting.key(), setting_json=json.dumps(setting.to_dict()),
                           source=source, privacy=privacy, updated_ms=t)
            s.add(cell)
            s.flush()
        cells[key] = cell
        return cell

    def _maybe_finish(self, s: Session, campaign: CampaignRow) -> None:
        """A running campaign without open tasks is done; inside a batch, checked once at its end."""
        if campaign.adaptive_json or campaign.federated_json:  # its controller ends it
            return
        if "finish" in s.info:
            s.info["finish"].add(campaign.id)
            return
        s.flush()
        open_tasks = s.exec(select(func.count()).select_from(TaskRow).where(
            TaskRow.campaign_id == campaign.id, TaskRow.status.in_(OPEN_TASK))).one()
        if campaign.status == "running" and open_tasks == 0:
            campaign.status, campaign.finished_ms = "done", now_ms()
            s.add(campaign)

    def task_counts(self, campaign_id: int) -> Counter:
        with self.session() as s:
            rows = s.exec(select(TaskRow.status, func.count()).where(TaskRow.campaign_id == campaign_id)
                          .group_by(TaskRow.status)).all()
            return Counter(dict(rows))

    def task_counts_by_hardware(self, campaign_id: int) -> dict[str, Counter]:
        """hardware class → task status counts, for a campaign's progress per class."""
        with self.session() as s:
            rows = s.exec(select(AgentRow.hardware_class, TaskRow.status, func.count())
                          .join(AgentRow, AgentRow.agent_id == TaskRow.agent_id)
                          .where(TaskRow.campaign_id == campaign_id)
                          .group_by(AgentRow.hardware_class, TaskRow.status)).all()
        out: dict[str, Counter] = {}
        for hw, status, n in rows:
            out.setdefault(hw, Counter())[status] = n
        return out

    def failures(self, campaign_id: int, limit: int = 20) -> list[str]:
        with self.session() as s:
            rows = s.exec(select(TaskRow).where(TaskRow.campaign_id == campaign_id, TaskRow.failure_reason != "")
                          .order_by(TaskRow.id).limit(limit)).all()
            return [f"task {r.id}: {r.failure_reason}" for r in rows]

    def campaign(self, campaign_id: int) -> CampaignRow:
        with self.session() as s:
            row = s.get(CampaignRow, campaign_id)
            if row is None:
                raise NotFound(f"campaign {campaign_id} does not exist")
            return row

    # ---- adaptive campaigns (their rounds are chosen by coordinator/adaptive.py) ---------------
    def add_round(self, campaign_id: int, tasks: list[tuple[str, str, str]], row: AdaptiveRoundRow) -> bool:
        """The round's record and its tasks, (agent_id, hardware class, model sha256) each, in one transaction;
        False (nothing written) unless the campaign is still running."""
        t = now_ms()
        with self._write, self.session() as s:
            campaign = s.get(CampaignRow, campaign_id)
            if campaign is None or campaign.status != "running":
                return False
            row.campaign_id, row.created_ms = campaign_id, t
            s.add(row)
            for agent_id, hw, sha in tasks:
                s.add(TaskRow(campaign_id=campaign_id, agent_id=agent_id, hardware_class=hw, model_sha256=sha,
                              repeat=0, updated_ms=t))
            s.commit()
            return True

    def rounds(self, campaign_id: int) -> list[AdaptiveRoundRow]:
        with self.session() as s:
            return list(s.exec(select(AdaptiveRoundRow).where(AdaptiveRoundRow.campaign_id == campaign_id)
                               .order_by(AdaptiveRoundRow.round)).all())

    def campaign_tasks(self, campaign_id: int) -> list[TaskRow]:
        with self.session() as s:
            return list(s.exec(select(TaskRow).where(TaskRow.campaign_id == campaign_id)).all())

    def stop_adaptive(self, campaign_id: int, reason: str, row: AdaptiveRoundRow | None = None) -> bool:
        """A running adaptive campaign is done, with its reason (and its last validation, if given)."""
        t = now_ms()
        with self._write, self.session() as s:
            campaign = s.get(CampaignRow, campaign_id)
            if campaign is None or campaign.status != "running":
                return False
            if row is not None:
                row.campaign_id, row.created_ms = campaign_id, t
                s.add(row)
            campaign.status, campaign.finished_ms, campaign.stop_reason = "done", t, reason[:500]
            s.add(campaign)
            s.commit()
            return True

    def list_campaigns(self) -> list[CampaignRow]:
        with self.session() as s:
            return list(s.exec(select(CampaignRow).order_by(CampaignRow.id)).all())

    # ---- heat-map -----------------------------------------------------------------------------
    def heatmap(self, min_devices: int = 1, target_precision: float = 0.0) -> list[CellView]:
        """Every cell; fleet cells under `min_devices` distinct devices are suppressed (no values).

        Reads only the folded sums, never raw reports."""
        with self.session() as s:
            cells = [HeatCell(*row) for row in s.exec(select(*HEAT_COLUMNS).order_by(
                CellRow.model_name, CellRow.hardware_class, CellRow.setting_key)).all()]
            metrics: dict[int, list[tuple]] = {}
            for row in s.exec(select(CellMetricRow.cell_id, CellMetricRow.metric, CellMetricRow.n,
                                     CellMetricRow.sum_log, CellMetricRow.sumsq_log,
                                     CellMetricRow.noise_var_sum)).all():
                metrics.setdefault(row[0], []).append(row[1:])
        views = []
        for c in cells:
            rows = metrics.get(c.id, [])
            suppressed = c.source == "fleet" and c.n_devices < min_devices
            estimates = {} if suppressed else {metric: aggregate.estimate(*sums) for metric, *sums in rows}
            needed = 0
            if target_precision > 0 and c.source in ("fleet", "trusted"):
                needed = max([aggregate.devices_needed(*sums, c.n_devices, target_precision)
                              for _, *sums in rows] or [0])
                needed = max(needed, min_devices - c.n_devices) if suppressed else needed
            views.append(CellView(c, estimates, suppressed, needed))
        return views

    def heatmap_version(self) -> tuple:
        """Changes whenever a cell is made or folded into (a fold raises n_reports and updated_ms)."""
        with self.session() as s:
            return tuple(s.exec(select(func.count(), func.max(CellRow.updated_ms), func.sum(CellRow.n_reports))
                                .select_from(CellRow)).one())

    def hardware(self) -> list[HardwareRow]:
        with self.session() as s:
            return list(s.exec(select(HardwareRow).order_by(HardwareRow.hardware_class)).all())

    def hardware_specs(self) -> dict[str, SpecSheet]:
        """hardware class → the first spec sheet that named it."""
        with self.session() as s:
            return {h.hardware_class: SpecSheet.from_json(h.spec_json) for h in s.exec(select(HardwareRow)).all()}

    # ---- predictor versions -------------------------------------------------------------------
    def add_predictor(self, row: PredictorRow) -> PredictorRow:
        if self.blob(row.checkpoint_sha256) is None:
            raise NotFound(f"checkpoint bytes {row.checkpoint_sha256[:12]} were not stored")
        with self._write, self.session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def predictors(self) -> list[PredictorRow]:
        with self.session() as s:
            return list(s.exec(select(PredictorRow).order_by(PredictorRow.version)).all())

    def predictor(self, version: int = 0) -> PredictorRow:
        """A version, or the newest for 0."""
        with self.session() as s:
            row = (s.get(PredictorRow, version) if version else
                   s.exec(select(PredictorRow).order_by(PredictorRow.version.desc())).first())
        if row is None:
            raise NotFound(f"no predictor version {version}" if version else
                           "no predictor trained yet (TrainPredictor, or wait for enough cells)")
        return row

    def count_reports(self) -> int:
        with self.session() as s:
            return int(s.exec(select(func.count()).select_from(ReportRow)).one())


def settle(future: Future, value, exc: BaseException | None) -> None:
    """Answers a waiting caller; one that gave up (its call cancelled, say at shutdown) is skipped, so the
    writer thread never dies on it: what was written stays written."""
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


class GroupCommit:
    """The store's one writer thread. Leases and reports that arrive together run in one transaction and
    are answered after its one commit (one fsync): each is durable before it is acknowledged, and the
    disk's sync time is shared instead of paid per call. It also writes buffered heartbeats."""

    def __init__(self, store: Store):
        self.store = store
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, fn, on_integrity=None, flush_first: bool = False) -> Future:
        """fn(session) → value; `on_integrity`: the answer when a unique key says it was stored already;
        `flush_first`: fn queries by more than keys, so the writes queued before it are flushed first."""
        future: Future = Future()
        self.wake()
        self.queue.put((fn, on_integrity, flush_first, future))
        return future

    def wake(self) -> None:
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="edgeatlas-writer", daemon=True)
                    self.thread.start()

    def stop(self) -> None:
        with self.lock:
            thread, self.thread = self.thread, None
        if thread is not None:
            self.queue.put(None)
            thread.join(timeout=60)

    def _run(self) -> None:
        flushed = time.monotonic()
        stopping = False
        while not stopping:
            try:  # what is queued now, up to MAX_BATCH; None is the signal to stop
                batch = [self.queue.get(timeout=TOUCH_FLUSH_S)]
            except queue.Empty:
                batch = []
            while batch and batch[-1] is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stopping = bool(batch) and batch[-1] is None
            if stopping:
                batch.pop()
            if batch:
                self.store.run_batch(batch)
            if stopping or time.monotonic() - flushed >= TOUCH_FLUSH_S:
                flushed = time.monotonic()
                try:
                    self.store.flush_touches()
                except Exception:  # the next flush tries again; a heartbeat is not worth a dead writer
                    log.exception("writing heartbeats failed")


def _cancel_open_tasks(s: Session, campaign_id: int, t: int, reason: str | None = None) -> None:
    """Every pending or leased task of the campaign is cancelled (with `reason` as its failure, if given)."""
    values = {"status": "cancelled", "updated_ms": t, "orphaned": False}
    if reason is not None:
        values["failure_reason"] = reason
    s.exec(update(TaskRow).where(TaskRow.campaign_id == campaign_id, TaskRow.status.in_(OPEN_TASK))
           .values(**values))


def _kept(s: Session, model, key):
    """s.get, holding on to the row for the session (the identity map alone forgets unchanged rows)."""
    kept = s.info.setdefault("kept", {})
    row = kept.get((model, key))
    if row is None:
        row = kept[(model, key)] = s.get(model, key)
    return row


def _hardware_class(agent: AgentRow, setting: Setting) -> str:
    """The class a report's cell belongs to: the agent's own, or that of the processor it named."""
    if setting.target == "cpu":
        return agent.hardware_class
    return SpecSheet.from_json(agent.spec_json).hardware_class(setting.target)


def runs_per_task(setting: Setting) -> int:
    """LoadGen runs in one task: a server task without a target rate searches, one run per step."""
    if setting.scenario == "server" and "target_qps" not in setting.scenario_params:
        return int(scenarios.check("server", setting.scenario_params)["search_steps"])
    return 1


def setting_for(setting: Setting, model_format: str) -> Setting:
    """A campaign's setting as one model's task asks it: a GGUF model runs on llama.cpp."""
    if model_format == "gguf":
        return dataclasses.replace(setting, runtime="llama.cpp", execution_provider="")
    return setting


def check_released(released: dict[str, float], contract: PrivacyParams) -> None:
    """The noised vector names the contract's statistics (those a run may lack aside), each a finite,
    possible value."""
    wanted = set(contract.statistics)
    required = {name for name in wanted if STATISTICS[name].always}
    if not required <= set(released) <= wanted:
        raise InvalidInput(f"released statistics {sorted(released)} are not the contract's "
                           f"{sorted(contract.statistics)}")
    for name, value in released.items():
        lo, hi = contract.log_bounds(name)
        reach = 40 * math.sqrt(contract.noise_variance_log(name)) + (hi - lo)
        if not math.isfinite(value) or not lo - reach <= value <= hi + reach:
            raise InvalidInput(f"released {name} = {value!r} is impossible under the contract")


SELECTOR_OPS = (">=", "<=", "!=", ">", "<")


def _selector(want: str) -> tuple[str, str]:
    """A selector's value → (operator, operand); a bare value means equality."""
    for op in SELECTOR_OPS:
        if want.startswith(op):
            return op, want[len(op):].strip()
    return "=", want


def check_selectors(selectors: dict[str, str]) -> None:
    for key, want in selectors.items():
        op, operand = _selector(want)
        if not key or len(key) > 128 or len(want) > 256:
            raise InvalidInput(f"selector {key!r}: keys up to 128 characters, values up to 256")
        if op in (">=", "<=", ">", "<"):
            try:
                float(operand)
            except ValueError:
                raise InvalidInput(f"selector {key}{want}: {op} needs a number") from None


def matches(agent: AgentRow, selectors: dict[str, str]) -> bool:
    """Selector keys: agent fields (name, agent_id, hardware_class, device_class), label.KEY,
    or a spec sheet path such as cpu.arch; values are equal to, or `>=8`, `<=`, `>`, `<`, `!=` a value."""
    if not selectors:
        return True
    spec = None
    labels = json.loads(agent.labels_json or "{}")
    for key, want in selectors.items():
        if key in ("name", "agent_id", "hardware_class", "device_class"):
            have = getattr(agent, key)
        elif key.startswith("label."):
            have = labels.get(key[len("label."):])
        else:
            spec = spec or SpecSheet.from_json(agent.spec_json)
            have = spec.get(key)
        op, operand = _selector(want)
        if op == "!=":
            if have is not None and str(have) == operand:
                return False
            continue
        if have is None:
            return False
        if op == "=":
            if str(have) != operand:
                return False
            continue
        try:
            have_f, want_f = float(have), float(operand)
        except (TypeError, ValueError):
            return False
        if not {">=": have_f >= want_f, "<=": have_f <= want_f, ">": have_f > want_f, "<": have_f < want_f}[op]:
            return False
    return True


def within_quota(agents: list[AgentRow], quota: int, t: int) -> list[AgentRow]:
    """At most `quota` agents per hardware class (0: all), online ones first, then the most recently seen."""
    if not quota:
        return agents
    by_class: dict[str, list[AgentRow]] = {}
    for agent in sorted(agents, key=lambda a: (t - a.last_seen_ms >= OFFLINE_AFTER_MS, -a.last_seen_ms)):
        by_class.setdefault(agent.hardware_class, []).append(agent)
    return [a for group in by_class.values() for a in group[:quota]]


def _add_missing_columns(engine) -> None:
    """Columns this version's tables have and an older database lacks are added, with their defaults."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c for c in table.columns if c.name not in have]
            for column in missing:
                default = column.default.arg if column.default is not None else None
                clause = "" if default is None or callable(default) else " DEFAULT " + str(
                    literal(default).compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" '
                                     f'{column.type.compile(engine.dialect)}{clause}')
            if missing:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
