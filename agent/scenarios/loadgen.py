"""MLPerf LoadGen drives the queries (mlcommons-loadgen): its rules, its schedule, its verdict.

The system under test is one worker thread that runs the samples of each query in order and
completes them; LoadGen's issue callback only enqueues, so under the server scenario queries wait
in line as they would on a real service. LoadGen's detail log (MLLOG JSON lines) gives the verdict,
the percentiles and the early-stopping estimates; the worker's own timestamps are the raw latencies
kept on the device.
"""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgeatlas.agent.scenarios import Recorder, ScenarioRun, Workload
from edgeatlas.agent.scenarios.native import timed_loop
from edgeatlas.protos.records import RunParams, ScenarioOutcome

PERFORMANCE_SAMPLES = 64  # the QSL's size: every sample is the same fixed input
CALIBRATION_S = 0.2


class _Sut:
    """The system under test. Under server, issue_queries only enqueues and one worker thread serves
    the queue; the other scenarios have one query outstanding at a time, so it is served in the
    issue callback itself (no thread hand-off in the timed path)."""

    def __init__(self, work: Workload, threaded: bool):
        import mlperf_loadgen as lg

        self.lg, self.work = lg, work
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.latencies_ns = Recorder()  # per query, issue to completion
        self.service_ns = Recorder()  # per sample, the inference call alone
        self.samples = 0
        self.error: BaseException | None = None
        self.worker = None
        if threaded:
            self.worker = threading.Thread(target=self._work, name="loadgen-sut", daemon=True)
            self.worker.start()
        self.handle = lg.ConstructSUT(self._enqueue if threaded else self._serve_now, lambda: None)

    def _enqueue(self, query_samples) -> None:
        self.queue.put((time.perf_counter_ns(), query_samples))

    def _serve_now(self, query_samples) -> None:
        self._serve(time.perf_counter_ns(), query_samples)

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            self._serve(*item)

    def _serve(self, issued: int, samples) -> None:
        lg, infer = self.lg, self.work.infer
        responses = []
        for sample in samples:
            if self.error is None:
                t0 = time.perf_counter_ns()
                try:
                    infer()
                except BaseException as exc:  # completes the query anyway so LoadGen can finish
                    self.error = exc
                self.service_ns.add(time.perf_counter_ns() - t0)
            responses.append(lg.QuerySampleResponse(sample.id, 0, 0))
        self.samples += len(samples)
        self.latencies_ns.add(time.perf_counter_ns() - issued)
        lg.QuerySamplesComplete(responses)

    def reset(self) -> None:
        self.latencies_ns.clear()
        self.service_ns.clear()
        self.samples = 0

    def close(self) -> None:
        if self.worker is not None:
            self.queue.put(None)
            self.worker.join()
        self.lg.DestroySUT(self.handle)


def _detail(outdir: Path) -> dict:
    """LoadGen's detail log as key → value (its MLLOG JSON lines)."""
    values = {}
    for line in (outdir / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG "):
            try:
                entry = json.loads(line[len(":::MLLOG "):])
            except json.JSONDecodeError:
                continue
            values[entry.get("key")] = entry.get("value")
    return values


def _settings(scenario: str, values: dict[str, float], params: RunParams, service_ms: float, qps: float | None):
    import mlperf_loadgen as lg

    s = lg.TestSettings()
    s.mode = lg.TestMode.PerformanceOnly
    s.min_query_count = params.min_iterations
    s.min_duration_ms = int(params.min_duration_s * 1000)
    s.max_duration_ms = int(params.max_duration_s * 1000)
    expected_ns = max(1, int(service_ms * 1e6))
    if scenario == "single-stream":
        s.scenario = lg.TestScenario.SingleStream
        s.single_stream_expected_latency_ns = expected_ns
    elif scenario == "multi-stream":
        s.scenario = lg.TestScenario.MultiStream
        s.multi_stream_samples_per_query = int(values["samples_per_query"])
        s.multi_stream_expected_latency_ns = expected_ns * int(values["samples_per_query"])
    elif scenario == "server":
        s.scenario = lg.TestScenario.Server
        s.server_target_qps = float(qps)
        s.server_target_latency_ns = int(values["latency_bound_ms"] * 1e6)
    else:
        s.scenario = lg.TestScenario.Offline
        # LoadGen sizes its one query from the expected rate: twice the calibrated rate, so that a run
        # faster than its calibration (warm caches, a freed core) still fills the minimum duration
        s.offline_expected_qps = max(1.0, 2 * 1000.0 / service_ms)
        s.min_query_count = 1
    return s


def _one(sut: _Sut, qsl, scenario: str, values: dict[str, float], params: RunParams, service_ms: float,
         qps: float | None, meter) -> tuple[dict, ScenarioRun]:
    import mlperf_loadgen as lg

    sut.reset()
    with tempfile.TemporaryDirectory(prefix="edgeatlas-loadgen-") as tmp:
        log = lg.LogSettings()
        log.log_output.outdir = tmp
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        if meter is not None:
            meter.start()
        t0 = time.perf_counter()
        lg.StartTestWithLogSettings(sut.handle, qsl, _settings(scenario, values, params, service_ms, qps), log)
        wall = time.perf_counter() - t0
        energy = meter.stop() if meter is not None else None
        detail = _detail(Path(tmp))
    if sut.error is not None:
        raise sut.error
    latencies = sut.latencies_ns.values() / 1e6
    service = sut.service_ns.values() / 1e6
    ns = 1e-6  # LoadGen logs nanoseconds
    verdict = str(detail.get("result_validity", "INVALID"))
    reasons = [str(detail.get("result_invalid_reason") or "").strip()]
    for key, what in (("result_min_duration_met", "min duration not met"),
                      ("result_min_queries_met", "min queries not met"),
                      ("early_stopping_met", "early stopping not satisfied"),
                      ("result_perf_constraints_met", "latency bound not met")):
        if detail.get(key) is False:
            reasons.append(what)
    figures: dict[str, float] = {}
    summary: dict[str, float] = {}
    throughput = None
    per_query = "per_query_" if scenario == "multi-stream" else ""
    if scenario != "offline":
        for name, key in (("p50_ms", f"result_50.00_percentile_{per_query}latency_ns"),
                          ("p90_ms", f"result_90.00_percentile_{per_query}latency_ns"),
                          ("p99_ms", f"result_99.00_percentile_{per_query}latency_ns"),
                          ("mean_ms", f"result_mean_{'query_' if per_query else ''}latency_ns"),
                          ("min_ms", f"result_min_{'query_' if per_query else ''}latency_ns"),
                          ("max_ms", f"result_max_{'query_' if per_query else ''}latency_ns")):
            if isinstance(detail.get(key), (int, float)):
                summary[name] = detail[key] * ns
    if scenario == "single-stream" and detail.get("early_stopping_latency_ss"):
        figures["early_stopping_p90_ms"] = detail["early_stopping_latency_ss"] * ns
    if scenario == "multi-stream" and detail.get("early_stopping_latency_ms"):
        figures["early_stopping_p99_ms"] = detail["early_stopping_latency_ms"] * ns
    if scenario == "server":
        figures["server_qps"] = float(detail.get("result_scheduled_samples_per_sec") or qps)
        throughput = float(detail.get("result_completed_samples_per_sec") or 0) * sut.work.batch or None
    if scenario == "offline":
        latencies = service  # one query of every sample: the calls' own times are what varies
        throughput = float(detail.get("result_samples_per_second") or 0) * sut.work.batch or None
        if throughput:
            figures["offline_ips"] = throughput
    run = ScenarioRun(latencies_ms=latencies, samples=sut.samples, wall_s=wall, met_rules=verdict == "VALID",
                      outcome=ScenarioOutcome("loadgen", verdict, "; ".join(r for r in reasons if r), figures),
                      summary_ms=summary, energy_j=energy, throughput_ips=throughput)
    return detail, run


def run(scenario: str, values: dict[str, float], work: Workload, params: RunParams, meter=None) -> ScenarioRun:
    """One LoadGen test; for server without a target rate, a bisection for the highest rate that meets
    the p99 bound, the best passing run reported (each run obeys the task's minimum queries and duration)."""
    import mlperf_loadgen as lg

    for _ in range(params.warmup_iterations):
        work.infer()
    calibration = timed_loop(work, RunParams(min_iterations=5, min_duration_s=CALIBRATION_S,
                                             max_duration_s=10 * CALIBRATION_S + 1))[0]
    service_ms = float(np.median(calibration))
    sut = _Sut(work, threaded=scenario == "server")
    qsl = lg.ConstructQSL(PERFORMANCE_SAMPLES, PERFORMANCE_SAMPLES, lambda s: None, lambda s: None)
    try:
        if scenario != "server" or "target_qps" in values:
            return _one(sut, qsl, scenario, values, params, service_ms, values.get("target_qps"), meter)[1]
        return _search(sut, qsl, values, params, service_ms, meter)
    finally:
        lg.DestroyQSL(qsl)
        sut.close()


def _search(sut, qsl, values, params, service_ms, meter) -> ScenarioRun:
    """Starts at a quarter of one worker's bare capacity (LoadGen's own overhead and a busy machine
    take a share); doubles while the bound holds, bisects once a rate has failed."""
    capacity = 1000.0 / max(service_ms, 1e-6)
    passed: float | None = None
    failed: float | None = None
    best: ScenarioRun | None = None
    lowest_fail: ScenarioRun | None = None
    qps = capacity / 4
    for _ in range(int(values["search_steps"])):
        detail, run = _one(sut, qsl, "server", values, params, service_ms, qps, meter)
        if detail.get("result_perf_constraints_met") is True:
            passed, best = qps, run
            qps = (qps + failed) / 2 if failed else min(2 * qps, capacity)
            if passed >= capacity:
                break  # the bound holds at the worker's bare capacity: nothing higher is sustainable
        else:
            failed, lowest_fail = qps, run
            qps = (passed + qps) / 2 if passed else qps / 4
    return best or lowest_fail
