"""Revocation and rate limits, on a real coordinator (the demo's logs free of secrets: tests/e2e/test_demo.py)."""

import grpc
import pytest

from edgeatlas.agent.probe import probe
from edgeatlas.protos.errors import Unauthenticated
from edgeatlas.protos.records import RunParams, Setting
from edgeatlas.protos.wire import bearer
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

from tests.conftest import CoordinatorProcess, coordinator_db, register, run_cli
from tests.integration.test_wire_errors import trusted_report

pytestmark = pytest.mark.slow


def enroll(c, token=None):
    channel = grpc.insecure_channel(c.address)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    resp = stub.Enroll(agent_pb2.EnrollRequest(enrollment_token=token or c.enroll_token,
                                               spec_json=probe("/", measure_bandwidth=False).to_json()), timeout=10)
    return stub, resp


def test_revoked_tokens_and_agents_stop_working(any_coordinator, prepared_zoo):
    coordinator = any_coordinator
    env = coordinator.env()
    extra = run_cli("token", "create", "--kind", "enroll", env=env).stdout.strip()
    stub, agent = enroll(coordinator, extra)
    assert run_cli("token", "revoke", extra, env=env).returncode == 0
    with pytest.raises(grpc.RpcError) as info:
        enroll(coordinator, extra)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
        cid = admin.create_campaign(["mlp-s"], {}, 1, Setting(), RunParams()).campaign_id
    assert run_cli("agents", "revoke", agent.agent_id, env=env).returncode == 0
    with pytest.raises(grpc.RpcError) as info:
        stub.Heartbeat(agent_pb2.HeartbeatRequest(), metadata=bearer(agent.credential), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with coordinator.admin() as admin:
        c = admin.campaign(cid)
    assert c.counts.cancelled == 1 and c.status == "done"

    admin_extra = run_cli("token", "create", "--kind", "admin", env=env).stdout.strip()
    assert run_cli("token", "revoke", admin_extra, env=env).returncode == 0
    from edgeatlas.protos.admin_client import AdminClient
    with AdminClient(coordinator.address, admin_extra) as admin, pytest.raises(Unauthenticated):
        admin.list_models()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_report_rate_is_limited_per_agent(db, request, tmp_path, prepared_zoo):
    c = CoordinatorProcess(tmp_path, tmp_path / "c.db", db_url=coordinator_db(request, db, tmp_path),
                           extra_args=("--report-rate", "4")).start()
    try:
        stub, agent = enroll(c)
        with c.admin() as admin:
            register(admin, prepared_zoo, ["mlp-s"])
            admin.create_campaign(["mlp-s"], {}, 3, Setting(), RunParams())
        md = bearer(agent.credential)
        codes = []
        for i in range(3):
            task = stub.LeaseTask(agent_pb2.LeaseTaskRequest(wait_s=2), metadata=md, timeout=10).task
            try:
                stub.Report(trusted_report(task, f"report-{i:04d}"), metadata=md, timeout=10)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
        assert codes[0] == "OK" and "RESOURCE_EXHAUSTED" in codes[1:]
        assert c.proc.poll() is None
    finally:
        c.stop()
