"""Leasing a task to an agent: priorities, attempts, expiry, deadlines, and adopting an offline agent's tasks."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import Future

from sqlalchemy import or_, update
from sqlmodel import Session, select

from edgeatlas.coordinator.scheduling import OFFLINE_AFTER_MS, matches, runs_per_task, setting_for, task_privacy
from edgeatlas.coordinator.store.campaigns import cancel_open_tasks
from edgeatlas.coordinator.store.engine import now_ms
from edgeatlas.coordinator.store.records import LeasedTask, OPEN_TASK
from edgeatlas.coordinator.tables import AgentRow, CampaignRow, ModelRow, TaskRow
from edgeatlas.protos.records import RunParams, Setting

MAX_LEASE_ATTEMPTS = 3


LEASE_GRACE_S = 300  # model download and session load, on top of the run's own limit


SWEEP_EVERY_MS = 5_000  # how often leasing looks for overdue campaigns and orphaned tasks


class Leases:
    """The Store's methods for leases (its engine, writer and caches are set up in sql.Store)."""

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

    def any_open_task(self) -> bool:
        """Whether a running campaign has a task not yet done: when none has, no device can lease one."""
        with self.session() as s:
            return s.exec(select(TaskRow.id).join(CampaignRow, CampaignRow.id == TaskRow.campaign_id)
                          .where(CampaignRow.status == "running", TaskRow.status.in_(OPEN_TASK)).limit(1)
                          ).first() is not None

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
                              params=params, privacy=task_privacy(campaign.privacy_json, row.model_sha256,
                                                                  row.hardware_class))

    def _sweep(self, s: Session, t: int) -> int:
        """Campaigns past their deadline expire; tasks whose device went offline (pending) or whose lease
        ran out (leased) become orphans that another device of the same hardware class may adopt. Returns
        how many tasks became orphans (work that waiting devices should be told of)."""
        s.flush()
        for campaign in s.exec(select(CampaignRow).where(CampaignRow.status.in_(("running", "paused")),
                                                         CampaignRow.deadline_ms != None,  # noqa: E711
                                                         CampaignRow.deadline_ms < t)).all():
            campaign.status, campaign.finished_ms = "expired", t
            s.add(campaign)
            cancel_open_tasks(s, campaign.id, t, "the campaign's deadline passed")
        offline = select(AgentRow.agent_id).where(AgentRow.last_seen_ms < t - OFFLINE_AFTER_MS)
        return s.exec(update(TaskRow).where(TaskRow.orphaned == False, or_(  # noqa: E712
            (TaskRow.status == "pending") & TaskRow.agent_id.in_(offline),
            (TaskRow.status == "leased") & (TaskRow.lease_expires_ms < t))).values(orphaned=True)).rowcount

    def expire_overdue(self) -> int:
        """Campaigns past their deadline expire now, and tasks of vanished devices or lapsed leases become
        orphans (leasing also does it, every few seconds); returns the tasks orphaned."""
        with self._write, self.session() as s:
            orphaned = self._sweep(s, now_ms())
            s.commit()
        self._swept_ms = now_ms()
        return orphaned

    def _adopt(self, s: Session, agent_id: str) -> TaskRow | None:
        """An orphaned task of this agent's hardware class, moved to it, unless it already holds the same
        (campaign, model, repeat): no device runs two copies of one task."""
        agent = self._enrolled(s, agent_id)
        orphans = s.exec(
            select(TaskRow, CampaignRow).join(CampaignRow, CampaignRow.id == TaskRow.campaign_id)
            .where(TaskRow.orphaned == True, TaskRow.hardware_class == agent.hardware_class,  # noqa: E712
                   TaskRow.agent_id != agent_id, TaskRow.status.in_(OPEN_TASK), CampaignRow.status == "running")
            .order_by(CampaignRow.priority.desc(), TaskRow.campaign_id, TaskRow.repeat, TaskRow.id).limit(200)
            # on PostgreSQL, orphans another replica is adopting now are passed over, not adopted twice
            .with_for_update(of=TaskRow, skip_locked=True)).all()
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
