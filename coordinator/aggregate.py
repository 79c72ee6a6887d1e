"""Heat-map folding: each report updates running log-space sums; reads derive estimates from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeatlas.protos.metrics import METRICS as CATALOGUE
from edgeatlas.protos.metrics import RELEASED, derived_log
from edgeatlas.protos.records import LatencyStats

DERIVED = {name: m.derived_from for name, m in CATALOGUE.items() if m.derived_from}  # rate ← its latency

# The metrics a cell keeps from a run's latency stats (name → LatencyStats attribute); beside them a cell
# keeps every figure a report carries. Both from the catalogue, protos/metrics.py.
METRICS: dict[str, str] = {name: m.stats for name, m in CATALOGUE.items() if m.stats}
Z95 = 1.959964


def metric_values(stats: LatencyStats, figures: dict[str, float] | None = None) -> dict[str, float]:
    out = {metric: float(getattr(stats, attr)) for metric, attr in METRICS.items()}
    out.update(figures or {})
    return out


def released_logs(released: dict[str, float], batch: int) -> dict[str, tuple[float, str]]:
    """Heat-map metric → (natural log, the statistic whose noise it carries) from a noised release.
    Throughput follows from the mean latency and decode tokens/s from TPOT: post-processing, no budget."""
    logs = {RELEASED[name]: (value, name) for name, value in released.items()}
    for name, source in DERIVED.items():
        if source in logs:
            value, stat = logs[source]
            logs[name] = (derived_log(name, value, batch), stat)
    return logs


@dataclass(frozen=True)
class Estimate:
    """Geometric mean over reports and its 95 % interval (NaN bounds below two reports)."""

    value: float
    low: float
    high: float
    n: int


def fold(n: int, sum_log: float, sumsq_log: float, value: float) -> tuple[int, float, float]:
    """Adds one positive value to the running sums."""
    return fold_log(n, sum_log, sumsq_log, math.log(value))


def fold_log(n: int, sum_log: float, sumsq_log: float, log: float) -> tuple[int, float, float]:
    return n + 1, sum_log + log, sumsq_log + log * log


def estimate(n: int, sum_log: float, sumsq_log: float, noise_var_sum: float = 0.0) -> Estimate:
    """Unbiased in log space: the local noise has mean zero. The interval's variance is the larger of
    the reports' spread and the noise's known variance, so it holds from the first report on."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = sum_log / n
    noise_var = noise_var_sum / n
    if n < 2 and noise_var == 0:
        return Estimate(_exp(mean), math.nan, math.nan, n)
    spread = max(0.0, (sumsq_log - n * mean * mean) / (n - 1)) if n > 1 else 0.0
    half = Z95 * math.sqrt(max(spread, noise_var) / n)
    return Estimate(_exp(mean), _exp(mean - half), _exp(mean + half), n)


MAX_DEVICES_NEEDED = 1_000_000_000  # "more than a billion" reads the same as any larger count, and fits the wire
MIN_TARGET_PRECISION = 1e-3


def devices_needed(n: int, sum_log: float, sumsq_log: float, noise_var_sum: float, n_devices: int,
                   target_precision: float, public_only: bool = False) -> int:
    """More devices for the 95 % interval of the geometric mean to reach ±target_precision, at most
    MAX_DEVICES_NEEDED. With public_only (a suppressed cell) only the contracts' noise is used, never the
    reports' values, so the answer tells nothing of what the cell's devices released."""
    if n == 0 or target_precision <= 0:
        return 0
    noise_var = noise_var_sum / n
    between = 0.0
    if not public_only:
        mean = sum_log / n
        spread = max(0.0, (sumsq_log - n * mean * mean) / (n - 1)) if n > 1 else noise_var
        between = max(0.0, spread - noise_var)  # what devices differ by, once the noise is taken out
    needed = Z95 ** 2 * (noise_var + between) / math.log1p(max(target_precision, MIN_TARGET_PRECISION)) ** 2
    if not math.isfinite(needed) or needed >= MAX_DEVICES_NEEDED:
        return MAX_DEVICES_NEEDED
    return max(0, math.ceil(needed) - n_devices)


def _exp(x: float) -> float:
    return math.exp(min(x, 700.0))
