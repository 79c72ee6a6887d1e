"""Campaigns and their tasks: creation across matching agents, pause/resume/cancel, progress, adaptive rounds."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

from sqlalchemy import func, update
from sqlmodel import Session, select

from edgeatlas.coordinator.scheduling import check_selectors, matches, within_quota
from edgeatlas.coordinator.store.engine import by_id, now_ms
from edgeatlas.coordinator.store.records import OPEN_TASK, batch_of
from edgeatlas.coordinator.tables import AdaptiveRoundRow, AgentRow, CampaignRow, ModelRow, TaskRow
from edgeatlas.protos.errors import Conflict, NotFound
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Schedule, Setting


def cancel_open_tasks(s: Session, campaign_id: int, t: int, reason: str | None = None) -> None:
    """Every pending or leased task of the campaign is cancelled (with `reason` as its failure, if given)."""
    values = {"status": "cancelled", "updated_ms": t, "orphaned": False}
    if reason is not None:
        values["failure_reason"] = reason
    s.exec(update(TaskRow).where(TaskRow.campaign_id == campaign_id, TaskRow.status.in_(OPEN_TASK))
           .values(**values))


class Campaigns:
    """The Store's methods for campaigns and their tasks (its engine, writer and caches are set up in sql.Store)."""

    def create_campaign(self, name: str, models: list[ModelRow], selectors: dict[str, str], repeats: int,
                        setting: Setting, params: RunParams, privacy: PrivacyParams | None = None,
                        target_precision: float = 0.0, schedule: Schedule = Schedule(), adaptive_json: str = "",
                        auto_bounds: dict[str, list[float]] | None = None) -> int:
        """A campaign's id; an adaptive one (adaptive_json set) starts without tasks: its rounds add them.
        auto_bounds: "SHA|CLASS" → [lo, hi] ms, public bounds per model and class (`--bounds auto`)."""
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
                                   privacy_json=json.dumps((privacy or PrivacyParams()).check().to_dict()
                                                           | ({"auto_bounds": auto_bounds} if auto_bounds else {})),
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

    def classes_matching(self, selectors: dict[str, str]) -> dict[str, str]:
        """hardware class → a spec sheet of it, over the enrolled devices the selectors match."""
        with self.session() as s:
            agents = [a for a in s.exec(select(AgentRow).where(AgentRow.revoked == False)).all()  # noqa: E712
                      if matches(a, selectors)]
        return {a.hardware_class: a.spec_json for a in agents}

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

    def set_campaign_state(self, campaign_id: int, action: str) -> CampaignRow:
        """pause (running → paused), resume (paused → running) or cancel (running or paused → cancelled)."""
        allowed = {"pause": ("running",), "resume": ("paused",), "cancel": ("running", "paused")}[action]
        t = now_ms()
        with self._write, self.session() as s:
            row = by_id(s, CampaignRow, campaign_id)
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
                cancel_open_tasks(s, campaign_id, t)
            s.add(row)
            s.commit()
            return row

    def _maybe_finish(self, s: Session, campaign: CampaignRow) -> None:
        """A running campaign without open tasks is done; inside a batch, checked once at its end."""
        if campaign.adaptive_json or campaign.federated_json:  # its controller ends it
            return
        batch = batch_of(s)
        if batch is not None:
            batch.finish.add(campaign.id)
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
        """Why tasks failed, were declined or ran but gave no valid result, one line each, with the model and
        the hardware class: what the device said, visible to the one who runs the campaign."""
        with self.session() as s:
            rows = s.exec(select(TaskRow, ModelRow.name).join(ModelRow, ModelRow.sha256 == TaskRow.model_sha256)
                          .where(TaskRow.campaign_id == campaign_id, TaskRow.failure_reason != "")
                          .order_by(TaskRow.id).limit(limit)).all()
            kind = {"done": "invalid", "failed": "failed", "declined": "declined"}
            return [f"task {r.id} {kind.get(r.status, r.status)} ({name} on {r.hardware_class or 'unassigned'}): "
                    f"{r.failure_reason}" for r, name in rows]

    def campaign(self, campaign_id: int) -> CampaignRow:
        with self.session() as s:
            row = by_id(s, CampaignRow, campaign_id)
            if row is None:
                raise NotFound(f"campaign {campaign_id} does not exist")
            return row

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
