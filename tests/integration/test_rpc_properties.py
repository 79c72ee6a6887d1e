"""Property tests over the wire: random and malformed messages to every RPC of a real coordinator.

The server never crashes, answers each call with a clear status (never INTERNAL or UNKNOWN), and
every row it stored afterwards is a valid one.
"""

from __future__ import annotations

import json
import math

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeatlas.agent.probe import probe
from edgeatlas.coordinator.store import Store
from edgeatlas.coordinator.tables import ReportRow
from edgeatlas.protos.records import RunParams, Setting
from edgeatlas.protos.wire import bearer
from edgeatlas.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc, common_pb2

from tests.conftest import CoordinatorProcess, coordinator_db, register

pytestmark = pytest.mark.slow

CLEAR = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1.0, 1e300, 1.0, 2.5])
text = st.text(max_size=80)
small_ints = st.integers(min_value=0, max_value=2**32 - 1)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory, prepared_zoo):
    tmp = tmp_path_factory.mktemp("props")
    c = CoordinatorProcess(tmp, tmp / "coordinator.db", db_url=coordinator_db(request, request.param, tmp),
                           extra_args=("--enroll-rate", "1000000")).start()  # explore inputs, not the limit
    channel = grpc.insecure_channel(c.address)
    agent = agent_pb2_grpc.AgentServiceStub(channel)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    enrolled = agent.Enroll(agent_pb2.EnrollRequest(enrollment_token=c.enroll_token,
                                                    spec_json=probe("/", measure_bandwidth=False).to_json()),
                            timeout=10)
    with c.admin() as client:
        register(client, prepared_zoo, ["mlp-s"])
        client.create_campaign(["mlp-s"], {}, 50, Setting(threads=1), RunParams())
    task = agent.LeaseTask(agent_pb2.LeaseTaskRequest(wait_s=5), metadata=bearer(enrolled.credential),
                           timeout=10).task
    yield c, agent, admin, bearer(enrolled.credential), bearer(c.admin_token), task
    channel.close()
    c.stop()


def call(method, request, metadata, stream=False):
    try:
        result = method(request, metadata=metadata, timeout=15)
        return list(result) if stream else result
    except grpc.RpcError as exc:
        assert exc.code() in CLEAR, f"{exc.code()}: {exc.details()}"
        assert exc.details() and "\n" not in exc.details()
        return None


def alive(server) -> None:
    c, agent, *_ = server
    assert c.proc.poll() is None, "the coordinator died"


setting_msgs = st.builds(common_pb2.Setting, target=text, runtime=text, runtime_version=text,
                         execution_provider=text, batch=small_ints, threads=small_ints, precision=text, scenario=text)
stats_msgs = st.builds(common_pb2.LatencyStats, p50_ms=floats, p90_ms=floats, p99_ms=floats, mean_ms=floats,
                       stdev_ms=floats, min_ms=floats, max_ms=floats, throughput_ips=floats,
                       iterations=st.integers(0, 2**63), duration_s=floats)
privacy_msgs = st.builds(common_pb2.Privacy, mechanism=st.sampled_from(["gaussian", "laplace", "", "x"]),
                         epsilon=floats, delta=floats, statistics=st.lists(text, max_size=4),
                         bound_lo_ms=floats, bound_hi_ms=floats, bits=small_ints)


@EXAMPLES
@given(report_id=text, use_task=st.booleans(), task_id=st.integers(-2**63, 2**63 - 1), lease=text,
       status=st.integers(0, 5), setting=st.none() | setting_msgs, stats=st.none() | stats_msgs,
       privacy=st.none() | privacy_msgs, released=st.dictionaries(text, floats, max_size=4),
       mode=st.sampled_from(["ldp", "trusted", "", "other"]), reason=text, valid=st.booleans())
def test_report_never_crashes_nor_stores_invalid_rows(server, report_id, use_task, task_id, lease, status, setting,
                                                      stats, privacy, released, mode, reason, valid):
    _, agent, _, agent_md, _, task = server
    m = agent_pb2.ReportRequest(report_id=report_id, task_id=task.task_id if use_task else task_id,
                                lease_id=task.lease_id if use_task else lease, status=status, privacy_mode=mode,
                                failure_reason=reason, invalid_reason=reason, valid=valid, released=released)
    for field, value in (("setting", setting), ("stats", stats), ("privacy", privacy)):
        if value is not None:
            getattr(m, field).CopyFrom(value)
    call(agent.Report, m, agent_md)
    alive(server)


@EXAMPLES
@given(token=text, spec=text | st.dictionaries(text, st.none() | floats | text).map(json.dumps),
       labels=st.dictionaries(text, text, max_size=40), name=st.text(max_size=200))
def test_enroll(server, token, spec, labels, name):
    c, agent, *_ = server
    call(agent.Enroll, agent_pb2.EnrollRequest(enrollment_token=token or c.enroll_token, spec_json=spec,
                                               labels=labels, name=name), None)
    alive(server)


@EXAMPLES
@given(sha=text, offset=st.integers(0, 2**64 - 1), wait=st.integers(0, 3), state=text, md=st.booleans())
def test_agent_reads(server, sha, offset, wait, state, md):
    _, agent, _, agent_md, _, _ = server
    metadata = agent_md if md else bearer("ea_agent_forged")
    call(agent.FetchModel, agent_pb2.FetchModelRequest(sha256=sha, offset=offset), metadata, stream=True)
    call(agent.Heartbeat, agent_pb2.HeartbeatRequest(state=state), metadata)
    call(agent.LeaseTask, agent_pb2.LeaseTaskRequest(wait_s=0), metadata)
    alive(server)


@EXAMPLES
@given(models=st.lists(text, max_size=3), selectors=st.dictionaries(text, text, max_size=3),
       repeats=small_ints, setting=setting_msgs, privacy=privacy_msgs, precision=floats,
       warmup=small_ints, iterations=small_ints, duration=floats, priority=st.integers(-2**31, 2**31 - 1),
       deadline=st.integers(-2**63, 2**63 - 1), quota=small_ints,
       adaptive=st.none() | st.builds(admin_pb2.Adaptive, budget=small_ints, target_mape=floats,
                                      for_spec_json=text, epsilon_budget=floats))
def test_create_campaign(server, models, selectors, repeats, setting, privacy, precision, warmup, iterations,
                         duration, priority, deadline, quota, adaptive):
    _, _, admin, _, admin_md, _ = server
    request = admin_pb2.CreateCampaignRequest(
        models=models or ["mlp-s"], selectors=selectors, repeats=min(repeats, 2000), setting=setting,
        privacy=privacy, target_precision=precision, priority=priority, deadline_ms=deadline, quota=quota,
        params=agent_pb2.RunParams(warmup_iterations=warmup, min_iterations=iterations, min_duration_s=duration,
                                   max_duration_s=duration), adaptive=adaptive)
    call(admin.CreateCampaign, request, admin_md)
    alive(server)


@EXAMPLES
@given(sha=text, size=st.integers(0, 2**64 - 1), chunks=st.lists(st.binary(max_size=64), max_size=3),
       kind=text, ttl=small_ints, uses=small_ints, metric=text, precision=floats, cid=st.integers(-5, 2**63 - 1))
def test_admin_calls(server, sha, size, chunks, kind, ttl, uses, metric, precision, cid):
    _, _, admin, _, admin_md, _ = server
    stream = iter([admin_pb2.BlobChunk(sha256=sha, size_bytes=size)] + [admin_pb2.BlobChunk(data=d) for d in chunks])
    call(admin.UploadBlob, stream, admin_md)
    call(admin.RegisterModel, admin_pb2.RegisterModelRequest(name=kind, format=kind, sha256=sha,
                                                             summary_json=metric), admin_md)
    call(admin.CreateToken, admin_pb2.CreateTokenRequest(kind=kind, ttl_s=ttl, uses=uses), admin_md)
    call(admin.GetHeatmap, admin_pb2.GetHeatmapRequest(metric=metric, target_precision=precision), admin_md)
    call(admin.GetCampaign, admin_pb2.GetCampaignRequest(campaign_id=cid), admin_md)
    call(admin.PauseCampaign, admin_pb2.GetCampaignRequest(campaign_id=cid), admin_md)
    call(admin.ResumeCampaign, admin_pb2.GetCampaignRequest(campaign_id=cid), admin_md)
    call(admin.ImportCells, admin_pb2.ImportCellsRequest(model_sha256=sha, source=kind, citation=metric,
                                                         cells=[admin_pb2.PublishedCell(spec_json=metric)]), admin_md)
    alive(server)


def test_text_with_a_nul_character_is_invalid_argument(server):
    """No database stores a NUL character in text (PostgreSQL refuses it: this was INTERNAL there)."""
    c, agent, admin, agent_md, admin_md, task = server
    attempts = [
        (agent.Enroll, agent_pb2.EnrollRequest(enrollment_token=c.enroll_token, spec_json="{}", name="a\x00"), None,
         "name"),
        (agent.Enroll, agent_pb2.EnrollRequest(enrollment_token=c.enroll_token, spec_json="{}",
                                               labels={"k": "v\x00"}), None, "labels['k']"),
        (agent.FetchModel, agent_pb2.FetchModelRequest(sha256="\x00"), agent_md, "sha256"),
        (agent.Heartbeat, agent_pb2.HeartbeatRequest(state="idle\x00"), agent_md, "state"),
        (admin.CreateCampaign, admin_pb2.CreateCampaignRequest(models=["mlp-s\x00"], repeats=1), admin_md, "models"),
    ]
    for method, request, metadata, field in attempts:
        with pytest.raises(grpc.RpcError) as info:
            result = method(request, metadata=metadata, timeout=10)
            list(result) if method is agent.FetchModel else None
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert info.value.details() == f"{field} contains a NUL character"
    alive(server)


@pytest.mark.parametrize("method", ["/edgeatlas.v1.AgentService/Report", "/edgeatlas.v1.AgentService/Enroll",
                                    "/edgeatlas.v1.AgentService/FetchModel",
                                    "/edgeatlas.v1.AdminService/CreateCampaign"])
def test_bytes_that_are_no_message_are_refused(server, method):
    c = server[0]
    channel = grpc.insecure_channel(c.address)
    kind = channel.unary_stream if method.endswith("FetchModel") else channel.unary_unary
    raw = kind(method, request_serializer=None, response_deserializer=None)
    for junk in (b"\xff\xff\xff\xff", b"\x0a\x05ab", bytes(range(256))):
        with pytest.raises(grpc.RpcError) as info:
            result = raw(junk, metadata=server[3] if "Agent" in method else server[4], timeout=10)
            list(result) if method.endswith("FetchModel") else None
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in info.value.details()
    channel.close()
    alive(server)


def test_every_stored_report_is_valid(server):
    """Runs last in this module: whatever the random calls got through, it is a valid row."""
    c = server[0]
    store = Store(c.db_url or f"sqlite:///{c.db_path}")
    try:
        with store.session() as s:
            rows = s.exec(__import__("sqlmodel").select(ReportRow)).all()
    finally:
        store.close()
    for row in rows:
        assert row.status in ("ok", "failed", "declined") and row.privacy_mode in ("ldp", "trusted")
        if row.privacy_mode == "ldp" and row.status == "ok":
            assert json.loads(row.stats_json) == {}  # nothing exact from a private report
            assert all(math.isfinite(v) for v in json.loads(row.released_json).values())
        if row.privacy_mode == "trusted" and row.status == "ok":
            stats = json.loads(row.stats_json)
            assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
