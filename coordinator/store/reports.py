"""Reports: checked, stored idempotently on report_id, and folded into their cells, a batch at a time."""

from __future__ import annotations

import asyncio
import json
import math
from concurrent.futures import Future

from sqlalchemy import bindparam, func, select as sa_select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError, OperationalError as SAOperationalError
from sqlmodel import Session, select

from edgeatlas.coordinator.scheduling import setting_for, task_privacy
from edgeatlas.coordinator.store.cells import cell_class
from edgeatlas.coordinator.store.engine import MAX_ROW_ID, json_or_empty, kept, now_ms
from edgeatlas.coordinator.store.records import Batch, IncomingReport, OPEN_TASK, TaskSnapshot, batch_of
from edgeatlas.coordinator.store.writer import Op, deliver
from edgeatlas.coordinator.tables import CampaignRow, ModelRow, ReportRow, TaskRow
from edgeatlas.coordinator.validation import check_setting_matches
from edgeatlas.protos.errors import Conflict, EdgeAtlasError, InvalidInput, PermissionDenied
from edgeatlas.protos.privacy import PrivacyParams, STATISTICS
from edgeatlas.protos.records import Setting, flat_dict

MAX_ATTEMPTS = 3  # an operation alone meets a racing replica's rows (or a deadlock) at most this often


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


class Reports:
    """The Store's methods for reports (its engine, writer and caches are set up in sql.Store)."""

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
        batch = batch_of(s)
        added = batch.reports
        existing = added.get(report.report_id)
        if existing is not None:
            if existing != agent_id:
                raise PermissionDenied("report_id belongs to another agent")
            return True
        task = batch.tasks.get(report.task_id)
        if task is None:
            raise InvalidInput(f"task {report.task_id} does not exist")
        if task.agent_id != agent_id:
            raise InvalidInput(f"task {report.task_id} is not this agent's")
        if task.status not in OPEN_TASK:
            raise Conflict(f"task {report.task_id} is already {task.status}")
        if task.lease_id != report.lease_id:
            raise Conflict(f"lease {report.lease_id[:8] or '(none)'} of task {report.task_id} is stale")
        campaign = kept(s, CampaignRow, task.campaign_id)
        agent = self._enrolled(s, agent_id)
        if report.ok:
            asked = setting_for(Setting(**json.loads(campaign.setting_json)),
                                kept(s, ModelRow, task.model_sha256).format)
            check_setting_matches(asked, report.setting, simulated=agent.simulated)
        if report.ok and report.privacy_mode in ("ldp", "secure"):
            contract = task_privacy(campaign.privacy_json, task.model_sha256, task.hardware_class)
            if report.privacy != contract:
                raise InvalidInput(f"the release's mechanism ({report.privacy.describe()}) does not match "
                                   f"campaign {campaign.id}'s contract ({contract.describe()})")
            if report.privacy_mode == "ldp":
                check_released(report.released, contract)
        # A secure report folds nothing: its values reach the cell as part of a cohort's sum (rounds.py).
        folds = report.ok and report.valid and report.privacy_mode != "secure"
        hw = cell_class(agent, report.setting) if folds else ""
        batch.new_reports.append(dict(
            report_id=report.report_id, task_id=task.id, agent_id=agent_id, received_ms=t,
            status=report.status, failure_reason=report.failure_reason,
            valid=report.valid, invalid_reason=report.invalid_reason, privacy_mode=report.privacy_mode,
            setting_json=json_or_empty(report.setting.to_dict() if report.setting else {}),
            stats_json=json_or_empty(report.stats.to_dict() if report.stats else {}),
            privacy_json=json_or_empty(report.privacy.to_dict() if report.privacy else {}),
            released_json=json_or_empty(report.released), figures_json=json_or_empty(report.figures),
            context_json=json.dumps({"outcome": flat_dict(report.outcome), "energy_meter": report.energy_meter,
                                     "energy_absent": report.energy_absent, "conditions": report.conditions}),
            fidelity_json=json.dumps(flat_dict(report.fidelity)), started_ms=report.started_ms,
            agent_version=report.agent_version))
        added[report.report_id] = agent_id
        task.status = {"ok": "done", "failed": "failed", "declined": "declined"}[report.status]
        reason = report.failure_reason if not report.ok else ("" if report.valid else report.invalid_reason)
        batch.task_updates.append({"tid": task.id, "status": task.status, "updated_ms": t,
                                       "failure_reason": reason})
        if folds:
            self._fold(s, task, agent, hw, report, t)
        self._maybe_finish(s, campaign)
        return False

    def run_batch(self, batch: list[Op], attempt: int = 1) -> None:
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
                state = s.info["batch"] = Batch()
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
                del s.info["batch"]  # the checks deferred to its end now run at once
                for campaign_id in sorted(state.finish):
                    self._maybe_finish(s, s.get(CampaignRow, campaign_id))
                s.commit()
                if len(self._contributors) > 1_000_000:
                    self._contributors.clear()
                self._contributors |= state.contributors
                if len(self._metric_rows) > 1_000_000 or len(self._cells) > 1_000_000:
                    self._metric_rows.clear()
                    self._cells.clear()
                self._metric_rows |= state.metric_rows
                self._cells.update(state.new_cells)
        except Exception as exc:
            if len(batch) > 1:
                for op in batch:
                    self.run_batch([op])
                return
            op = batch[0]
            if isinstance(exc, SAIntegrityError) and op.on_integrity is not None and self._stored(op):
                results = [(op, op.on_integrity, None)]  # a concurrent replica stored the same report first
            elif isinstance(exc, (SAIntegrityError, SAOperationalError)) and attempt < MAX_ATTEMPTS:
                # another replica made the same cell, metric or contributor row meanwhile, or PostgreSQL broke
                # a deadlock between two replicas' batches: the next attempt sees their commit
                self.run_batch(batch, attempt + 1)
                return
            else:
                results = [(op, None, exc)]
        deliver(results)

    def _stored(self, op: Op) -> bool:
        """Whether the report an operation writes is in the database (a unique key it broke may have been
        another row's: only a stored report may be answered as a duplicate)."""
        if op.report is None:
            return True
        with self.session() as s:
            return s.exec(select(ReportRow.report_id).where(ReportRow.report_id == op.report[0])).first() is not None

    def _prefetch(self, s: Session, reports: list[tuple[str, int]]) -> None:
        """Reads what the batch's reports look up by key, in two queries instead of two per report: their
        tasks (as plain snapshots: loading ORM rows cost more than all the rest of a report) and which of
        their report_ids are stored already, and whose."""
        batch = batch_of(s)
        if not reports:
            return
        report, task = ReportRow.__table__.c, TaskRow.__table__.c
        stored = s.connection().execute(sa_select(report.report_id, report.agent_id)
                                        .where(report.report_id.in_([report_id for report_id, _ in reports])))
        batch.reports.update({report_id: agent_id for report_id, agent_id in stored})
        rows = s.connection().execute(
            sa_select(task.id, task.agent_id, task.status, task.lease_id, task.campaign_id, task.model_sha256,
                      task.hardware_class)
            .where(task.id.in_({task_id for _, task_id in reports if 0 < task_id <= MAX_ROW_ID})))
        batch.tasks = {row.id: TaskSnapshot(*row) for row in rows}

    def _write_reports(self, s: Session) -> None:
        """The batch's reports and their tasks' new states, one statement each."""
        batch = batch_of(s)
        if batch.new_reports:
            s.connection().execute(ReportRow.__table__.insert(), batch.new_reports)
            task = TaskRow.__table__
            s.connection().execute(update(task).where(task.c.id == bindparam("tid")).values(
                status=bindparam("status"), failure_reason=bindparam("failure_reason"),
                updated_ms=bindparam("updated_ms")), batch.task_updates)
        batch.new_reports, batch.task_updates = [], []

    def count_reports(self) -> int:
        with self.session() as s:
            return int(s.exec(select(func.count()).select_from(ReportRow)).one())
