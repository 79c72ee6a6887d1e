"""The contract the benchmark engine adds: optional private statistics per unit, figures, conditions."""

import math

import numpy as np
import pytest

from edgeatlas.agent.privacy.release import release
from edgeatlas.agent.results import MAX_RAW_VALUES, LocalResults
from edgeatlas.coordinator.store import check_released
from edgeatlas.protos import convert
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.metrics import check_figures
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import Fidelity, LatencyStats, RunResult, ScenarioOutcome, Setting

CONTRACT = PrivacyParams(statistics=("log_p50_ms", "log_ttft_ms", "log_energy_mj"), epsilon=2)
STATS = LatencyStats.from_values(np.array([10.0, 11.0, 12.0]))


def test_a_release_leaves_out_what_the_run_does_not_have():
    onnx = release(STATS, CONTRACT, {}).values
    assert set(onnx) == {"log_p50_ms"}  # no LLM figure, no meter
    llm = release(STATS, CONTRACT, {"ttft_ms": 3.0, "energy_mj": 50.0}).values
    assert set(llm) == {"log_p50_ms", "log_ttft_ms", "log_energy_mj"}
    check_released(onnx, CONTRACT)
    check_released(llm, CONTRACT)


def test_the_coordinator_refuses_a_release_without_its_latency_or_with_strangers():
    with pytest.raises(InvalidInput, match="are not the contract's"):
        check_released({"log_ttft_ms": 1.0}, CONTRACT)
    with pytest.raises(InvalidInput, match="are not the contract's"):
        check_released({"log_p50_ms": 1.0, "log_p99_ms": 1.0}, CONTRACT)
    with pytest.raises(InvalidInput, match="impossible under the contract"):
        check_released({"log_p50_ms": 1e6}, CONTRACT)


def test_energy_has_its_own_public_bounds():
    lo_ms, hi_ms = CONTRACT.log_bounds("log_p50_ms")
    lo_mj, hi_mj = CONTRACT.log_bounds("log_energy_mj")
    assert (math.exp(lo_ms), math.exp(hi_ms)) == pytest.approx((0.01, 10_000))
    assert (math.exp(lo_mj), math.exp(hi_mj)) == pytest.approx((1e-3, 1e7))
    # the same noise on the grid is wider in log units where the range is wider
    assert CONTRACT.noise_variance_log("log_energy_mj") > CONTRACT.noise_variance_log("log_p50_ms")


def test_figures_outside_their_range_or_unknown_are_refused():
    check_figures({"ttft_ms": 5.0, "decode_tps": 300.0, "power_w": 12.5})
    with pytest.raises(InvalidInput, match="decode_tps = -1"):
        check_figures({"decode_tps": -1.0})
    with pytest.raises(InvalidInput, match="power_w = nan"):
        check_figures({"power_w": float("nan")})
    with pytest.raises(InvalidInput, match="'tokens_ms' is not one"):
        check_figures({"tokens_ms": 1.0})


def test_conditions_keep_unknowns_unknown_across_the_wire():
    conditions = {"on_battery": False, "battery_percent": None, "temp_c": 48.5, "busy_percent": None,
                  "clock_percent": 97.0}
    assert convert.conditions_from_pb(convert.conditions_to_pb(conditions)) == conditions


def test_raw_latencies_stay_bounded_on_the_device(tmp_path):
    results = LocalResults(tmp_path / "results.jsonl")
    raw = np.arange(MAX_RAW_VALUES * 3, dtype=np.float64)
    result = RunResult(Setting(), STATS, Fidelity(), True, outcome=ScenarioOutcome("loadgen", "VALID"), raw_ms=raw)
    results.add("m", 7, result)
    kept = results.raw(7)
    assert kept.size == MAX_RAW_VALUES and kept[0] == 0 and kept[-1] == raw[-1]  # evenly thinned, ends kept
    assert results.all()[0]["outcome"]["driver"] == "loadgen"
