"""Local differential privacy, the shared contract: what a report may release and how much noise it needs.

A report releases a few statistics in log space. Each is clipped to public bounds [lo, hi], mapped to
an integer grid of 2^bits steps (randomised rounding), and noised with integer-valued noise:
discrete Laplace (pure ε) or discrete Gaussian (ρ-zCDP, converted to (ε, δ)); Canonne, Kamath and
Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020). Neighbouring inputs are any
two devices, so each statistic's sensitivity is its whole grid (2^bits). The agent adds the noise;
the coordinator recomputes the calibration here to check a report and to know its noise variance.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.metrics import METRICS

@dataclass(frozen=True)
class Statistic:
    """A releasable statistic: where its value comes from, its unit, and fixed public bounds unless in ms."""

    source: str  # a LatencyStats attribute, or a figure of protos/metrics.py
    unit: str = "ms"  # ms: the campaign's bounds_ms; any other: `bounds`
    bounds: tuple[float, float] | None = None
    always: bool = True  # False: released only where the run has it (an LLM figure, a meter's energy)


# statistic → what it releases, from the metric catalogue. Throughput is derived from the released mean
# latency and decode tokens/s from TPOT (post-processing), so they cost no budget.
STATISTICS: dict[str, Statistic] = {
    m.released_as: Statistic(m.stats or name, m.unit, m.release_bounds, m.always)
    for name, m in METRICS.items() if m.released_as}
MECHANISMS = ("gaussian", "laplace")
DEFAULT_STATISTICS = ("log_p50_ms", "log_p99_ms", "log_mean_ms")
DEFAULT_LATENCY_BOUNDS_MS = (0.01, 10_000.0)
MAX_EPSILON_PER_REPORT = 16.0
# An honest release falls outside its contract's window (see PrivacyParams.window) this rarely, or less.
FALSE_REFUSAL = 1e-9
ORDERS = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0,
          64.0, 128.0, 256.0, 512.0)


PURE_MECHANISMS = ("laplace",)  # pure ε-DP: their contracts carry δ = 0
DEFAULT_DELTA = 1e-6
# ldp: each report noised alone on its device. secure: the devices of a cohort sum their values under
# secure aggregation, each adding a share of the noise (protos/secure.py); the ε is per cell either way.
MODES = ("ldp", "secure")


def default_mode(adaptive: bool, mechanism: str = "gaussian") -> str:
    """What a person gets unless they choose: secure, but ldp for an adaptive campaign (it picks its next
    measurements from each one as it arrives and cannot wait for a cohort's round) and for laplace noise
    (secure aggregation adds discrete Gaussian shares)."""
    return "ldp" if adaptive or mechanism != "gaussian" else "secure"
DEFAULT_COHORT_MIN = 10
MAX_COHORT_MIN = 5_000


def round_up(x: float, max_denominator: int = 1_000_000) -> Fraction:
    """A simple fraction ≥ x: noise parameters may grow, never shrink, when made rational."""
    f = Fraction(x).limit_denominator(max_denominator)
    return f if f >= x else f + Fraction(1, f.denominator)


def gaussian_tail(sigma: float, rate: float = FALSE_REFUSAL) -> float:
    """t with P(|X| ≥ t) ≤ rate for a discrete Gaussian of σ (σ²-subgaussian, CKS 2020, Prop. 25:
    P(|X| ≥ t) ≤ 2·exp(−t²/2σ²)), or for a sum of such noises whose variances add to σ²."""
    return sigma * math.sqrt(2 * math.log(2 / rate))


def delta_for(mechanism: str, asked: float = 0.0) -> float:
    """The δ a contract of this mechanism carries: 0 for a pure one, else what was asked (0: the default)."""
    return 0.0 if mechanism in PURE_MECHANISMS else (asked or DEFAULT_DELTA)


@dataclass(frozen=True)
class PrivacyParams:
    """A campaign's privacy contract: one mechanism, one ε (and δ) per report, public log-space bounds."""

    mechanism: str = "gaussian"
    epsilon: float = 1.0
    delta: float = DEFAULT_DELTA  # 0 for a pure mechanism (laplace)
    statistics: tuple[str, ...] = DEFAULT_STATISTICS
    bounds_ms: tuple[float, float] = DEFAULT_LATENCY_BOUNDS_MS
    bits: int = 10  # grid of 2^bits steps across each statistic's range
    mode: str = "ldp"
    cohort_min: int = DEFAULT_COHORT_MIN  # secure: devices of one class a round waits for

    def check(self) -> "PrivacyParams":
        if self.mode not in MODES:
            raise InvalidInput(f"privacy mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.mode == "secure" and self.mechanism != "gaussian":
            raise InvalidInput("secure aggregation adds discrete Gaussian shares: its mechanism must be gaussian")
        if not 2 <= self.cohort_min <= MAX_COHORT_MIN:
            raise InvalidInput(f"cohort_min {self.cohort_min} is not in 2..{MAX_COHORT_MIN}")
        if self.mechanism not in MECHANISMS:
            raise InvalidInput(f"privacy mechanism {self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
        if not (math.isfinite(self.epsilon) and 0 < self.epsilon <= MAX_EPSILON_PER_REPORT):
            raise InvalidInput(f"privacy epsilon {self.epsilon!r} per report is not in (0, {MAX_EPSILON_PER_REPORT}]")
        if self.mechanism == "gaussian" and not 0 < self.delta < 1e-3:
            raise InvalidInput(f"privacy delta {self.delta!r} must be in (0, 1e-3) for the gaussian mechanism")
        if self.mechanism in PURE_MECHANISMS and self.delta != 0:
            raise InvalidInput("the laplace mechanism is pure ε-DP: delta must be 0")
        if not self.statistics or len(set(self.statistics)) != len(self.statistics) or \
                any(s not in STATISTICS for s in self.statistics):
            raise InvalidInput(f"privacy statistics must be distinct names from {', '.join(STATISTICS)}")
        lo, hi = self.bounds_ms
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
            raise InvalidInput(f"privacy bounds {self.bounds_ms!r} must satisfy 0 < lo < hi (milliseconds)")
        if not 4 <= self.bits <= 20:
            raise InvalidInput(f"privacy grid bits {self.bits} is not in 4..20")
        return self

    def log_bounds(self, statistic: str) -> tuple[float, float]:
        lo, hi = STATISTICS[statistic].bounds or self.bounds_ms
        return math.log(lo), math.log(hi)

    @property
    def steps(self) -> int:
        """Grid steps across the range: also each statistic's sensitivity in grid units."""
        return 2 ** self.bits

    def step_log(self, statistic: str) -> float:
        lo, hi = self.log_bounds(statistic)
        return (hi - lo) / self.steps

    def rho(self) -> float:
        """zCDP of one gaussian report (all its statistics together)."""
        return rho_for(self.epsilon, self.delta)

    def noise_scale(self) -> float:
        """Per statistic, in grid units: σ of the discrete Gaussian, or t of the discrete Laplace."""
        d = len(self.statistics)
        if self.mechanism == "gaussian":
            # d statistics, each of sensitivity `steps`: ρ = d · steps² / (2σ²)
            return math.sqrt(d * self.steps ** 2 / (2 * self.rho()))
        return d * self.steps / self.epsilon  # ε split evenly: each statistic ε/d = steps / t

    def noise_variance_log(self, statistic: str) -> float:
        """Variance of one released statistic's noise, in (natural log)² units."""
        scale = self.noise_scale()
        if self.mechanism == "gaussian":
            var_grid = scale ** 2  # the discrete Gaussian's variance is at most σ² (CKS, Prop. 19)
        else:
            q = math.exp(-1.0 / scale)
            var_grid = 2 * q / (1 - q) ** 2
        return var_grid * self.step_log(statistic) ** 2

    def noise_tail(self, rate: float = FALSE_REFUSAL) -> int:
        """Grid steps t with P(|noise| > t) ≤ rate, per statistic. The discrete Gaussian is σ²-subgaussian
        (CKS 2020, Prop. 25): P(|X| ≥ t) ≤ 2·exp(−t²/2σ²). The discrete Laplace of scale b has
        P(|X| ≥ t) = 2qᵗ/(1+q) ≤ 2qᵗ with q = e^(−1/b)."""
        scale = self.noise_scale()
        if self.mechanism == "gaussian":
            return math.ceil(gaussian_tail(scale, rate))
        return math.ceil(scale * math.log(2 / rate))

    def window(self, statistic: str, rate: float = FALSE_REFUSAL) -> tuple[float, float]:
        """The log-space values an honest release of this statistic takes but with probability ≤ rate:
        the clipped value lies on the grid 0..steps, the noise within ±noise_tail."""
        lo, hi = self.log_bounds(statistic)
        reach = self.noise_tail(rate) * self.step_log(statistic)
        return lo - reach, hi + reach

    def influence_log(self, statistic: str) -> float:
        """How far one released value can move the sum of a cell's logs, at most: the window's width. One
        device with r of a cell's n reports moves its log-mean by at most r/n of this; a fraction f of the
        reports by at most f of it, whatever values they send."""
        low, high = self.window(statistic)
        return high - low

    def describe(self) -> str:
        delta = f" δ={self.delta:g}" if self.mechanism == "gaussian" else ""
        return f"{self.mode} {self.mechanism} ε={self.epsilon:g}{delta}"

    def to_dict(self) -> dict:
        out = {"mechanism": self.mechanism, "epsilon": self.epsilon, "delta": self.delta,
               "statistics": list(self.statistics), "bounds_ms": list(self.bounds_ms), "bits": self.bits}
        if self.mode != "ldp":  # an ldp contract reads as it always did (ledgers, stored campaigns)
            out |= {"mode": self.mode, "cohort_min": self.cohort_min}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "PrivacyParams":
        return cls(mechanism=d["mechanism"], epsilon=d["epsilon"], delta=d["delta"],
                   statistics=tuple(d["statistics"]), bounds_ms=tuple(d["bounds_ms"]), bits=d["bits"],
                   mode=d.get("mode", "ldp"), cohort_min=d.get("cohort_min", DEFAULT_COHORT_MIN))

    def rdp(self, alpha: float) -> float:
        """Rényi DP of one report at order alpha (> 1)."""
        if self.mechanism == "gaussian":
            return alpha * self.rho()
        eps = self.epsilon  # pure ε-DP ⇒ ε²/2-zCDP, and Rényi divergence never exceeds the max divergence
        return min(eps, alpha * eps * eps / 2)


AUTO_MIN_HALF_LOG = math.log(1.25)  # bounds never narrower than ÷/× 1.25² around the estimate


def auto_bounds(estimate_ms: float, low_ms: float, high_ms: float) -> tuple[float, float]:
    """A campaign's public bounds from the predictor (`--bounds auto`): centred on its estimate for the
    hardware class, twice its interval's wider log half-width on each side, inside the default bounds.
    The predictor's answer is public; the clip count released with a cohort's sum says if they bit."""
    if not (math.isfinite(estimate_ms) and 0 < low_ms <= estimate_ms <= high_ms and math.isfinite(high_ms)):
        raise InvalidInput(f"predictor interval {low_ms!r}..{high_ms!r} around {estimate_ms!r} ms cannot make bounds")
    half = max(math.log(high_ms / estimate_ms), math.log(estimate_ms / low_ms), AUTO_MIN_HALF_LOG)
    lo, hi = DEFAULT_LATENCY_BOUNDS_MS
    return max(lo, estimate_ms * math.exp(-2 * half)), min(hi, estimate_ms * math.exp(2 * half))


@dataclass(frozen=True)
class Release:
    """What a private report carries instead of its measurements: noised log-space values and the contract."""

    params: PrivacyParams
    values: dict[str, float] = field(default_factory=dict)  # statistic → noised natural log of ms


def zcdp_delta(rho: float, epsilon: float) -> float:
    """The δ at which ρ-zCDP gives (ε, δ)-DP (Canonne, Kamath, Steinke 2020, Cor. 13), minimised over α."""
    lo, hi = 1.0 + 1e-9, max(2.0, 10 * (epsilon + 1) / max(rho, 1e-12))
    for _ in range(200):  # the log of the bound is convex in α: ternary search
        a1, a2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if _log_delta(rho, epsilon, a1) < _log_delta(rho, epsilon, a2):
            hi = a2
        else:
            lo = a1
    return min(1.0, math.exp(_log_delta(rho, epsilon, (lo + hi) / 2)))


def _log_delta(rho: float, epsilon: float, alpha: float) -> float:
    return ((alpha - 1) * (alpha * rho - epsilon) - math.log(alpha - 1)
            + alpha * math.log1p(-1 / alpha))


@functools.lru_cache(maxsize=256)
def rho_for(epsilon: float, delta: float) -> float:
    """The largest ρ whose zCDP guarantee implies (ε, δ)-DP."""
    lo, hi = 0.0, epsilon
    for _ in range(100):
        mid = (lo + hi) / 2
        if zcdp_delta(mid, epsilon) <= delta:
            lo = mid
        else:
            hi = mid
    return lo


def rdp_to_epsilon(rdp: dict[float, float], delta: float) -> float:
    """(ε, δ) from a Rényi DP curve, by the conversion of Canonne, Kamath, Steinke (2020, Prop. 12)."""
    best = math.inf
    for alpha, r in rdp.items():
        eps = r + math.log1p(-1 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
        best = min(best, eps)
    return max(0.0, best)
