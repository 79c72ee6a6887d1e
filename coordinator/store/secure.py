"""Secure rounds' state: cohorts of held results, the claims rounds make on them, and folding a cohort's sum."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlmodel import select

from edgeatlas.coordinator import aggregate
from edgeatlas.coordinator.store.cells import cell_class, privacy_after
from edgeatlas.coordinator.store.engine import now_ms
from edgeatlas.coordinator.store.records import OPEN_TASK
from edgeatlas.coordinator.tables import (AgentRow, CellContributorRow, CellMetricRow,
                                          CellRow, ModelRow, ReportRow, SecureClaimRow,
                                          SecureInviteRow, TaskRow)
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import Setting
from edgeatlas.protos.secure import CellSum, SecureContract


@dataclass
class Cohort:
    """Devices of one hardware class holding valid, unclaimed secure results of one campaign, and none of
    its tasks still open."""

    campaign_id: int
    hardware_class: str
    simulated: bool
    privacy: PrivacyParams
    reports: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)  # agent → cell → report id
    cells: dict[tuple[str, str], dict] = field(default_factory=dict)  # (model sha256, setting key) → setting
    holds: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # agent → the cells it holds


class SecureRounds:
    """The Store's methods for secure rounds (its engine and write lock are set up in sql.Store)."""

    def secure_cohorts(self) -> list[Cohort]:
        """Every (campaign, class, simulated or not) with unclaimed held results, largest first."""
        with self.session() as s:
            claimed = select(SecureClaimRow.report_id)
            rows = s.exec(select(ReportRow, TaskRow.campaign_id, TaskRow.model_sha256).join(
                TaskRow, TaskRow.id == ReportRow.task_id).where(
                ReportRow.privacy_mode == "secure", ReportRow.status == "ok", ReportRow.valid,
                ReportRow.report_id.not_in(claimed))).all()
            agents = {a.agent_id: a for a in s.exec(select(AgentRow).where(
                AgentRow.agent_id.in_({r.agent_id for r, _, _ in rows}), AgentRow.revoked == False)).all()}  # noqa: E712
            campaigns = {cid for _, cid, _ in rows}
            # a device still running tasks of the campaign joins once it is done: one round for all its cells
            busy = set(s.exec(select(TaskRow.campaign_id, TaskRow.agent_id).where(
                TaskRow.campaign_id.in_(campaigns), TaskRow.status.in_(OPEN_TASK))).all())
        cohorts: dict[tuple, Cohort] = {}
        for report, campaign_id, sha in rows:
            agent = agents.get(report.agent_id)
            if agent is None or (campaign_id, agent.agent_id) in busy:
                continue
            setting = Setting(**json.loads(report.setting_json))
            # the report's contract (the campaign's, with its bounds for this model and class): one per round
            key = (campaign_id, cell_class(agent, setting), agent.simulated, report.privacy_json)
            cohort = cohorts.get(key)
            if cohort is None:
                cohort = cohorts[key] = Cohort(*key[:3], PrivacyParams.from_dict(json.loads(report.privacy_json)))
            cell = (sha, setting.key())
            if cell in cohort.holds.get(agent.agent_id, set()):
                continue  # a repeat of a cell it holds already: one value per device and cell
            cohort.reports.setdefault(agent.agent_id, {})[cell] = report.report_id
            cohort.holds.setdefault(agent.agent_id, set()).add(cell)
            cohort.cells.setdefault(cell, setting.to_dict())
        return sorted(cohorts.values(), key=lambda c: -len(c.reports))

    def claim_secure(self, round_id: str, report_ids: list[str]) -> None:
        with self._write, self.session() as s:
            t = now_ms()
            for rid in report_ids:
                s.add(SecureClaimRow(report_id=rid, round_id=round_id, claimed_ms=t))
            s.commit()

    def open_invite(self, round_id: str, members: list[str], invite: bytes) -> None:
        """A round's stage 1 is open: every replica hands its members the invitation (open_invites)."""
        with self._write, self.session() as s:
            s.add(SecureInviteRow(round_id=round_id, members_json=json.dumps(members), invite=invite,
                                  created_ms=now_ms()))
            s.commit()

    def close_invite(self, round_id: str) -> None:
        with self._write, self.session() as s:
            s.exec(delete(SecureInviteRow).where(SecureInviteRow.round_id == round_id))
            s.commit()

    def close_all_invites(self) -> None:
        """A new leader's first act: the rounds of the one before it died with it."""
        with self._write, self.session() as s:
            s.exec(delete(SecureInviteRow))
            s.commit()

    def open_invites(self) -> dict[str, bytes]:
        """agent id → the serialised invitation of the open round it belongs to."""
        with self.session() as s:
            rows = s.exec(select(SecureInviteRow)).all()
        return {agent: row.invite for row in rows for agent in json.loads(row.members_json)}

    def release_secure(self, round_id: str) -> None:
        """A round that ended before any device sent its masked vector: its results may join another."""
        with self._write, self.session() as s:
            s.exec(delete(SecureClaimRow).where(SecureClaimRow.round_id == round_id))
            s.commit()

    def fold_cohort(self, contract: SecureContract, hardware_class: str, simulated: bool,
                    cells: list[tuple[str, dict]], sums: list[CellSum], holders: list[list[str]]) -> int:
        """Adds a cohort's decoded sums to their cells as `devices` values of each cell's mean, with the
        sum's noise variance; `holders[slot]` are the survivors that held the cell (its contributors).
        Returns cells folded."""
        t, folded, touched = now_ms(), 0, []
        source = "simulated" if simulated else "fleet"
        privacy = contract.privacy.describe() + (", simulated" if simulated else "")
        with self._write, self.session() as s:
            for (sha, setting_dict), cell_sum, agents in zip(cells, sums, holders):
                if cell_sum.devices == 0:
                    continue
                setting = Setting(**setting_dict)
                model = s.get(ModelRow, sha)
                cell = self._cell(s, model, hardware_class, setting, source, t, privacy)
                # another replica may be folding reports into this cell now: hold its row until the commit
                cell = s.get(CellRow, cell.id, with_for_update=True, populate_existing=True)
                cell.privacy = privacy_after(cell.privacy, privacy, source)
                touched.append((sha, hardware_class, setting.key(), source))
                n = cell_sum.devices
                logs = aggregate.released_logs(cell_sum.log_means, setting.batch)
                for metric, (value_log, statistic) in logs.items():
                    row = (s.get(CellMetricRow, (cell.id, metric), with_for_update=True, populate_existing=True)
                           or CellMetricRow(cell_id=cell.id, metric=metric))
                    row.n += n
                    row.sum_log += n * value_log
                    row.sumsq_log += n * value_log * value_log
                    row.noise_var_sum += n * n * cell_sum.noise_var_log[statistic]  # the sum's noise, in log²
                    s.add(row)
                    self._metric_rows.add((cell.id, metric))
                new = 0
                for agent_id in agents:
                    if s.get(CellContributorRow, (cell.id, agent_id)) is None:
                        s.add(CellContributorRow(cell_id=cell.id, agent_id=agent_id))
                        new += 1
                cell.n_reports += 1  # one cohort sum
                cell.n_devices += new
                cell.updated_ms = t
                s.add(cell)
                folded += 1
            s.commit()
        for key in touched:  # the reports' path remembers a cell's privacy: these may have changed
            self._cells.pop(key, None)
        return folded
