"""agent/report.py: what leaves a device, by privacy mode."""

import math

import numpy as np

from edgeatlas.agent.report import completed, exact_record, new_report, refused
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import EnergyStats, Fidelity, LatencyStats, RunResult, ScenarioOutcome, Setting
from edgeatlas.v1 import agent_pb2

TASK = agent_pb2.Task(task_id=7, lease_id="lease-7")


def result(valid: bool = True) -> RunResult:
    stats = LatencyStats.from_values(np.array([2.0, 2.5, 3.0, 4.0] * 25))
    return RunResult(setting=Setting(target="cpu", runtime="onnxruntime", batch=1), stats=stats,
                     fidelity=Fidelity(checked=True, passed=valid, max_abs_error=0.125, tolerance=0.01),
                     valid=valid, invalid_reason="" if valid else "outputs differ by 0.125 (tolerance 0.01)",
                     invalid_kind="" if valid else "fidelity",
                     outcome=ScenarioOutcome(driver="native", verdict="VALID", reason="early stopping met"),
                     energy=EnergyStats(meter="rapl", energy_j=1.5, duration_s=1.0, inferences=100),
                     started_ms=1234)


def test_a_private_report_carries_the_noised_contract_statistics_and_no_exact_value():
    params = PrivacyParams()
    report = completed(new_report(TASK, trusted=False), result(valid=False), params, {"temp_c": 55.0})
    assert report.privacy_mode == "ldp" and report.status == agent_pb2.ReportRequest.OK
    assert (report.task_id, report.lease_id, len(report.report_id)) == (7, "lease-7", 32)
    assert set(report.released) == set(params.statistics)
    assert all(math.isfinite(v) for v in report.released.values())
    assert not report.HasField("stats") and not report.figures and not report.HasField("conditions")
    assert (report.fidelity.checked, report.fidelity.passed, report.fidelity.max_abs_error) == (True, False, 0.0)
    assert report.invalid_reason == "fidelity"  # the category, not the error's size
    assert report.outcome.reason == "" and report.energy_meter == "rapl"


def test_a_trusted_report_carries_the_exact_result_and_conditions():
    report = completed(new_report(TASK, trusted=True), result(), None, {"temp_c": 55.0})
    assert report.privacy_mode == "trusted" and not report.released and not report.HasField("privacy")
    assert report.stats.p50_ms == result().stats.p50_ms and report.figures["energy_mj"] == 15.0
    assert report.conditions.temp_c == 55.0 and report.outcome.reason == "early stopping met"
    assert report.fidelity.max_abs_error == 0.125 and report.started_ms == 1234


def test_a_task_that_did_not_run_says_why():
    declined = refused(new_report(TASK, trusted=False), declined=True, reason="ε budget spent")
    failed = refused(new_report(TASK, trusted=False), declined=False, reason="out of memory")
    assert declined.status == agent_pb2.ReportRequest.DECLINED and declined.failure_reason == "ε budget spent"
    assert failed.status == agent_pb2.ReportRequest.FAILED and not failed.released


def test_the_owners_record_is_exact():
    record = exact_record(result(valid=False))
    assert record["stats"]["p50_ms"] == result().stats.p50_ms and record["figures"]["energy_mj"] == 15.0
    assert record["invalid_reason"].startswith("outputs differ") and record["fidelity"]["max_abs_error"] == 0.125
