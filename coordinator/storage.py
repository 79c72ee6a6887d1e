"""The Store: every read and write of coordinator state, over SQLModel (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

import asyncio
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

from sqlalchemy import bindparam, event, func, inspect, literal, or_, tuple_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlmodel import Session, SQLModel, create_engine, select

from edgeatlas.coordinator import aggregate
from edgeatlas.coordinator.validation import check_setting_matches
from edgeatlas.coordinator.tables import (
    AdaptiveRoundRow, AgentRow, BlobChunkRow, BlobRow, CampaignRow, CellContributorRow, CellMetricRow, CellRow,
    HardwareRow, ModelRow, PredictorRow, ReportRow, TaskRow, TokenRow)
from edgeatlas.protos import scenarios
from edgeatlas.protos.errors import Conflict, EdgeAtlasError, InvalidInput, NotFound, PermissionDenied
from edgeatlas.protos.privacy import STATISTICS, PrivacyParams
from edgeatlas.protos.records import (
    Fidelity, LatencyStats, RunParams, ScenarioOutcome, Schedule, Setting, flat_dict)
from edgeatlas.protos.spec import SpecSheet

MAX_LEASE_ATTEMPTS = 3
LEASE_GRACE_S = 300  # model download and session load, on top of the run's own limit
OPEN_TASK = ("pending", "leased")
BLOB_CHUNKS_PER_COMMIT = 8  # 8 MiB a transaction: short enough that other writers barely wait
OFFLINE_AFTER_MS = 90_000  # an agent unheard of this long is offline: its pending tasks are up for adoption
SWEEP_EVERY_MS = 5_000  # how often leasing looks for overdue campaigns and orphaned tasks
TOUCH_FLUSH_S = 1.0  # heartbeats are written together at most this long after they arrive
MAX_BATCH = 1024  # operations that share one transaction (and one fsync)
CREDENTIAL_CACHE_S = 10.0
MAX_ROW_ID = 2**31 - 1  # ids are PostgreSQL INTEGERs: a larger one is no row (and must not reach a query)

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
            _check_sqlite(self.engine, url[len("sqlite:///"):])
        SQLModel.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._write = threading.Lock()
        self._swept_ms = 0
        self._writer = GroupCommit(self)
        self._touches: dict[str, tuple[int, str | None]] = {}  # agent_id → (last seen, state): not yet written
        self._touch_lock = threading.Lock()
        self._credentials: dict[str, AgentRow] = {}  # credential hash → its agent, while none is revoked
        self._revocations: tuple[int, float] = (-1, -math.inf)  # (revoked agents, when counted)
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

    # ---- tokens -------------------------------------------------------------------------------
    def add_token(self, kind: str, token_hash: str, expires_ms: int | None = None,
                  uses: int | None = None) -> None:
        with self._write, self.session() as s:
            if s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash)).first() is None:
                s.add(TokenRow(kind=kind, token_hash=token_hash, created_ms=now_ms(),
                               expires_ms=expires_ms, uses_left=uses))
                s.commit()

    def bootstrap_token(self, kind: str, token_hash: str) -> int:
        """Makes this the start-up token of its kind: stored if new, and every other start-up token of the
        kind revoked (a restart with new tokens retires the old). The number revoked."""
        with self._write, self.session() as s:
            row = s.exec(select(TokenRow).where(TokenRow.token_hash == token_hash)).first()
            if row is None:
                row = TokenRow(kind=kind, token_hash=token_hash, created_ms=now_ms())
            if row.kind != kind:
                raise InvalidInput(f"the {kind} token given is already a token of another kind")
            row.bootstrap, row.revoked = True, False
            s.add(row)
            old = s.exec(select(TokenRow).where(TokenRow.kind == kind, TokenRow.bootstrap,
                                                TokenRow.token_hash != token_hash, TokenRow.revoked == False)  # noqa: E712
                         ).all()
            for stale in old:
                stale.revoked = True
                s.add(stale)
            s.commit()
            return len(old)

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

    def cached_agent(self, credential_hash: str) -> AgentRow | None:
        """The agent holding this credential, from memory (no database), while the cache is known to be
        current: revocations were counted within CREDENTIAL_CACHE_S. Otherwise None: ask agent_by_credential."""
        return self._credentials.get(credential_hash) if self._cache_current() else None

    def _cache_current(self) -> bool:
        """Revoked agents were counted within CREDENTIAL_CACHE_S."""
        return time.monotonic() - self._revocations[1] < CREDENTIAL_CACHE_S

    def agent_by_credential(self, credential_hash: str) -> AgentRow | None:
        """The agent holding this credential, unless it was revoked. Known ones are remembered until a
        revocation: one made here is seen at once, one made through another replica within
        CREDENTIAL_CACHE_S, when this replica next counts the revoked agents (one query for all of them)."""
        if not self._cache_current():
            with self.session() as s:
                revoked = s.exec(select(func.count()).select_from(AgentRow)
                                 .where(AgentRow.revoked == True)).one()  # noqa: E712
            if revoked != self._revocations[0]:
                self._credentials.clear()
            self._revocations = (revoked, time.monotonic())
        hit = self._credentials.get(credential_hash)
        if hit is not None:
            return hit
        with self.session() as s:
            agent = s.exec(select(AgentRow).where(AgentRow.credential_hash == credential_hash,
                                                  AgentRow.revoked == False)).first()  # noqa: E712
        if agent is not None:
            if len(self._credentials) > 100_000:
                self._credentials.clear()
                self._agents.clear()
            self._credentials[credential_hash] = agent
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
        """Stores a verified blob; chunks are the caller's, already checked against sha256.

        The chunks are written a few at a time in transactions of their own, without the store's write
        lock, so a 500 MiB upload does not hold up enrollments and reports; the blob exists (BlobRow, under
        the lock) only once all of them are in. Chunks left by an upload that died are replaced."""
        if self.blob(sha256) is not None:
            return
        with self.session() as s:
            s.connection().execute(BlobChunkRow.__table__.delete().where(BlobChunkRow.sha256 == sha256))
            s.commit()
        n, pending = 0, []
        for n, data in enumerate(chunks, start=1):
            pending.append({"sha256": sha256, "idx": n - 1, "data": data})
            if len(pending) >= BLOB_CHUNKS_PER_COMMIT:
                self._put_chunks(pending)
                pending = []
        if pending:
            self._put_chunks(pending)
        with self._write, self.session() as s:
            if s.get(BlobRow, sha256) is None:
                s.add(BlobRow(sha256=sha256, size_bytes=size_bytes, n_chunks=n, created_ms=now_ms()))
                s.commit()

    def _put_chunks(self, rows: list[dict]) -> None:
        with self.session() as s:
            try:
                s.connection().execute(BlobChunkRow.__table__.insert(), rows)
                s.commit()
            except SAIntegrityError:
                raise Conflict(f"blob {rows[0]['sha256'][:12]} is being uploaded by another call: retry") from None

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

    def fetchable(self, agent_id: str, sha256: str) -> bool:
        """Whether an open task of this agent needs these bytes (its model or the model's reference data):
        an agent may fetch nothing else, not a checkpoint, not another campaign's model."""
        with self.session() as s:
            needs = (select(TaskRow.id).join(ModelRow, ModelRow.sha256 == TaskRow.model_sha256)
                     .where(TaskRow.agent_id == agent_id, TaskRow.status.in_(OPEN_TASK),
                            or_(ModelRow.sha256 == sha256, ModelRow.reference_sha256 == sha256)).limit(1))
            return s.exec(needs).first() is not None

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

    def submit_lease(self, agent_id: str, loop: asyncio.AbstractEventLoop | None = None) -> Future:
        """The agent's next open task, leased to it once the lease is durable (a Future of LeasedTask or None):
        its own first, highest priority first, else one adopted from a vanished or overdue device of its
        hardware class.

        An agent runs one task at a time and reports before it asks again, so a task still leased
        to the asking agent is orphaned (say, the lease reply was lost in a coordinator crash):
        it is offered again first, under a new lease.
        """
        return self._writer.submit(lambda s: self._lease(s, agent_id), flush_first=True, loop=loop)

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
            row = _by_id(s, CampaignRow, campaign_id)
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

    def submit_report(self, agent_id: str, report: IncomingReport,
                      loop: asyncio.AbstractEventLoop | None = None) -> Future:
        """Stores a report and folds it into its heat-map cell; a Future of True for a duplicate, resolved
        only once it is durable. Reports that arrive together share one transaction (group commit).
        Given the caller's event loop, the future is that loop's own (see GroupCommit.submit)."""
        return self._writer.submit(lambda s: self._record(s, agent_id, report), on_integrity=True, loop=loop,
                                   report=(report.report_id, report.task_id))

    def _record(self, s: Session, agent_id: str, report: IncomingReport) -> bool:
        """Every check comes before the first write: a refused report leaves nothing in the batch. Its task
        is read from the batch's snapshot (_prefetch); its writes join the batch's (_write_reports)."""
        t = now_ms()
        added = s.info["reports"]  # report_id → agent_id: stored before, or earlier in this batch
        existing = added.get(report.report_id)
        if existing is not None:
            if existing != agent_id:
                raise PermissionDenied("report_id belongs to another agent")
            return True
        task = s.info["tasks"].get(report.task_id)
        if task is None:
            raise InvalidInput(f"task {report.task_id} does not exist")
        if task.agent_id != agent_id:
            raise InvalidInput(f"task {report.task_id} is not this agent's")
        if task.status not in OPEN_TASK:
            raise Conflict(f"task {report.task_id} is already {task.status}")
        if task.lease_id != report.lease_id:
            raise Conflict(f"lease {report.lease_id[:8] or '(none)'} of task {report.task_id} is stale")
        campaign = _kept(s, CampaignRow, task.campaign_id)
        agent = self._enrolled(s, agent_id)
        if report.ok:
            asked = setting_for(Setting(**json.loads(campaign.setting_json)),
                                _kept(s, ModelRow, task.model_sha256).format)
            check_setting_matches(asked, report.setting, simulated=agent.simulated)
        if report.ok and report.privacy_mode == "ldp":
            contract = PrivacyParams.from_dict(json.loads(campaign.privacy_json))
            if report.privacy != contract:
                raise InvalidInput(f"the release's mechanism ({report.privacy.describe()}) does not match "
                                   f"campaign {campaign.id}'s contract ({contract.describe()})")
            check_released(report.released, contract)
        folds = report.ok and report.valid
        hw = _hardware_class(agent, report.setting) if folds else ""
        s.info["new_reports"].append(dict(
            report_id=report.report_id, task_id=task.id, agent_id=agent_id, received_ms=t,
            status=report.status, failure_reason=report.failure_reason,
            valid=report.valid, invalid_reason=report.invalid_reason, privacy_mode=report.privacy_mode,
            setting_json=_json(report.setting.to_dict() if report.setting else {}),
            stats_json=_json(report.stats.to_dict() if report.stats else {}),
            privacy_json=_json(report.privacy.to_dict() if report.privacy else {}),
            released_json=_json(report.released), figures_json=_json(report.figures),
            context_json=json.dumps({"outcome": flat_dict(report.outcome), "energy_meter": report.energy_meter,
                                     "energy_absent": report.energy_absent, "conditions": report.conditions}),
            fidelity_json=json.dumps(flat_dict(report.fidelity)), started_ms=report.started_ms,
            agent_version=report.agent_version))
        added[report.report_id] = agent_id
        task.status = {"ok": "done", "failed": "failed", "declined": "declined"}[report.status]
        reason = report.failure_reason if not report.ok else ("" if report.valid else report.invalid_reason)
        s.info["task_updates"].append({"tid": task.id, "status": task.status, "updated_ms": t,
                                       "failure_reason": reason})
        if folds:
            self._fold(s, task, agent, hw, report, t)
        self._maybe_finish(s, campaign)
        return False

    def run_batch(self, batch: list[Op]) -> None:
        """Runs queued operations in one transaction and answers each after its commit. An operation refused
        by its checks (EdgeAtlasError, raised before it writes) is answered with that error; if a write or
        the commit fails, each operation runs again on its own, so one cannot sink the others.

        Reports run first, then the rest (leases) in their order. None of them is answered before the one
        commit, so any order among them is one in which they could have arrived."""
        results = []
        reports = [op for op in batch if op.report is not None]
        others = [op for op in batch if op.report is None]
        try:
            with self._write, self.session() as s, s.no_autoflush:
                s.info["finish"] = set()
                self._prefetch(s, [op.report for op in reports])
                for op in reports + others:
                    if op.flush_first:  # its queries must see the writes queued before it
                        self._write_reports(s)
                        s.flush()
                    try:
                        results.append((op, op.fn(s), None))
                    except EdgeAtlasError as exc:
                        results.append((op, None, exc))
                self._write_reports(s)
                self._write_folds(s)
                finish = s.info.pop("finish")
                for campaign_id in sorted(finish):
                    self._maybe_finish(s, s.get(CampaignRow, campaign_id))
                s.commit()
                if len(self._contributors) > 1_000_000:
                    self._contributors.clear()
                self._contributors |= s.info.get("contributors", set())
                if len(self._metric_rows) > 1_000_000 or len(self._cells) > 1_000_000:
                    self._metric_rows.clear()
                    self._cells.clear()
                self._metric_rows |= s.info.get("metric_rows", set())
                self._cells.update(s.info.get("new_cells", {}))
        except Exception as exc:
            if len(batch) > 1:
                for op in batch:
                    self.run_batch([op])
                return
            op = batch[0]
            if isinstance(exc, SAIntegrityError) and op.on_integrity is not None:
                results = [(op, op.on_integrity, None)]  # a concurrent replica stored the same thing first
            else:
                results = [(op, None, exc)]
        deliver(results)

    def _prefetch(self, s: Session, reports: list[tuple[str, int]]) -> None:
        """Reads what the batch's reports look up by key, in two queries instead of two per report: their
        tasks (as plain snapshots: loading ORM rows cost more than all the rest of a report) and which of
        their report_ids are stored already, and whose."""
        s.info["reports"], s.info["tasks"], s.info["new_reports"], s.info["task_updates"] = {}, {}, [], []
        if not reports:
            return
        report, task = ReportRow.__table__.c, TaskRow.__table__.c
        stored = s.connection().execute(sa_select(report.report_id, report.agent_id)
                                        .where(report.report_id.in_([report_id for report_id, _ in reports])))
        s.info["reports"].update({report_id: agent_id for report_id, agent_id in stored})
        rows = s.connection().execute(
            sa_select(task.id, task.agent_id, task.status, task.lease_id, task.campaign_id, task.model_sha256)
            .where(task.id.in_({task_id for _, task_id in reports if 0 < task_id <= MAX_ROW_ID})))
        s.info["tasks"] = {row.id: TaskSnapshot(*row) for row in rows}

    def _write_reports(self, s: Session) -> None:
        """The batch's reports and their tasks' new states, one statement each."""
        if s.info["new_reports"]:
            s.connection().execute(ReportRow.__table__.insert(), s.info["new_reports"])
            task = TaskRow.__table__
            s.connection().execute(update(task).where(task.c.id == bindparam("tid")).values(
                status=bindparam("status"), failure_reason=bindparam("failure_reason"),
                updated_ms=bindparam("updated_ms")), s.info["task_updates"])
        s.info["new_reports"], s.info["task_updates"] = [], []

    def _fold(self, s: Session, task: TaskSnapshot, agent: AgentRow, hw: str, report: IncomingReport, t: int) -> None:
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
        cell_id = self._cell_id(s, task.model_sha256, hw, setting, source, t, privacy)
        key = (cell_id, agent.agent_id)
        if key not in self._contributors:  # known to be stored (they are never deleted); else looked up once
            s.info.setdefault("contributors", set()).add(key)  # per batch, in _write_folds
        # The sums are added up here and added to the rows once per batch (_write_folds).
        fold = s.info.setdefault("folds", {}).setdefault(cell_id, [0, t, {}])  # reports, last time, sums
        fold[0], fold[1] = fold[0] + 1, t
        sums = fold[2]
        for metric, (log, statistic) in logs.items():
            total = sums.get(metric)
            if total is None:
                total = sums[metric] = [0, 0.0, 0.0, 0.0]
            total[0], total[1], total[2] = aggregate.fold_log(total[0], total[1], total[2], log)
            total[3] += report.privacy.noise_variance_log(statistic) if statistic else 0.0

    def _cell_id(self, s: Session, model_sha256: str, hw: str, setting: Setting, source: str, t: int,
                 privacy: str) -> int:
        """The id of a report's cell, made on first use. Cells are never deleted, so their ids (and the
        privacy each was last seen with) are remembered; a report under another contract marks it mixed."""
        key = (model_sha256, hw, setting.key(), source)
        staged = s.info.setdefault("new_cells", {})  # remembered only once the batch commits
        known = staged.get(key) or self._cells.get(key)
        if known is None:
            cell = self._cell(s, _kept(s, ModelRow, model_sha256), hw, setting, source, t, privacy)
            known = staged[key] = (cell.id, cell.privacy)
        cell_id, seen = known
        mixed = f"{source} (mixed contracts)"
        if seen != privacy and seen != mixed and cell_id not in s.info.setdefault("mixed", {}):
            s.info["mixed"][cell_id] = mixed
            staged[key] = (cell_id, mixed)
        return cell_id

    def _write_folds(self, s: Session) -> None:
        """Adds the batch's folded sums to their cells and metric rows, and its new contributors to their
        cells' device counts: increments in SQL, so replicas folding into one cell add up."""
        folds = s.info.pop("folds", {})
        if not folds:
            return
        conn = s.connection()
        devices = Counter()
        keys = s.info.get("contributors", set())
        if keys:
            c = CellContributorRow.__table__.c
            stored = {(cell_id, agent_id) for cell_id, agent_id in conn.execute(
                sa_select(c.cell_id, c.agent_id).where(tuple_(c.cell_id, c.agent_id).in_(list(keys))))}
            new = sorted(keys - stored)
            if new:
                conn.execute(CellContributorRow.__table__.insert(), [{"cell_id": i, "agent_id": a} for i, a in new])
                devices.update(cell_id for cell_id, _ in new)
        cell = CellRow.__table__.c
        conn.execute(update(CellRow.__table__).where(cell.id == bindparam("cid")).values(
            n_reports=cell.n_reports + bindparam("reports"), n_devices=cell.n_devices + bindparam("devices"),
            updated_ms=bindparam("t")),
            [{"cid": i, "reports": reports, "devices": devices[i], "t": t} for i, (reports, t, _) in folds.items()])
        if s.info.get("mixed"):
            conn.execute(update(CellRow.__table__).where(cell.id == bindparam("cid")).values(
                privacy=bindparam("privacy")), [{"cid": i, "privacy": p} for i, p in s.info["mixed"].items()])
        metric = CellMetricRow.__table__.c
        wanted = {(cell_id, name) for cell_id, (_, _, sums) in folds.items() for name in sums}
        missing = wanted - self._metric_rows
        if missing:
            have = {(i, m) for i, m in conn.execute(sa_select(metric.cell_id, metric.metric).where(
                metric.cell_id.in_({i for i, _ in missing})))}
            if missing - have:
                conn.execute(CellMetricRow.__table__.insert(), [
                    {"cell_id": i, "metric": m, "n": 0, "sum_log": 0.0, "sumsq_log": 0.0, "noise_var_sum": 0.0}
                    for i, m in sorted(missing - have)])
        conn.execute(update(CellMetricRow.__table__).where(
            metric.cell_id == bindparam("cid"), metric.metric == bindparam("m")).values(
            n=metric.n + bindparam("dn"), sum_log=metric.sum_log + bindparam("ds"),
            sumsq_log=metric.sumsq_log + bindparam("dss"), noise_var_sum=metric.noise_var_sum + bindparam("dv")),
            [{"cid": i, "m": name, "dn": n, "ds": sum_log, "dss": sumsq_log, "dv": noise}
             for i, (_, _, sums) in folds.items() for name, (n, sum_log, sumsq_log, noise) in sums.items()])
        s.info["metric_rows"] = wanted

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
        open_task = s.exec(select(TaskRow.id).where(
            TaskRow.campaign_id == campaign.id, TaskRow.status.in_(OPEN_TASK)).limit(1)).first()
        if campaign.status == "running" and open_task is None:
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
            row = _by_id(s, CampaignRow, campaign_id)
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
    def heatmap(self, min_devices: int = 1, target_precision: float = 0.0, metric: str = "",
                since_ms: int | None = None) -> list[CellView]:
        """Every cell, or those folded into since `since_ms`; fleet cells under `min_devices` distinct devices
        are suppressed (no values). With `metric`, only that metric is estimated (devices needed for a
        target precision still look at all of them).

        Reads only the folded sums, never raw reports."""
        cell_query = select(*HEAT_COLUMNS).order_by(CellRow.model_name, CellRow.hardware_class, CellRow.setting_key)
        metric_query = select(CellMetricRow.cell_id, CellMetricRow.metric, CellMetricRow.n, CellMetricRow.sum_log,
                              CellMetricRow.sumsq_log, CellMetricRow.noise_var_sum)
        if since_ms is not None:
            cell_query = cell_query.where(CellRow.updated_ms >= since_ms)
            metric_query = metric_query.where(CellMetricRow.cell_id.in_(
                select(CellRow.id).where(CellRow.updated_ms >= since_ms)))
        if metric and target_precision <= 0:
            metric_query = metric_query.where(CellMetricRow.metric == metric)
        with self.session() as s:
            cells = [HeatCell(*row) for row in s.exec(cell_query).all()]
            metrics: dict[int, list[tuple]] = {}
            for row in s.exec(metric_query).all():
                metrics.setdefault(row[0], []).append(row[1:])
        views = []
        for c in cells:
            rows = metrics.get(c.id, [])
            suppressed = c.source == "fleet" and c.n_devices < min_devices
            estimates = {} if suppressed else {name: aggregate.estimate(*sums) for name, *sums in rows
                                               if not metric or name == metric}
            needed = 0
            if target_precision > 0 and c.source in ("fleet", "trusted"):
                needed = max([aggregate.devices_needed(*sums, c.n_devices, target_precision, public_only=suppressed)
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
            rows = s.exec(select(HardwareRow)).all()
        specs = {}
        for h in rows:
            try:
                specs[h.hardware_class] = SpecSheet.from_json(h.spec_json)
            except InvalidInput as exc:  # stored before sheets were checked at the wire
                log.warning("hardware class %s: its stored spec sheet is left out: %s", h.hardware_class[:80], exc)
        return specs

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
            row = (_by_id(s, PredictorRow, version) if version else
                   s.exec(select(PredictorRow).order_by(PredictorRow.version.desc())).first())
        if row is None:
            raise NotFound(f"no predictor version {version}" if version else
                           "no predictor trained yet (TrainPredictor, or wait for enough cells)")
        return row

    def count_reports(self) -> int:
        with self.session() as s:
            return int(s.exec(select(func.count()).select_from(ReportRow)).one())


def settle(future, value, exc: BaseException | None) -> None:
    """Answers a waiting caller; one that gave up (its call cancelled, say at shutdown) is skipped, so the
    writer thread never dies on it: what was written stays written."""
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


def _settle_all(results: list[tuple[Op, object, BaseException | None]]) -> None:
    for op, value, exc in results:
        settle(op.future, value, exc)


def deliver(results: list[tuple[Op, object, BaseException | None]]) -> None:
    """Answers a batch: a thread's futures at once, an event loop's with one wake-up of that loop for all of
    them (not one per call: at a thousand reports a second, those wake-ups were a large part of the cost)."""
    loops: dict[asyncio.AbstractEventLoop, list] = {}
    for op, value, exc in results:
        if op.loop is None:
            settle(op.future, value, exc)
        else:
            loops.setdefault(op.loop, []).append((op, value, exc))
    for loop, answers in loops.items():
        try:
            loop.call_soon_threadsafe(_settle_all, answers)
        except RuntimeError:  # the loop has closed (shutdown): nobody is waiting any more
            pass


@dataclass
class TaskSnapshot:
    """What a report reads of its task."""

    id: int
    agent_id: str
    status: str
    lease_id: str | None
    campaign_id: int
    model_sha256: str


def _json(value: dict) -> str:
    return json.dumps(value) if value else "{}"


@dataclass
class Op:
    """One queued write: fn(session) → the answer. `on_integrity`: the answer when a unique key says it was
    stored already; `flush_first`: fn queries by more than keys, so the writes queued before it are flushed
    first; `report`: (report_id, task_id) of a report, read ahead with the batch's others."""

    fn: object
    future: object
    on_integrity: object = None
    flush_first: bool = False
    report: tuple[str, int] | None = None
    loop: asyncio.AbstractEventLoop | None = None


class GroupCommit:
    """The store's one writer thread. Leases and reports that arrive together run in one transaction and
    are answered after its one commit (one fsync): each is durable before it is acknowledged, and the
    disk's sync time is shared instead of paid per call. It also writes buffered heartbeats."""

    def __init__(self, store: Store):
        self.store = store
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, fn, on_integrity=None, flush_first: bool = False, report: tuple[str, int] | None = None,
               loop: asyncio.AbstractEventLoop | None = None):
        """Queues fn (see Op) and returns its future: a concurrent.futures.Future, or, given the caller's
        running event loop, an asyncio future of that loop (created here, so call it from that loop)."""
        future = loop.create_future() if loop is not None else Future()
        self.wake()
        self.queue.put(Op(fn, future, on_integrity, flush_first, report, loop))
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


def _by_id(s: Session, model, row_id: int):
    """s.get by an id a caller named: one outside the ids' range (MAX_ROW_ID) is no row, not a database error."""
    return s.get(model, row_id) if 0 < row_id <= MAX_ROW_ID else None


def _check_sqlite(engine, path: str) -> None:
    """A corrupt database file is one line at start-up, naming it and SQLite's own verdict, before any
    request can meet the damage (a file corrupt only in its report pages started, then answered INTERNAL)."""
    from sqlalchemy.exc import DatabaseError

    try:
        with engine.connect() as conn:
            verdict = [line.strip() for row in conn.exec_driver_sql("PRAGMA quick_check(3)")
                       for line in str(row[0]).splitlines() if line.strip()]
    except DatabaseError as exc:
        raise InvalidInput(f"database {path} cannot be opened: {str(exc.orig)[:200]}") from None
    if verdict != ["ok"]:
        raise InvalidInput(f"database {path} is corrupt (integrity check: {'; '.join(verdict)[:300]}); "
                           f"restore it from a backup or move it away") from None


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
    """The noised vector names the contract's statistics (those a run may lack aside), each a finite value
    inside the contract's window: an honest device falls outside it with probability ≤ FALSE_REFUSAL, so
    one report's pull on a cell is bounded by the window (PrivacyParams.influence_log)."""
    wanted = set(contract.statistics)
    required = {name for name in wanted if STATISTICS[name].always}
    if not required <= set(released) <= wanted:
        raise InvalidInput(f"released statistics {sorted(released)} are not the contract's "
                           f"{sorted(contract.statistics)}")
    for name, value in released.items():
        low, high = contract.window(name)
        if not math.isfinite(value) or not low <= value <= high:
            raise InvalidInput(f"released {name} = {value!r} is impossible under the contract "
                               f"(outside [{low:.4g}, {high:.4g}])")


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
    """Columns and indexes this version's tables have and an older database lacks are added (columns with
    their defaults)."""
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
            for index in table.indexes:  # an index added since the database was made, too
                index.create(conn, checkfirst=True)
