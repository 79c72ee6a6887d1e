"""Bad input over real gRPC: a clear status code, and nothing stored."""

import math

import grpc
import pytest

from edgeatlas.agent.privacy.release import release
from edgeatlas.agent.probe import probe
from edgeatlas.protos import convert
from edgeatlas.protos.records import LatencyStats
from edgeatlas.coordinator.services.admin_service import MAX_MODEL_BYTES
from edgeatlas.coordinator.store import Store
from edgeatlas.protos.errors import Unauthenticated
from edgeatlas.protos.records import RunParams, Setting
from edgeatlas.protos.wire import MAX_MESSAGE_BYTES, bearer
from edgeatlas.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc

from tests.conftest import register

pytestmark = pytest.mark.slow


@pytest.fixture
def wire(coordinator, prepared_zoo):
    channel = grpc.insecure_channel(coordinator.address)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    spec = probe("/", measure_bandwidth=False).to_json()
    creds = []
    for name in ("a", "b"):
        resp = stub.Enroll(agent_pb2.EnrollRequest(enrollment_token=coordinator.enroll_token, spec_json=spec,
                                                   name=name), timeout=10)
        creds.append(resp.credential)
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
        admin.create_campaign(["mlp-s"], {"name": "a"}, 1, Setting(threads=1), RunParams())
    task = stub.LeaseTask(agent_pb2.LeaseTaskRequest(wait_s=5), metadata=bearer(creds[0]), timeout=10).task
    assert task.task_id
    yield stub, creds, task, coordinator
    channel.close()


def _setting(r: agent_pb2.ReportRequest, task) -> None:
    """The task's setting, as an agent fills it in: the runtime's version (a report must carry its task's)."""
    r.setting.CopyFrom(task.setting)
    r.setting.runtime_version = "1.32.0"


def good_report(task, report_id="report-0001") -> agent_pb2.ReportRequest:
    """What an agent sends by default: a release noised under the task's privacy contract."""
    r = agent_pb2.ReportRequest(report_id=report_id, task_id=task.task_id, lease_id=task.lease_id,
                                status=agent_pb2.ReportRequest.OK, valid=True, privacy_mode="ldp")
    _setting(r, task)
    privacy = convert.privacy_from_pb(task.privacy)
    r.privacy.CopyFrom(task.privacy)
    stats = LatencyStats(1.0, 1.1, 1.2, 1.05, 0.05, 0.9, 1.3, 950.0, 100, 0.1)
    r.released.update(release(stats, privacy).values)
    return r


def trusted_report(task, report_id="report-0001") -> agent_pb2.ReportRequest:
    """What an owner in trusted mode sends: exact stats."""
    r = agent_pb2.ReportRequest(report_id=report_id, task_id=task.task_id, lease_id=task.lease_id,
                                status=agent_pb2.ReportRequest.OK, valid=True, privacy_mode="trusted")
    _setting(r, task)
    s = r.stats
    s.p50_ms, s.p90_ms, s.p99_ms, s.mean_ms, s.stdev_ms = 1.0, 1.1, 1.2, 1.05, 0.05
    s.min_ms, s.max_ms, s.throughput_ips, s.iterations, s.duration_s = 0.9, 1.3, 950.0, 100, 0.1
    return r


def nothing_stored(coordinator) -> None:
    store = Store(f"sqlite:///{coordinator.db_path}")
    try:
        assert store.count_reports() == 0
        assert store.heatmap() == []
    finally:
        store.close()


def test_wrong_or_missing_tokens_are_unauthenticated(wire):
    stub, _, task, coordinator = wire
    for metadata in (None, bearer("ea_agent_wrong")):
        with pytest.raises(grpc.RpcError) as info:
            stub.Report(trusted_report(task), metadata=metadata, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        stub.Enroll(agent_pb2.EnrollRequest(enrollment_token="ea_enroll_wrong", spec_json="{}"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel = grpc.insecure_channel(coordinator.address)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    for metadata in (None, bearer(coordinator.enroll_token)):  # an enrollment token is no admin token
        with pytest.raises(grpc.RpcError) as info:
            admin.GetHeatmap(admin_pb2.GetHeatmapRequest(), metadata=metadata, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
    with pytest.raises(Unauthenticated):
        from edgeatlas.protos.admin_client import AdminClient
        AdminClient(coordinator.address, "ea_admin_wrong").list_models()
    nothing_stored(coordinator)


def _stat(field, value):
    def f(r):
        setattr(r.stats, field, value)
    return f


def _released(name, value):
    def f(r):
        r.released[name] = value
    return f


TRUSTED_MUTATIONS = {
    "nan p50": _stat("p50_ms", math.nan),
    "infinite p99": _stat("p99_ms", math.inf),
    "negative min": _stat("min_ms", -1.0),
    "absurd max": _stat("max_ms", 1e12),
    "zero throughput": _stat("throughput_ips", 0.0),
    "unordered percentiles": _stat("p90_ms", 5.0),
    "missing stats": lambda r: r.ClearField("stats"),
}
LDP_MUTATIONS = {
    "nan release": _released("log_p50_ms", math.nan),
    "infinite release": _released("log_p99_ms", math.inf),
    "absurd release": _released("log_mean_ms", 1e9),
    "missing statistic": lambda r: r.released.pop("log_p99_ms"),
    "extra statistic": _released("log_p90_ms", 0.0),
    "exact stats beside the release": lambda r: r.stats.CopyFrom(trusted_report(agent_pb2.Task()).stats),
    "weaker epsilon than the campaign's": lambda r: setattr(r.privacy, "epsilon", 8.0),
    "other mechanism": lambda r: (setattr(r.privacy, "mechanism", "laplace"), setattr(r.privacy, "delta", 0.0)),
    "missing contract": lambda r: r.ClearField("privacy"),
    "missing setting": lambda r: r.ClearField("setting"),
    "missing status": lambda r: setattr(r, "status", agent_pb2.ReportRequest.STATUS_UNSPECIFIED),
    "missing report_id": lambda r: setattr(r, "report_id", ""),
    "missing lease": lambda r: setattr(r, "lease_id", ""),
    "unknown task": lambda r: setattr(r, "task_id", 987654),
    "zero batch": lambda r: setattr(r.setting, "batch", 0),
    "failed without reason": lambda r: setattr(r, "status", agent_pb2.ReportRequest.FAILED),
    "declined without reason": lambda r: setattr(r, "status", agent_pb2.ReportRequest.DECLINED),
    "unknown privacy mode": lambda r: setattr(r, "privacy_mode", "whatever"),
}


def _bad_report_is_refused(wire, report):
    stub, creds, _, coordinator = wire
    with pytest.raises(grpc.RpcError) as info:
        stub.Report(report, metadata=bearer(creds[0]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details() and "\n" not in info.value.details()
    nothing_stored(coordinator)


@pytest.mark.parametrize("mutation", list(LDP_MUTATIONS))
def test_bad_private_reports_are_invalid_argument_and_store_nothing(wire, mutation):
    report = good_report(wire[2])
    LDP_MUTATIONS[mutation](report)
    _bad_report_is_refused(wire, report)


@pytest.mark.parametrize("mutation", list(TRUSTED_MUTATIONS))
def test_bad_trusted_reports_are_invalid_argument_and_store_nothing(wire, mutation):
    report = trusted_report(wire[2])
    TRUSTED_MUTATIONS[mutation](report)
    _bad_report_is_refused(wire, report)


def test_foreign_task_is_invalid_argument_then_the_owner_succeeds_once(wire):
    stub, creds, task, coordinator = wire
    with pytest.raises(grpc.RpcError) as info:
        stub.Report(good_report(task), metadata=bearer(creds[1]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    nothing_stored(coordinator)
    first = stub.Report(good_report(task), metadata=bearer(creds[0]), timeout=10)
    retry = stub.Report(good_report(task), metadata=bearer(creds[0]), timeout=10)
    assert (first.accepted, first.duplicate, retry.duplicate) == (True, False, True)
    with coordinator.admin() as admin:
        cell, = admin.heatmap().cells
    assert cell.n_reports == 1 and cell.source == "fleet" and cell.privacy.startswith("ldp gaussian")
    est = cell.metrics["latency_p50_ms"]
    assert est.low < est.value < est.high  # a noised value, with the noise inside its interval


def test_a_trusted_report_lands_in_a_trusted_cell_with_exact_values(wire):
    stub, creds, task, coordinator = wire
    stub.Report(trusted_report(task), metadata=bearer(creds[0]), timeout=10)
    with coordinator.admin() as admin:
        cell, = admin.heatmap().cells
    assert cell.source == "trusted" and cell.metrics["latency_p50_ms"].value == pytest.approx(1.0)


def test_fetch_streams_the_exact_bytes_in_chunks(wire, prepared_zoo):
    stub, creds, task, _ = wire
    chunks = list(stub.FetchModel(agent_pb2.FetchModelRequest(sha256=task.model.sha256),
                                  metadata=bearer(creds[0]), timeout=30))
    assert b"".join(c.data for c in chunks) == prepared_zoo["mlp-s"].path.read_bytes()
    assert chunks[0].total_size == task.model.size_bytes
    tail = list(stub.FetchModel(agent_pb2.FetchModelRequest(sha256=task.model.sha256, offset=1000),
                                metadata=bearer(creds[0]), timeout=30))
    assert b"".join(c.data for c in tail) == prepared_zoo["mlp-s"].path.read_bytes()[1000:]
    with pytest.raises(grpc.RpcError) as info:
        list(stub.FetchModel(agent_pb2.FetchModelRequest(sha256="0" * 64), metadata=bearer(creds[0]), timeout=10))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_upload_with_wrong_sha256_is_refused(coordinator):
    channel = grpc.insecure_channel(coordinator.address)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    chunks = iter([admin_pb2.BlobChunk(sha256="1" * 64, size_bytes=3), admin_pb2.BlobChunk(data=b"abc")])
    with pytest.raises(grpc.RpcError) as info:
        admin.UploadBlob(chunks, metadata=bearer(coordinator.admin_token), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


def test_over_limit_messages_and_uploads_are_resource_exhausted_and_store_nothing(wire):
    stub, creds, task, coordinator = wire
    huge = trusted_report(task, "report-huge")
    huge.failure_reason = "x" * (MAX_MESSAGE_BYTES + 1)  # over gRPC's message limit before any check of ours
    with pytest.raises(grpc.RpcError) as info:
        stub.Report(huge, metadata=bearer(creds[0]), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    channel = grpc.insecure_channel(coordinator.address)
    chunks = iter([admin_pb2.BlobChunk(sha256="1" * 64, size_bytes=MAX_MODEL_BYTES + 1),
                   admin_pb2.BlobChunk(data=b"abc")])
    with pytest.raises(grpc.RpcError) as info:
        admin_pb2_grpc.AdminServiceStub(channel).UploadBlob(chunks, metadata=bearer(coordinator.admin_token),
                                                            timeout=10)
    channel.close()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "byte limit" in info.value.details()
    store = Store(f"sqlite:///{coordinator.db_path}")
    try:
        assert store.count_reports() == 0 and store.blob("1" * 64) is None
    finally:
        store.close()
    stub.Report(trusted_report(task), metadata=bearer(creds[0]), timeout=10)  # still serving
    assert coordinator.proc.poll() is None


@pytest.mark.parametrize("federated, code, words", [
    (admin_pb2.Federated(devices=2, epsilon=math.nan), grpc.StatusCode.INVALID_ARGUMENT, "epsilon = nan"),
    (admin_pb2.Federated(devices=2, update_clip=-1), grpc.StatusCode.INVALID_ARGUMENT, "update_clip = -1"),
    (admin_pb2.Federated(devices=2, rounds=5000), grpc.StatusCode.INVALID_ARGUMENT, "at most 10000 devices"),
    (admin_pb2.Federated(devices=2), grpc.StatusCode.FAILED_PRECONDITION, "runs no Flower SuperLink"),
])
def test_a_bad_federated_campaign_is_refused_and_stores_nothing(coordinator, federated, code, words):
    channel = grpc.insecure_channel(coordinator.address)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:  # this coordinator was started without --superlink
        admin.CreateCampaign(admin_pb2.CreateCampaignRequest(name="fl", federated=federated),
                             metadata=bearer(coordinator.admin_token), timeout=10)
    assert info.value.code() == code and words in info.value.details()
    listed = admin.ListCampaigns(admin_pb2.ListCampaignsRequest(), metadata=bearer(coordinator.admin_token), timeout=10)
    assert list(listed.campaigns) == []
    channel.close()
