"""Enrolled agents: credentials (cached until a revocation), heartbeats written in batches, the fleet listing."""

from __future__ import annotations

import json
import math
import time
import uuid

from sqlalchemy import bindparam, func, update
from sqlmodel import Session, select

from edgeatlas.coordinator.store.engine import insert_new, now_ms
from edgeatlas.coordinator.store.records import OPEN_TASK
from edgeatlas.coordinator.tables import AgentRow, CampaignRow, HardwareRow, ReportRow, TaskRow
from edgeatlas.protos.errors import NotFound
from edgeatlas.protos.spec import SpecSheet

CREDENTIAL_CACHE_S = 10.0
LOOKUP_CHUNK = 500  # credentials per query (SQLite binds at most 32,766 parameters)
MAX_REMEMBERED = 200_000  # agents in the credential cache (a few KB each); past it, it starts again


class Agents:
    """The Store's methods for enrolled agents (its engine, writer and caches are set up in sql.Store)."""

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
            if s.get(HardwareRow, hw) is None:  # another replica may be adding the same class now: kept once
                s.connection().execute(insert_new(s.connection(), HardwareRow.__table__),
                                       {"hardware_class": hw, "spec_json": spec.to_json(), "first_seen_ms": t})
            s.commit()
        return row

    def cached_agent(self, credential_hash: str) -> AgentRow | None:
        """The agent holding this credential, from memory (no database), while the cache is known to be
        current: revocations were counted within CREDENTIAL_CACHE_S. Otherwise None: ask agent_by_credential."""
        return self._credentials.get(credential_hash) if self._cache_current() else None

    def _cache_current(self) -> bool:
        """Revoked agents were counted within CREDENTIAL_CACHE_S."""
        return time.monotonic() - self._revocations[1] < CREDENTIAL_CACHE_S

    def count_revocations(self) -> None:
        """Counts the revoked agents (one query) and empties the credential cache if the count moved. The
        server does this every third of CREDENTIAL_CACHE_S, so that the cache stays current without a
        call waiting on it: when the count was left to the calls, 20,000 long-polling devices each found it
        stale at once, and every one of their calls queued a query behind the others."""
        with self._revocation_lock:
            self._count_revocations()

    def _count_revocations(self) -> None:
        with self.session() as s:
            revoked = s.exec(select(func.count()).select_from(AgentRow)
                             .where(AgentRow.revoked == True)).one()  # noqa: E712
        if revoked != self._revocations[0]:
            self._credentials.clear()
        self._revocations = (revoked, time.monotonic())

    def agent_by_credential(self, credential_hash: str) -> AgentRow | None:
        """The agent holding this credential, unless it was revoked (agents_by_credentials of one)."""
        return self.agents_by_credentials([credential_hash]).get(credential_hash)

    def agents_by_credentials(self, credential_hashes: list[str]) -> dict[str, AgentRow]:
        """The agents holding these credentials, leaving out revoked and unknown ones; one query per
        LOOKUP_CHUNK of those not remembered. Known ones are remembered until a revocation: one made here
        is seen at once, one made through another replica as soon as the replicas' bus tells this one
        (forget_credentials), and within CREDENTIAL_CACHE_S even if that word is lost, when this replica
        next counts the revoked agents (count_revocations)."""
        if not self._cache_current():
            with self._revocation_lock:  # callers that found it stale together: one of them counts
                if not self._cache_current():
                    self._count_revocations()
        remembered = ((h, self._credentials.get(h)) for h in credential_hashes)  # .get: another thread may empty it
        found = {h: agent for h, agent in remembered if agent is not None}
        missing = sorted(set(credential_hashes) - found.keys())
        for i in range(0, len(missing), LOOKUP_CHUNK):
            with self.session() as s:
                rows = s.exec(select(AgentRow).where(AgentRow.credential_hash.in_(missing[i:i + LOOKUP_CHUNK]),
                                                     AgentRow.revoked == False)).all()  # noqa: E712
            if len(self._credentials) + len(rows) > MAX_REMEMBERED:
                self._credentials.clear()
                self._agents.clear()
            for agent in rows:
                self._credentials[agent.credential_hash] = agent
                self._agents[agent.agent_id] = agent
                found[agent.credential_hash] = agent
        return found

    def forget_credentials(self) -> None:
        """Another replica revoked an agent (the bus says so): the next call of each agent asks the database."""
        self._credentials.clear()
        self._revocations = (-1, -math.inf)

    def _enrolled(self, s: Session, agent_id: str) -> AgentRow | None:
        """The agent's row, from the credential cache when it is there: what a fold reads of an agent
        (its class, spec sheet, simulated or not) never changes after enrolment."""
        hit = self._agents.get(agent_id)
        return hit if hit is not None else s.get(AgentRow, agent_id)

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
