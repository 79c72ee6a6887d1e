"""MLPerf LoadGen drives ONNX Runtime through the four scenarios; its verdict and figures reach the result."""

import numpy as np
import pytest

from edgeatlas.agent import scenarios as agent_scenarios
from edgeatlas.agent.runners import check_memory, make_runner
from edgeatlas.protos import scenarios
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import RunParams, Setting

SHORT = RunParams(warmup_iterations=2, min_iterations=64, min_duration_s=0.2, max_duration_s=30)


def run(zoo_dir, scenario, params=SHORT, **scenario_params):
    setting = Setting(threads=1, scenario=scenario, scenario_params={k: str(v) for k, v in scenario_params.items()})
    return make_runner(str(zoo_dir / "mlp-s.onnx"), setting, str(zoo_dir / "mlp-s.ref.npz")).run(params)


def test_single_stream_reports_loadgens_verdict_and_early_stopping_estimate(prepared_zoo, zoo_dir):
    result = run(zoo_dir, "single-stream")
    assert (result.outcome.driver, result.outcome.verdict) == ("loadgen", "VALID"), result.outcome.reason
    assert result.valid and result.fidelity.passed
    s = result.stats
    assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    # LoadGen's early-stopping p90 is an upper estimate of the p90 it measured
    assert result.outcome.figures["early_stopping_p90_ms"] >= s.p90_ms * 0.99
    assert result.raw_ms is not None and result.raw_ms.size == s.iterations >= 64


def test_multi_stream_queries_carry_several_samples(prepared_zoo, zoo_dir):
    result = run(zoo_dir, "multi-stream", RunParams(2, 662, 0.1, 60), samples_per_query=4)
    assert result.outcome.driver == "loadgen"
    assert result.outcome.verdict == "VALID", result.outcome.reason
    # a query of 4 samples takes about 4 single calls; throughput counts samples
    assert result.stats.throughput_ips == pytest.approx(4 * 1000 / result.stats.mean_ms, rel=0.3)
    assert "early_stopping_p99_ms" in result.outcome.figures


def test_few_queries_make_loadgen_say_invalid(prepared_zoo, zoo_dir):
    result = run(zoo_dir, "multi-stream", RunParams(2, 50, 0.001, 60), samples_per_query=2)
    assert result.outcome.verdict == "INVALID" and not result.valid
    assert "early stopping" in result.invalid_reason


def test_server_at_a_target_rate_meets_a_loose_bound(prepared_zoo, zoo_dir):
    result = run(zoo_dir, "server", RunParams(2, 662, 0.5, 60), target_qps=400, latency_bound_ms=1000)
    assert result.outcome.verdict == "VALID", result.outcome.reason
    assert result.outcome.figures["server_qps"] == pytest.approx(400, rel=0.25)
    assert result.stats.throughput_ips == pytest.approx(400, rel=0.25)


def test_server_search_finds_a_rate_that_meets_the_bound(prepared_zoo, zoo_dir):
    offline = run(zoo_dir, "offline", RunParams(2, 1, 0.3, 60))
    capacity = offline.outcome.figures["offline_ips"]
    bound_ms = max(20.0, 200 * 1000 / capacity)  # loose: a loaded CI machine's scheduling tail stays under it
    result = run(zoo_dir, "server", RunParams(2, 200, 0.3, 60), latency_bound_ms=bound_ms, search_steps=4)
    qps = result.outcome.figures["server_qps"]
    assert 0 < qps <= 1.3 * capacity  # never above one worker's capacity
    assert result.stats.p99_ms <= bound_ms


def test_offline_throughput_counts_batched_samples(prepared_zoo, zoo_dir):
    setting = Setting(threads=1, batch=4, scenario="offline")
    result = make_runner(str(zoo_dir / "mlp-s.onnx"), setting).run(RunParams(2, 1, 0.3, 60))
    assert result.outcome.verdict == "VALID", result.outcome.reason
    calls_per_s = 1000 / result.stats.mean_ms
    assert result.outcome.figures["offline_ips"] == pytest.approx(4 * calls_per_s, rel=0.3)


def test_without_loadgen_single_stream_runs_natively_and_others_fail(prepared_zoo, zoo_dir, monkeypatch):
    monkeypatch.setattr(agent_scenarios, "loadgen_available", lambda: False)
    result = run(zoo_dir, "single-stream")
    assert (result.outcome.driver, result.outcome.verdict) == ("native", "VALID") and result.valid
    with pytest.raises(InvalidInput, match="needs MLPerf LoadGen"):
        run(zoo_dir, "server", target_qps=10)


@pytest.mark.parametrize("scenario,params,message", [
    ("closed-loop", {}, "not one of"),
    ("server", {"target_qps": "-1"}, "target_qps=-1 is not a number in"),
    ("multi-stream", {"samples_per_query": "2.5"}, "is not an integer"),
    ("multi-stream", {"target_qps": "3"}, "has no parameter 'target_qps'"),
    ("offline", {"x": "1"}, "takes none"),
    ("single-stream", {"prompt_tokens": "lots"}, "is not a number"),
])
def test_bad_scenario_parameters_fail_before_the_model_loads(zoo_dir, scenario, params, message):
    with pytest.raises(InvalidInput, match=message):
        scenarios.check(scenario, params)
    with pytest.raises(InvalidInput, match=message):
        make_runner(str(zoo_dir / "mlp-s.onnx"), Setting(scenario=scenario, scenario_params=params))


def test_a_model_too_large_for_free_memory_is_refused(zoo_dir):
    with pytest.raises(InvalidInput, match="needs about .* GiB of memory; this device has 0.1 GiB"):
        check_memory(str(zoo_dir / "mlp-l.onnx"), available_bytes=100 << 20)
    check_memory(str(zoo_dir / "mlp-l.onnx"), available_bytes=8 << 30)


def test_setting_key_carries_scenario_parameters():
    plain = Setting(scenario="server").key()
    bound = Setting(scenario="server", scenario_params={"latency_bound_ms": "10"}).key()
    assert plain.endswith("/server") and bound.endswith("/server[latency_bound_ms=10]")
    assert np.unique([plain, bound]).size == 2
