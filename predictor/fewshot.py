"""Few-shot calibration: K measurements in one setting turn the zero-shot answer into that setting's.

The shots are (zero-shot prediction, measured latency) pairs of K networks in the setting the query is
for: the reference networks of a fingerprint (`fingerprint.py`), or K networks of a held-out device
(`predictor eval --shots K`). Four corrections, from the least assuming to the most:

- `offset`: log t = p + a. The device is uniformly faster or slower than the model thinks.
- `affine`: log t = a + b·p, b shrunk toward 1. The model's spread across networks is off, e.g. a
  runtime with a smaller per-operator cost than the training runtimes compresses small networks.
- `split`: t = θ₁·F + θ₂·W, θ ≥ 0, where F and W are the GNN's own fixed costs (per operator and per
  call) and work terms of its answer (F + W = the zero-shot answer). A runtime with a tenth of the
  training runtimes' per-operator cost is θ₁ = 0.1; a core twice as fast at the work, θ₂ = 0.5.
- `physical`: t = θ₁·C + θ₂·M + θ₃·n + D, θ ≥ 0, with C and M the network's compute and memory times at
  the sheet's peaks (summed over operators; a matrix product narrower than the vector lanes at the share
  of them it keeps busy, `models.lane_use`) and n its operator count: the device's efficiency at each
  and its cost per operator, measured. It needs no model at all, so it holds where the training data
  never saw the runtime (nn-Meter's and NeuSight's split of a network's time, fitted on the device
  instead of profiled per kernel). D is not fitted: the time of the traffic that streams from memory past
  the last-level cache, at the sheet's bandwidth (`models.streamed_bytes`: a node's tensors beyond half the
  cache, and a weight beyond what the cache holds of a whole query's footprint, `models.query_footprint`).
  M is the traffic the cache serves, whose rate θ₂ the shots measure. The sheet's bandwidth is what
  streaming reaches (a numpy copy of 64 MiB, as the agent measures it), and what a shot streams is charged
  at it as a query's is: `gemv`'s 25 MB of weights, two layers of 12.6 MB, partly stream past a 32 MiB
  cache. Charged at the cache's rate instead (each layer fitting alone), `gemv` pulled θ₂ down to the
  rate between the two: on this project's machine the shots' own leave-one-out error was 36 % where it is
  17 % (`gemv` answered ×0.67 and `activations` ×1.20 by the fit on all six, then ×0.91 and ×1.03). Where
  `gemv` ran ×1.8 slower in one of its two passes than in the other (a neighbour's share of the cache it
  straddles), both fits missed it (×0.53, ×0.69) and leave-one-out stayed at 37-38 %.

Each that the shots allow (fewer shots allow fewer: 1 for offset, 4 for affine and split, 5 for
physical) is fitted, and the answer is their average in log time, each weighted by the inverse square of
its typical leave-one-out error: the median, over the shots, of its relative error on the shot left out.
Picking the one with the least leave-one-out error instead threw away corrections that were nearly as
good and wrong in other directions: on the shared data, each of the 12 devices held out with 10 shots
per setting, the GNN's mean MAPE went from 8.3 to 7.6 % (Pixel 3 34.8 → 29.9 %). The median, not the
mean: a fingerprint's reference set measures each regime with one network, and a correction left
without that network cannot know the regime (physical, without `overhead`, has no per-operator cost and
answers it ×0.03), an error it never makes on a query, where it has every shot. Scored by the mean, that
one shot took physical's weight from 86 to 53 % on this project's machine. On 17 networks nobody trained
on, timed there twice, with three checkpoints each, the calibrated answers' MAPE was 19.0, 16.1, 16.5 %
and 19.0, 19.2, 18.2 % by the mean; 16.6, 15.9, 16.2 % and 18.1, 17.6, 17.5 % by the median. On the
demo's 8 models (three NAS-Bench-201 cells among them, ×1.3-1.6 over by every correction) the median was
a point worse (18.9 against 17.8 %). On the shared data the two are alike: mean MAPE 7.62 % by the mean,
7.63 by the median, with 10 shots; 8.08 and 7.97 with 5; 9.09 and 9.05 with 4.

Shots chosen one per regime (`designed`: a fingerprint's reference set) are answered by `physical` alone
where it is fitted (stop 47; the fingerprint figures above were of the average). Each of its terms is
pinned by the shots of its regime, and a shot left out takes its regime's evidence with it, which no query
lacks: leave-one-out cannot weigh it against the others. On this project's machine the average gave 21-39 %
of the weight to the three corrections of the GNN's zero-shot answer, which in ONNX Runtime was ×3-4.5 of
measured on the demo's NAS-Bench-201 cells. Over the demo's 7 float models the average's error was 20.9 %
against 9.1 % for `physical` alone (the cells ×1.33-1.49 against ×1.13-1.21); on bench/predict_here.py's
17 float networks 14.8 against 12.3 %; where leave-one-out already gave `physical` 95 % of the weight
(another timing, 22 networks) the two were within half a point. Its interval is from its own residuals
on the shots (below).

The 80 % interval is split-conformal over the average's leave-one-out residuals: the ⌈0.8·(K+1)⌉-th
smallest |residual| of K, for shots drawn as the queries are (`predictor eval --shots K`: on the shared
data's 12 devices, it covered 81.9 % of the rest with 10 shots, 85.7 with 6, 81.9 with 5). Shots chosen
one per regime (`designed`: a fingerprint's reference set) are not exchangeable with the queries: the
shot that alone measures a regime, left out, misses by what no query is missed by (physical without
`overhead`, ×0.03). With 8 shots or fewer that rank is the largest residual, that one: a fingerprint's 6
float shots gave intervals ×32-38 wide on this project's machine. Their ⌈0.8·K⌉-th (the 5th of 6) was ×1.4-1.5
wide once, covering 76-82 % of 17 networks nobody trained on; as the physical terms grew closer to ONNX
Runtime's kernels it stayed a regime's absence, ×2.7 wide (gemv or activations left out), and covered all
of 60 such networks, whose errors' 80th percentile was ×1.22. A query has every regime measured: what it
misses by is how far a network strays from the three-term law the shots fit, which their own residuals
show, each fitted with them, so smaller than a new network's by the three parameters fitted: the designed
shots' interval is the ⌈0.8·K⌉-th smallest |residual| of the physical fit on all of them, times
√(K / (K - 3)) (the residual scale's correction for the parameters fitted). On those 60 networks: ×1.33
wide, covering 95 %. Below 4 shots no rank is used; the zero-shot half-width is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COVERAGE = 0.8
MIN_SHOTS = {"offset": 1, "affine": 4, "split": 4, "physical": 5}
PHYSICAL_PARAMS = 3  # θ₁, θ₂, θ₃
SLOPE_PRIOR = 2.0  # the affine fit's pull toward slope 1, in shots' worth of evidence
MIN_ERROR = 1e-4  # relative, of a leave-one-out fit: an exact fit's weight is large, not infinite


@dataclass(frozen=True)
class Calibration:
    parts: tuple[tuple[str, tuple[float, ...], float], ...]  # (kind, params, weight) averaged; weights sum to 1
    half_width: float  # of the 80 % interval in log ms
    shots: int
    loo_mape: float  # % leave-one-out error over the shots, of the average
    floor_shift: float = 0.0  # log of how far below its sheet's floor the device ran a shot (≤ 0)

    @property
    def kind(self) -> str:
        """offset | affine | split | physical: the correction with the most weight."""
        return max(self.parts, key=lambda part: part[2])[0]

    @property
    def params(self) -> tuple[float, ...]:
        """The parameters of `kind`."""
        return max(self.parts, key=lambda part: part[2])[1]

    @property
    def needs_share(self) -> bool:
        return any(kind == "split" for kind, _, _ in self.parts)

    @property
    def compute_efficiency(self) -> float | None:
        """The physical part's factor on compute time at the sheet's peak (its first parameter), or None
        where the calibration has no physical part."""
        return next((params[0] for kind, params, _ in self.parts if kind == "physical"), None)

    def apply(self, pred: np.ndarray, share: np.ndarray | None = None, terms: np.ndarray | None = None) -> np.ndarray:
        """Calibrated log-latency for zero-shot log predictions `pred`, with the fixed-cost share of each
        (for split) and its [C, M, n, D] terms (for physical)."""
        out = 0.0
        for kind, params, weight in self.parts:
            if (kind == "split" and share is None) or (kind == "physical" and terms is None):
                raise ValueError(f"a calibration with a {kind} part needs the "
                                 f"{'share' if kind == 'split' else 'terms'} of each prediction")
            out = out + weight * _predict(kind, params, pred, share, terms)
        return out

    def describe(self) -> str:
        below = f"; the device beats its sheet's peak by ×{math.exp(-self.floor_shift):.2f}" \
            if self.floor_shift < -0.01 else ""
        if len(self.parts) == 1:
            head, said = self.kind, _what(self.kind, self.params)
        else:  # by weight, those that carry any
            head = "corrections averaged"
            said = "; ".join(f"{kind} {100 * weight:.0f} %: {_what(kind, params)}"
                             for kind, params, weight in sorted(self.parts, key=lambda part: -part[2])
                             if weight >= 0.005)
        return f"{head} from {self.shots} shots ({said}; leave-one-out error {self.loo_mape:.1f} %{below})"


def _what(kind: str, p: tuple[float, ...]) -> str:
    return {"offset": lambda: f"×{math.exp(p[0]):.3g} the zero-shot answer",
            "affine": lambda: f"log t = {p[0]:+.3f} + {p[1]:.3f}·log(zero-shot)",
            "split": lambda: f"fixed costs ×{p[0]:.3g}, work ×{p[1]:.3g}",
            "physical": lambda: f"{_share_of_peak(p[0])} of peak compute, {_share_of_peak(p[1])} of peak "
                                f"bandwidth, {p[2] * 1e3:.3g} µs per operator"}[kind]()


def _share_of_peak(theta: float) -> str:
    """θ = time / time at peak → the efficiency it means (a zero θ: that term did not matter)."""
    return f"{100 / theta:.3g} %" if theta > 0 else "any share"


def _fit(kind: str, pred: np.ndarray, y: np.ndarray, share, terms) -> tuple[float, ...]:
    if kind == "offset":
        return (float(np.mean(y - pred)),)
    if kind == "affine":
        # ridge toward b = 1: minimise Σ (y - a - b·p)² + λ (b - 1)², λ = SLOPE_PRIOR · var(p)
        pc, yc = pred - pred.mean(), y - y.mean()
        lam = SLOPE_PRIOR * max(float(np.mean(pc ** 2)), 1e-6)
        b = float((np.sum(pc * yc) + lam) / (np.sum(pc ** 2) + lam))
        b = min(max(b, 0.2), 2.0)
        return (float(y.mean() - b * pred.mean()), b)
    from scipy.optimize import nnls

    t = np.exp(y)
    target = np.ones(len(t))
    if kind == "split":
        total = np.exp(pred)
        design = np.stack([total * share, total * (1 - share)], axis=1)
    else:
        terms = np.asarray(terms, dtype=np.float64)
        design, fixed = terms[:, :3], _streamed(terms)
        target = np.maximum(1 - fixed / t, 0.0)  # what the streamed traffic leaves of each shot's time
    theta, _ = nnls(design / t[:, None], target)  # relative error: every shot counts alike
    return tuple(float(v) for v in theta)


def _streamed(terms: np.ndarray) -> np.ndarray:
    """The physical terms' fixed part: the memory time of traffic past the last-level cache, at the sheet's
    bandwidth (`models.physical_terms`' fourth column; 0 where terms have three)."""
    return terms[:, 3] if terms.shape[1] > 3 else np.zeros(len(terms))


def _predict(kind: str, params: tuple[float, ...], pred, share, terms) -> np.ndarray:
    if kind == "offset":
        return pred + params[0]
    if kind == "affine":
        return params[0] + params[1] * pred
    if kind == "split":
        total = np.exp(pred) * (params[0] * share + params[1] * (1 - share))
    else:
        terms = np.asarray(terms, dtype=np.float64)
        total = terms[:, :3] @ np.asarray(params) + _streamed(terms)
    return np.log(np.maximum(total, 1e-9))


def _weights(loos: list[np.ndarray]) -> np.ndarray:
    """Each correction's weight from its leave-one-out log residuals: the inverse square of their median
    relative error (a calibration is judged by relative error; the median, so that a shot which alone
    measures a regime, left out, does not decide the weight: the module's docstring)."""
    score = np.array([max(float(np.median(np.abs(np.expm1(loo)))), MIN_ERROR) for loo in loos])
    return score ** -2 / np.sum(score ** -2)


def calibrate(pred: np.ndarray, measured_ms: np.ndarray, zero_shot_half: float,
              share: np.ndarray | None = None, roofline: np.ndarray | None = None,
              terms: np.ndarray | None = None, designed: bool = False) -> Calibration:
    """The corrections K shots allow, averaged by their leave-one-out errors (see the module's docstring).

    pred: zero-shot log ms of the shots; share: the fixed-cost share of each (the GNN's), or None;
    terms: [K, 4] compute ms, memory ms at the sheet's peaks, operator count and streamed memory ms
    (`models.physical_terms`), or None; roofline: their floor (log ms) on the sheet. A shot measured below
    its floor shows that the sheet understates the hardware (a VM's nominal clock where the core boosts):
    the floor drops by the same factor (`floor_shift`). designed: the shots were chosen one per regime, not
    drawn as the queries are (the interval's rank: the module's docstring)."""
    pred = np.asarray(pred, dtype=np.float64)
    share = None if share is None else np.clip(np.asarray(share, dtype=np.float64), 0.0, 1.0)
    terms = None if terms is None else np.asarray(terms, dtype=np.float64)
    y = np.log(np.asarray(measured_ms, dtype=np.float64))
    k = len(y)
    if k == 0:
        raise ValueError("no shots")

    def part(a, index):
        return None if a is None else a[index]

    loos = {}
    for kind, need in MIN_SHOTS.items():
        if k < need or (kind == "split" and share is None) or (kind == "physical" and terms is None):
            continue
        loo = np.zeros(k)
        for i in range(k if k > 1 else 0):
            keep = np.arange(k) != i
            params = _fit(kind, pred[keep], y[keep], part(share, keep), part(terms, keep))
            one = slice(i, i + 1)
            loo[i] = _predict(kind, params, pred[one], part(share, one), part(terms, one))[0] - y[i]
        loos[kind] = loo
    if designed and "physical" in loos:  # a reference set pins each of its terms (the module's docstring)
        loos = {"physical": loos["physical"]}
    weights = _weights(list(loos.values()))
    parts = tuple((kind, _fit(kind, pred, y, share, terms), float(w)) for kind, w in zip(loos, weights))
    loo = np.sum([w * r for w, r in zip(weights, loos.values())], axis=0)
    rank = math.ceil(COVERAGE * (k if designed else k + 1))
    half = float(np.sort(np.abs(loo))[rank - 1]) if k >= 4 and rank <= k else math.nan
    if designed and "physical" in loos and k > PHYSICAL_PARAMS:  # its residuals on the shots (the docstring)
        fitted = _predict("physical", parts[0][1], pred, share, terms) - y
        half = float(np.sort(np.abs(fitted))[rank - 1]) * math.sqrt(k / (k - PHYSICAL_PARAMS))
    if not math.isnan(half):
        half = max(half, 0.02)
    floor_shift = 0.0
    if roofline is not None and np.any(np.isfinite(roofline)):
        floor_shift = min(0.0, float(np.min((y - np.asarray(roofline, dtype=np.float64))[np.isfinite(roofline)])))
    return Calibration(parts=parts, shots=k, loo_mape=100 * float(np.mean(np.abs(np.expm1(loo)))),
                       half_width=zero_shot_half if math.isnan(half) else half, floor_shift=floor_shift)
