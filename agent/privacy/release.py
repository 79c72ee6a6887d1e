"""Turns a run's statistics into a private release: clip in log space, grid, add exact integer noise."""

from __future__ import annotations

import math
from fractions import Fraction

from edgeatlas.protos.noise import discrete_gaussian, discrete_laplace, randomized_round
from edgeatlas.protos.privacy import STATISTICS, PrivacyParams, Release, round_up
from edgeatlas.protos.records import LatencyStats


def to_grid(log_value: float, params: PrivacyParams, statistic: str) -> int:
    """Clipped to the statistic's public bounds, then unbiasedly rounded onto 0..steps."""
    lo, hi = params.log_bounds(statistic)
    clipped = min(max(log_value, lo), hi)
    return randomized_round(Fraction(clipped - lo) / Fraction(hi - lo) * params.steps)


def noise(params: PrivacyParams) -> int:
    scale = params.noise_scale()
    if params.mechanism == "gaussian":
        return discrete_gaussian(round_up(scale * scale))
    return discrete_laplace(round_up(scale))


def release_value(log_value: float, params: PrivacyParams, statistic: str) -> float:
    """One statistic's released value, as the natural log of its unit."""
    lo, _ = params.log_bounds(statistic)
    return lo + (to_grid(log_value, params, statistic) + noise(params)) * params.step_log(statistic)


def statistic_logs(stats: LatencyStats, params: PrivacyParams, figures: dict[str, float] | None = None
                   ) -> dict[str, float]:
    """The natural log of each contract statistic the run has (exact: for a release or a secure round).
    An LLM figure or an energy the run lacks is left out."""
    figures = figures or {}
    out = {}
    for name in params.statistics:
        source = STATISTICS[name].source
        value = getattr(stats, source) if hasattr(stats, source) else figures.get(source)
        if value is not None and value > 0:
            out[name] = math.log(value)
    return out


def release(stats: LatencyStats, params: PrivacyParams, figures: dict[str, float] | None = None) -> Release:
    """Each contract statistic the run has, noised on its own."""
    params.check()
    return Release(params=params, values={name: release_value(log, params, name)
                                          for name, log in statistic_logs(stats, params, figures).items()})
