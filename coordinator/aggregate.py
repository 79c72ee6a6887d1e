"""Heat-map folding: each report updates running log-space sums; reads derive estimates from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeatlas.protos.records import LatencyStats

# The metrics a cell keeps, each defined once: name → how it is read from a run's stats.
METRICS: dict[str, str] = {
    "latency_p50_ms": "p50_ms",
    "latency_p90_ms": "p90_ms",
    "latency_p99_ms": "p99_ms",
    "latency_mean_ms": "mean_ms",
    "throughput_ips": "throughput_ips",
}
Z95 = 1.959964


def metric_values(stats: LatencyStats) -> dict[str, float]:
    return {metric: float(getattr(stats, attr)) for metric, attr in METRICS.items()}


@dataclass(frozen=True)
class Estimate:
    """Geometric mean over reports and its 95 % interval (NaN bounds below two reports)."""

    value: float
    low: float
    high: float
    n: int


def fold(n: int, sum_log: float, sumsq_log: float, value: float) -> tuple[int, float, float]:
    """Adds one positive value to the running sums."""
    log = math.log(value)
    return n + 1, sum_log + log, sumsq_log + log * log


def estimate(n: int, sum_log: float, sumsq_log: float) -> Estimate:
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = sum_log / n
    if n < 2:
        return Estimate(math.exp(mean), math.nan, math.nan, n)
    var = max(0.0, (sumsq_log - n * mean * mean) / (n - 1))
    half = Z95 * math.sqrt(var / n)
    return Estimate(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n)
