"""Turns a run's statistics into a private release: clip in log space, grid, add exact integer noise."""

from __future__ import annotations

import math
from fractions import Fraction

from edgeatlas.agent.privacy.noise import discrete_gaussian, discrete_laplace, randomized_round, round_up
from edgeatlas.protos.privacy import STATISTICS, PrivacyParams, Release
from edgeatlas.protos.records import LatencyStats


def to_grid(log_value: float, params: PrivacyParams) -> int:
    """Clipped to the public bounds, then unbiasedly rounded onto 0..steps."""
    lo, hi = params.log_bounds
    clipped = min(max(log_value, lo), hi)
    return randomized_round(Fraction(clipped - lo) / Fraction(hi - lo) * params.steps)


def noise(params: PrivacyParams) -> int:
    scale = params.noise_scale()
    if params.mechanism == "gaussian":
        return discrete_gaussian(round_up(scale * scale))
    return discrete_laplace(round_up(scale))


def release_value(log_value: float, params: PrivacyParams) -> float:
    """One statistic's released value, in natural log of milliseconds."""
    lo, _ = params.log_bounds
    return lo + (to_grid(log_value, params) + noise(params)) * params.step_log


def release(stats: LatencyStats, params: PrivacyParams) -> Release:
    params.check()
    values = {name: release_value(math.log(getattr(stats, STATISTICS[name])), params)
              for name in params.statistics}
    return Release(params=params, values=values)
