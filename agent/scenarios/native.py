"""The agent's own single-stream loop, for devices where LoadGen has no build: warm-up, then
≥ min_iterations and ≥ min_duration_s of back-to-back timed calls."""

from __future__ import annotations

import time

import numpy as np

from edgeatlas.agent.scenarios import MAX_QUERIES, ScenarioRun, Workload
from edgeatlas.protos.records import RunParams, ScenarioOutcome


def timed_loop(work: Workload, params: RunParams) -> tuple[np.ndarray, bool]:
    """Latencies in ms of the timed calls, and whether the run met min iterations and duration."""
    infer = work.infer
    clock = time.perf_counter_ns
    samples = np.empty(min(MAX_QUERIES, max(params.min_iterations, 1) * 64), dtype=np.int64)
    start = clock()
    min_end = start + int(params.min_duration_s * 1e9)
    max_end = start + int(params.max_duration_s * 1e9)
    n, min_n = 0, params.min_iterations
    while n < MAX_QUERIES:
        if n == samples.size:
            samples = np.resize(samples, min(MAX_QUERIES, samples.size * 2))
        t0 = clock()
        infer()
        t1 = clock()
        samples[n] = t1 - t0
        n += 1
        if (n >= min_n and t1 >= min_end) or t1 >= max_end:
            break
    met = n >= min_n and (clock() >= min_end or n == MAX_QUERIES)
    return samples[:n] / 1e6, met


def single_stream(work: Workload, params: RunParams, meter=None) -> ScenarioRun:
    for _ in range(params.warmup_iterations):
        work.infer()
    if meter is not None:
        meter.start()
    t0 = time.perf_counter()
    latencies, met = timed_loop(work, params)
    wall = time.perf_counter() - t0
    energy = meter.stop() if meter is not None else None
    return ScenarioRun(latencies_ms=latencies, samples=latencies.size, wall_s=wall, met_rules=met,
                       outcome=ScenarioOutcome("native", "VALID" if met else "INVALID",
                                               "" if met else "minimum queries or duration not met"),
                       energy_j=energy)
