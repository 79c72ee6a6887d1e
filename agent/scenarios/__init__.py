"""Scenarios: how queries reach a loaded model. Runners load models; scenarios drive them; meters measure.

A Workload is what a runner hands a scenario: `infer()` runs one sample (one call at the task's batch).
Every scenario returns a ScenarioRun: per-query latencies (kept raw on the device), LoadGen's summary
where LoadGen drove it, and the energy of the timed part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import RunParams, ScenarioOutcome

MAX_QUERIES = 1_000_000  # bounds the raw samples kept in memory


class Recorder:
    """Integer samples (ns) in a growing array, at most MAX_QUERIES of them: later ones are dropped."""

    def __init__(self) -> None:
        self.buf = np.empty(1024, np.int64)
        self.n = 0

    def add(self, value: int) -> None:
        if self.n >= MAX_QUERIES:
            return
        if self.n == self.buf.size:
            self.buf = np.resize(self.buf, min(MAX_QUERIES, 2 * self.buf.size))
        self.buf[self.n] = value
        self.n += 1

    def values(self) -> np.ndarray:
        return self.buf[:self.n]

    def clear(self) -> None:
        self.n = 0


@dataclass(frozen=True)
class Workload:
    infer: Callable[[], object]  # one sample: one inference call at `batch`
    batch: int


@dataclass
class ScenarioRun:
    """latencies_ms: [queries]; summary: LoadGen's figures (ms) that override the raw percentiles."""

    latencies_ms: np.ndarray
    samples: int  # samples completed in the timed part
    wall_s: float  # duration of the timed part
    outcome: ScenarioOutcome
    met_rules: bool  # minimum queries and duration reached (LoadGen's or the native loop's)
    summary_ms: dict[str, float] = field(default_factory=dict)  # p50_ms, p90_ms, p99_ms, mean_ms, ...
    energy_j: float | None = None
    throughput_ips: float | None = None  # where it is not batch × queries / Σ latency (server, offline)


def loadgen_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("mlperf_loadgen") is not None


def run_scenario(scenario: str, values: dict[str, float], work: Workload, params: RunParams,
                 meter=None) -> ScenarioRun:
    """Runs the scenario under LoadGen where it is installed; single-stream falls back to the native loop."""
    if loadgen_available():
        from edgeatlas.agent.scenarios.loadgen import run as run_loadgen
        return run_loadgen(scenario, values, work, params, meter)
    if scenario != "single-stream":
        raise InvalidInput(f"scenario {scenario} needs MLPerf LoadGen (mlcommons-loadgen), "
                           "which is not installed on this device")
    from edgeatlas.agent.scenarios.native import single_stream
    return single_stream(work, params, meter)
