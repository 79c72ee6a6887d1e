"""kill -9 the coordinator while simulated agents are reporting through their on-disk outboxes, restart it:
every acknowledged report is stored exactly once, nothing unacknowledged is lost, and the outboxes drain.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

import grpc
import pytest
from sqlmodel import select

from edgeatlas.agent.outbox import Outbox
from edgeatlas.agent.simulate import load_catalog, synthetic_stats
from edgeatlas.coordinator.store import Store
from edgeatlas.coordinator.tables import ReportRow
from edgeatlas.protos import convert
from edgeatlas.protos.records import RunParams, Setting
from edgeatlas.protos.wire import CHANNEL_OPTIONS, bearer
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

from tests.conftest import CoordinatorProcess, coordinator_db, register

pytestmark = pytest.mark.slow

AGENTS, REPEATS = 12, 20
RETRY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
# reconnect within a second of the coordinator's return, not after gRPC's default backoff of up to 2 minutes
OPTIONS = CHANNEL_OPTIONS + [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)]


async def persist(call, *args, **kwargs):
    """A call retried while the coordinator is down."""
    while True:
        try:
            return await call(*args, timeout=10, **kwargs)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRY:
                raise
            await asyncio.sleep(0.2)


def stored_report_ids(db_url: str) -> list[str]:
    store = Store(db_url)
    try:
        with store.session() as s:
            return [r.report_id for r in s.exec(select(ReportRow)).all()]
    finally:
        store.close()


async def virtual_agent(stub, credential: str, outbox: Outbox, acked: list[str]) -> None:
    """Lease, put the report in the outbox (fsynced), send it; delete it only once acknowledged."""
    md = bearer(credential)
    while True:
        for report in outbox.pending():
            await persist(stub.Report, report, metadata=md)
            outbox.acknowledged(report.report_id)
            acked.append(report.report_id)
        lease = await persist(stub.LeaseTask, agent_pb2.LeaseTaskRequest(wait_s=0), metadata=md)
        if not lease.has_task:
            return
        task = lease.task
        ran = Setting(target="cpu", runtime="simulated", runtime_version="0", execution_provider="simulated",
                      threads=1, precision="fp32")
        outbox.put(agent_pb2.ReportRequest(
            report_id=uuid.uuid4().hex, task_id=task.task_id, lease_id=task.lease_id,
            status=agent_pb2.ReportRequest.OK, valid=True, privacy_mode="trusted",
            setting=convert.setting_to_pb(ran),
            stats=convert.stats_to_pb(synthetic_stats(2.0, 1, random.Random(task.task_id))),
            started_ms=int(time.time() * 1000), agent_version="crash-test"))


async def fleet_through_a_crash(c: CoordinatorProcess, tmp_path, kill_after: int) -> tuple[list[str], int]:
    acked: list[str] = []
    catalog = load_catalog()
    async with grpc.aio.insecure_channel(c.address, options=OPTIONS) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        credentials = []
        for i in range(AGENTS):
            spec = dict(catalog[i % len(catalog)].data, simulated=True)
            resp = await stub.Enroll(agent_pb2.EnrollRequest(
                enrollment_token=c.enroll_token, spec_json=json.dumps(spec), name=f"sim-{i}", simulated=True,
                labels={"simulated": "true"}), timeout=30)
            credentials.append(resp.credential)
        with c.admin() as admin:
            admin.create_campaign(["mlp-s"], {"label.simulated": "true"}, REPEATS, Setting(threads=1), RunParams())
        agents = [asyncio.create_task(virtual_agent(stub, cred, Outbox(tmp_path / f"outbox-{i}"), acked))
                  for i, cred in enumerate(credentials)]
        while len(acked) < kill_after:
            await asyncio.sleep(0.01)
        acked_before_kill = len(acked)
        await asyncio.to_thread(c.kill)  # SIGKILL while reports are in flight
        await asyncio.sleep(1.0)
        await asyncio.to_thread(c.start)  # the same database and port
        await asyncio.wait_for(asyncio.gather(*agents), timeout=300)
    return acked, acked_before_kill


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_every_acknowledged_report_survives_a_coordinator_kill(db, request, prepared_zoo, tmp_path):
    db_url = coordinator_db(request, db, tmp_path)
    c = CoordinatorProcess(tmp_path, tmp_path / "coordinator.db", db_url=db_url,
                           extra_args=("--report-rate", "6000")).start()
    try:
        with c.admin() as admin:
            register(admin, prepared_zoo, ["mlp-s"])
        acked, before = asyncio.run(fleet_through_a_crash(c, tmp_path, kill_after=AGENTS * REPEATS // 3))
        with c.admin() as admin:
            campaign = admin.list_campaigns()[0]
            cells = admin.heatmap().cells
    finally:
        c.stop()
    total = AGENTS * REPEATS
    assert 0 < before < total  # the kill came mid-campaign
    assert len(acked) == len(set(acked)) == total  # every report acknowledged once
    stored = stored_report_ids(db_url or f"sqlite:///{tmp_path / 'coordinator.db'}")
    assert sorted(stored) == sorted(acked)  # each acknowledged report present, exactly once; nothing else
    assert (campaign.status, campaign.counts.done, campaign.counts.failed) == ("done", total, 0)
    assert sum(cell.n_reports for cell in cells) == total  # folded once each
    leftovers = [p for i in range(AGENTS) for p in (tmp_path / f"outbox-{i}").rglob("*") if p.is_file()]
    assert leftovers == []  # every outbox drained, nothing rejected
