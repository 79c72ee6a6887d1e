"""The benchmark engine over the wire: LoadGen scenarios and LLM tasks run by real agent processes
against a real coordinator; their figures reach the heat-map; bad tasks fail with their reason."""

import json

import grpc
import pytest

from edgeatlas.agent.results import LocalResults
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Setting

from tests.conftest import register, stop_pid
from tests.integration.test_campaign import campaign_state, enrolled, start_agents, wait_for

pytestmark = pytest.mark.slow

LLM = {"prompt_tokens": "32", "output_tokens": "8"}
FEW = RunParams(warmup_iterations=1, min_iterations=3, min_duration_s=0.05)


@pytest.fixture
def engine(coordinator, prepared_zoo, gguf_zoo, tmp_path):
    """One trusted agent and one private (ldp) agent, with ONNX and GGUF models registered."""
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s", "mobilenet-s"])
        register(admin, gguf_zoo, ["llama-s", "llama-m"])
    (tmp_path / "ldp").mkdir()
    procs = start_agents(coordinator, tmp_path, n=1, extra=("--trusted", "--label", "mode=trusted"))
    procs += start_agents(coordinator, tmp_path / "ldp", n=1, extra=("--label", "mode=ldp"))
    try:
        wait_for(lambda: enrolled(coordinator, 2), 60, "two agents to enroll")
        yield coordinator
    finally:
        for p in procs:
            stop_pid(p)


def finish(coordinator, cid, timeout_s=300):
    return wait_for(lambda: (c := campaign_state(coordinator, cid)).status != "running" and c, timeout_s,
                    f"campaign {cid}")


def cells_of(coordinator, model):
    with coordinator.admin() as admin:
        return [c for c in admin.heatmap().cells if c.model_name == model]


def test_llm_and_loadgen_campaigns_fill_the_heatmap(engine, tmp_path):
    with engine.admin() as admin:
        llm = admin.create_campaign(["llama-s", "llama-m"], {"label.mode": "trusted"}, 1,
                                    Setting(threads=1, scenario_params=LLM), FEW, name="llm").campaign_id
        server = admin.create_campaign(
            ["mlp-s"], {"label.mode": "trusted"}, 1,
            Setting(threads=1, scenario="server", scenario_params={"latency_bound_ms": "50", "search_steps": "3"}),
            RunParams(warmup_iterations=5, min_iterations=662, min_duration_s=0.2), name="server").campaign_id
        offline = admin.create_campaign(["mobilenet-s"], {"label.mode": "trusted"}, 1,
                                        Setting(threads=1, batch=4, scenario="offline"),
                                        RunParams(warmup_iterations=2, min_iterations=1, min_duration_s=0.3),
                                        name="offline").campaign_id
    for cid in (llm, server, offline):
        done = finish(engine, cid)
        assert (done.status, done.counts.failed) == ("done", 0), list(done.failures)
    for model in ("llama-s", "llama-m"):
        (cell,) = cells_of(engine, model)
        assert cell.source == "trusted" and cell.setting.runtime == "llama.cpp"
        assert cell.setting_key.endswith("single-stream[output_tokens=8,prompt_tokens=32]")
        m = cell.metrics
        assert 0 < m["ttft_ms"].value < m["e2e_ms"].value and m["decode_tps"].value > 0
        assert m["itl_p50_ms"].value <= m["itl_p99_ms"].value
    speeds = {model: cells_of(engine, model)[0].metrics["decode_tps"].value for model in ("llama-s", "llama-m")}
    assert speeds["llama-s"] > speeds["llama-m"]
    (cell,) = cells_of(engine, "mlp-s")
    assert cell.setting.scenario == "server" and cell.metrics["server_qps"].value > 0
    assert cell.metrics["latency_p99_ms"].value <= 50
    (cell,) = cells_of(engine, "mobilenet-s")
    assert cell.setting.scenario == "offline" and cell.setting.batch == 4 and cell.metrics["offline_ips"].value > 0
    # the device keeps what it measured, with LoadGen's verdict and the raw latencies
    local = LocalResults(tmp_path / "agent-0" / "results.jsonl")
    by_model = {r["model"]: r for r in local.all()}
    assert by_model["mlp-s"]["outcome"]["driver"] == "loadgen" and by_model["mlp-s"]["outcome"]["verdict"] == "VALID"
    assert by_model["llama-s"]["figures"]["tpot_ms"] > 0
    assert "no energy meter" in by_model["llama-s"]["energy_absent"]
    assert local.raw(by_model["mlp-s"]["task_id"]).size >= 662
    # what reached the coordinator: the verdict, the meter's absence and why, the conditions it ran under
    contexts = stored_contexts(engine)
    assert all(c["outcome"]["verdict"] == "VALID" for c in contexts)
    assert {c["outcome"]["driver"] for c in contexts} == {"loadgen", "native"}
    assert all("no energy meter" in c["energy_absent"] for c in contexts)
    kept_here = [r["conditions"] for r in local.all()]
    assert all(c["conditions"] in kept_here for c in contexts)  # the same state the device recorded


def stored_contexts(coordinator) -> list[dict]:
    import sqlite3
    with sqlite3.connect(coordinator.db_path) as db:
        return [json.loads(row[0]) for row in db.execute("SELECT context_json FROM report WHERE status = 'ok'")]


def test_private_llm_reports_release_ttft_and_tpot_under_noise(engine, tmp_path):
    privacy = PrivacyParams(statistics=("log_p50_ms", "log_ttft_ms", "log_tpot_ms", "log_energy_mj"), epsilon=4)
    with engine.admin() as admin:
        cid = admin.create_campaign(["llama-s"], {"label.mode": "ldp"}, 1, Setting(threads=1, scenario_params=LLM),
                                    FEW, name="llm-ldp", privacy=privacy).campaign_id
    done = finish(engine, cid)
    assert (done.status, done.counts.done) == ("done", 1), list(done.failures)
    with engine.admin() as admin:
        (cell,) = [c for c in admin.heatmap().cells if c.model_name == "llama-s"]
    assert cell.source == "fleet" and cell.privacy.startswith("ldp gaussian ε=4")
    # released: e2e p50, TTFT, TPOT; decode tokens/s follows from TPOT; no meter here, so no energy
    assert {"latency_p50_ms", "ttft_ms", "tpot_ms", "decode_tps"} <= set(cell.metrics)
    assert "energy_mj" not in cell.metrics
    assert cell.metrics["decode_tps"].value == pytest.approx(1000 / cell.metrics["tpot_ms"].value)
    (context,) = stored_contexts(engine)
    assert context["outcome"] == {"driver": "native", "verdict": "VALID", "reason": "", "figures": {}}
    assert context["conditions"] == {}  # the device's state stays on the device in a private report


def test_bad_tasks_fail_with_their_reason_and_the_agent_carries_on(engine, gguf_zoo, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(gguf_zoo["llama-s"].path.read_bytes()[:100_000])  # a header, then truncated
    with engine.admin() as admin:
        # the coordinator refuses a file that is not a GGUF model before anything is stored
        with pytest.raises(InvalidInput, match="not a valid GGUF model"):
            admin.add_model(broken, "broken", b"", "{}", "gguf")
        assert "broken" not in [m.name for m in admin.list_models()]
        # out-of-range scenario parameters and GGUF models in a LoadGen scenario are refused at creation
        with pytest.raises(InvalidInput, match="latency_bound_ms=0 is not a number in"):
            admin.create_campaign(["mlp-s"], {}, 1,
                                  Setting(scenario="server", scenario_params={"latency_bound_ms": "0"}), FEW)
        with pytest.raises(InvalidInput, match="llama-s is an LLM .* not offline"):
            admin.create_campaign(["llama-s"], {}, 1, Setting(scenario="offline"), FEW)
        # a context the model cannot hold fails on the device; the next task still runs
        cid = admin.create_campaign(["llama-s"], {"label.mode": "trusted"}, 1,
                                    Setting(scenario_params={"prompt_tokens": "600", "output_tokens": "8"}), FEW,
                                    name="too-long").campaign_id
        after = admin.create_campaign(["mlp-s"], {"label.mode": "trusted"}, 1, Setting(threads=1), FEW,
                                      name="after").campaign_id
    failed = finish(engine, cid)
    assert failed.counts.failed == 1
    assert any("exceed the model's context of 512" in f for f in failed.failures), list(failed.failures)
    assert finish(engine, after).counts.done == 1


def test_an_ldp_report_with_exact_figures_is_refused_on_the_wire(coordinator, prepared_zoo):
    from edgeatlas.protos import PROTOCOL_VERSION
    from edgeatlas.protos.wire import bearer, open_channel
    from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
    channel = open_channel(coordinator.address, None)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    enrolled_agent = stub.Enroll(agent_pb2.EnrollRequest(
        protocol_version=PROTOCOL_VERSION, enrollment_token=coordinator.enroll_token,
        spec_json=json.dumps({"schema": "edgeatlas.spec/v1", "name": "x", "device_class": "server"})))
    md = bearer(enrolled_agent.credential)
    with coordinator.admin() as admin:
        admin.create_campaign(["mlp-s"], {}, 1, Setting(), FEW)
    task = stub.LeaseTask(agent_pb2.LeaseTaskRequest(protocol_version=PROTOCOL_VERSION, wait_s=5), metadata=md).task
    report = agent_pb2.ReportRequest(
        protocol_version=PROTOCOL_VERSION, report_id="r" * 16, task_id=task.task_id, lease_id=task.lease_id,
        status=agent_pb2.ReportRequest.OK, valid=True, privacy_mode="ldp", privacy=task.privacy,
        setting=task.setting, released={"log_p50_ms": 0.0, "log_p99_ms": 0.1, "log_mean_ms": 0.0},
        figures={"ttft_ms": 3.0})
    report.setting.runtime_version = "1"
    with pytest.raises(grpc.RpcError) as err:
        stub.Report(report, metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must not carry exact stats, figures" in err.value.details()
    report.privacy_mode = "trusted"
    report.ClearField("released")
    report.ClearField("privacy")
    report.stats.p50_ms = report.stats.p90_ms = report.stats.p99_ms = report.stats.mean_ms = 1.0
    report.stats.min_ms, report.stats.max_ms, report.stats.throughput_ips = 1.0, 1.0, 1000.0
    report.stats.iterations, report.stats.duration_s = 10, 0.01
    report.figures["made_up_ms"] = 1.0
    with pytest.raises(grpc.RpcError) as err:
        stub.Report(report, metadata=md)
    assert "metric 'made_up_ms' is not one EdgeAtlas defines" in err.value.details()
    with coordinator.admin() as admin:
        assert admin.campaign(1).counts.done == 0  # nothing stored
    channel.close()
