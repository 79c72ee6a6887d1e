"""Adaptive measurement: which cells to measure next, from the predictor's uncertainty, and when to stop.

A cell is one network on one hardware class in one setting. The surrogate is a Gaussian process on log
latency over the roofline estimate, with one length scale for network features and one for spec features:
it learns a measured device's cells from a few measurements, and its posterior covariance says which cells
are unsure together. Far from every measured cell (a device never measured) it falls back to the
predictor's tree model, which carries spec features → speed to new devices better. A round takes, one by
one, the cell whose measurement most lowers the summed posterior variance over all cells still open
(integrated variance reduction), each choice conditioning the next, so a round does not learn one thing k
times. Cheap enough to refit after every round (seconds on a thousand cells); its leave-one-out error is a
validation error that spends no measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgeatlas.predictor.data import SUMMARY, Samples
from edgeatlas.predictor.models import Tabular, roofline_log, tabular_features
from edgeatlas.protos.errors import InvalidInput

ROUND_GROWTH = 0.5  # each round measures half as many cells again as are measured so far
MIN_ROUND = 8
OFF_FRONT_WEIGHT = 0.25  # a network that cannot be on the queried Pareto front still counts a quarter
MAX_CANDIDATES = 2000  # cells a round weighs against each other ([C, C] covariance); more are subsampled
MAX_GP_CELLS = 3000  # measured cells the GP conditions on (O(n³): ~10 s a fit on 2 cores); beyond, a random subset


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0.0)


@dataclass
class Surrogate:
    """GP on log latency (ms) minus the roofline's, k = s2·exp(-|Δnet|²/2ln² - |Δhw|²/2lh²) + noise, and trees.

    Its prediction is the GP's where measured cells inform it and the trees' where the GP is back at its
    prior, in proportion to how much of the prior variance is explained.
    """

    trees: Tabular | None = None
    params: np.ndarray = field(default_factory=lambda: np.zeros(4))  # ln, lh, s2, noise
    validation_mape: float = math.nan  # %, each measured cell predicted by the GP given all the others
    _shift: np.ndarray | None = None  # feature standardization: mean, scale, kept columns
    _scale: np.ndarray | None = None
    _net: np.ndarray | None = None  # [F] bool, network-summary columns kept
    _hw: np.ndarray | None = None  # [F] bool, setting columns kept
    _train: np.ndarray | None = None  # [n, F] standardized features of the cells the GP conditions on
    _chol: tuple | None = None
    _alpha: np.ndarray | None = None
    _mean: float = 0.0

    def fit(self, train: Samples, seed: int = 0, max_iter: int = 100) -> "Surrogate":
        from scipy.linalg import cho_factor, cho_solve
        from scipy.optimize import minimize

        n = len(train)
        if n < 2:
            raise InvalidInput(f"the surrogate needs at least 2 measured cells, not {n}")
        rng = np.random.default_rng(seed)
        self.trees = Tabular().fit(train, None, seed=seed, max_iter=max_iter)
        residual = np.log(train.latency_ms) - roofline_log(train)
        keep = np.arange(n) if n <= MAX_GP_CELLS else np.sort(rng.choice(n, MAX_GP_CELLS, replace=False))
        x = tabular_features(train.where(keep)).astype(np.float64)[:, :-1]  # the roofline is the GP's mean
        self._shift, spread = x.mean(0), x.std(0)  # features are finite: a missing spec value is 0 and a flag
        self._scale = spread + 1e-6
        columns = np.arange(x.shape[1])
        self._net = (columns < len(SUMMARY)) & (spread > 1e-6)
        self._hw = (columns >= len(SUMMARY)) & (spread > 1e-6)
        self._train = self._standardized(x)
        r = residual[keep]
        self._mean = float(r.mean())
        r = r - self._mean
        d_net = _squared_distances(self._train[:, self._net], self._train[:, self._net])
        d_hw = _squared_distances(self._train[:, self._hw], self._train[:, self._hw])
        eye = np.eye(len(r))

        def neg_log_likelihood(log_params: np.ndarray) -> float:
            ln, lh, s2, noise = np.exp(log_params)
            k = s2 * np.exp(-d_net / (2 * ln * ln) - d_hw / (2 * lh * lh)) + (noise + 1e-6) * eye
            try:
                chol = cho_factor(k)
            except np.linalg.LinAlgError:
                return 1e10
            return float(0.5 * r @ cho_solve(chol, r) + np.log(np.diag(chol[0])).sum())

        wide_net, wide_hw = math.sqrt(max(1, self._net.sum())), math.sqrt(max(1, self._hw.sum()))
        variance = float(r.var()) + 1e-3
        best = None
        for start in ((wide_net, wide_hw, variance, 0.01), (3 * wide_net, wide_hw / 3, variance, 0.05)):
            found = minimize(neg_log_likelihood, np.log(start), method="L-BFGS-B",
                             bounds=[(-3, 6), (-3, 6), (-7, 4), (-9, 0)])
            if best is None or found.fun < best.fun:
                best = found
        self.params = np.exp(best.x)
        k = self._kernel(self._train, self._train) + (self.params[3] + 1e-6) * eye
        self._chol = cho_factor(k)
        self._alpha = cho_solve(self._chol, r)
        # leave-one-out: y_i - μ_{-i} = α_i / [K⁻¹]_ii (Rasmussen & Williams, eq. 5.12)
        inverse_diag = np.diag(cho_solve(self._chol, eye))
        error = -self._alpha / inverse_diag  # predicted minus measured, log
        self.validation_mape = 100 * float(np.mean(np.abs(np.exp(error) - 1)))
        return self

    def _features(self, samples: Samples) -> np.ndarray:
        return self._standardized(tabular_features(samples).astype(np.float64)[:, :-1])

    def _standardized(self, x: np.ndarray) -> np.ndarray:
        return (x - self._shift) / self._scale

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ln, lh, s2, _ = self.params
        return s2 * np.exp(-_squared_distances(a[:, self._net], b[:, self._net]) / (2 * ln * ln)
                           - _squared_distances(a[:, self._hw], b[:, self._hw]) / (2 * lh * lh))

    def predict(self, samples: Samples) -> tuple[np.ndarray, np.ndarray]:
        """([S] log latency (ms), [S] its posterior standard deviation)."""
        from scipy.linalg import cho_solve

        x = self._features(samples)
        cross = self._kernel(x, self._train)
        near = roofline_log(samples) + self._mean + cross @ self._alpha
        var = np.maximum(self.params[2] - np.einsum("ij,ji->i", cross, cho_solve(self._chol, cross.T)), 0.0)
        # the GP where measured cells inform it, the trees where it falls back to its prior (unseen devices)
        known = np.clip(1 - var / self.params[2], 0.0, 1.0)
        return known * near + (1 - known) * self.trees.predict_log(samples), np.sqrt(var)

    def covariance(self, samples: Samples) -> np.ndarray:
        """[S, S] posterior covariance of log latency among the given cells."""
        from scipy.linalg import cho_solve

        x = self._features(samples)
        cross = self._kernel(x, self._train)
        return self._kernel(x, x) - cross @ cho_solve(self._chol, cross.T)


def choose(surrogate: Surrogate, candidates: Samples, k: int, groups: np.ndarray | None = None,
           networks: np.ndarray | None = None, weight: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Indices of k candidates, by integrated variance reduction, spread over groups and networks like pick.

    Greedily, the cell j that most lowers Σ_i w_i·Var_i after measuring it, Σ_i w_i·Cov_ij² / (Var_j + noise),
    then the covariance conditioned on j. weight: [C] how much each cell's certainty matters (a queried
    Pareto front); None: all alike. Past MAX_CANDIDATES, a random subset is weighed.
    """
    c = len(candidates)
    k = min(k, c)
    pool = np.arange(c) if c <= MAX_CANDIDATES else np.sort(np.random.default_rng(seed).choice(c, MAX_CANDIDATES,
                                                                                                 replace=False))
    cov = surrogate.covariance(candidates.where(pool))
    w = np.ones(len(pool)) if weight is None else np.asarray(weight, dtype=float)[pool]
    groups = np.zeros(c, dtype=np.int64) if groups is None else np.asarray(groups)
    networks = np.arange(c) if networks is None else np.asarray(networks)
    cap = math.ceil(k / max(1, len(np.unique(groups[pool]))))
    noise = surrogate.params[3] + 1e-6
    chosen: list[int] = []
    per_group: dict = {}
    taken_networks: set = set()
    open_ = np.ones(len(pool), dtype=bool)
    for capped in (True, False):  # too few groups or networks to fill the round evenly: then without the caps
        while len(chosen) < k:
            allowed = open_.copy()
            if capped:
                allowed &= np.array([per_group.get(groups[i], 0) < cap and networks[i] not in taken_networks
                                     for i in pool])
            if not allowed.any():
                break
            gain = (w[:, None] * cov ** 2).sum(0) / (np.diag(cov) + noise)
            gain[~allowed] = -np.inf
            j = int(np.argmax(gain))
            chosen.append(int(pool[j]))
            open_[j] = False
            per_group[groups[pool[j]]] = per_group.get(groups[pool[j]], 0) + 1
            taken_networks.add(networks[pool[j]])
            column = cov[:, j].copy()
            cov -= np.outer(column, column) / (column[j] + noise)
    return np.array(chosen, dtype=np.int64)


def pick(score: np.ndarray, k: int, groups: np.ndarray | None = None, networks: np.ndarray | None = None) -> np.ndarray:
    """Indices of k cells, highest score first, spread over groups (hardware classes) and networks.

    A round that takes its k most uncertain cells from one class would wait on that class's devices and
    learn one thing k times: no group gets more than its even share (rounded up) and no network is taken
    twice, unless there are too few of them to fill the round.
    """
    order = np.argsort(-score, kind="stable")
    k = min(k, len(score))
    if groups is None:
        groups = np.zeros(len(score), dtype=np.int64)
    if networks is None:
        networks = np.arange(len(score))
    cap = math.ceil(k / max(1, len(np.unique(groups))))
    chosen: list[int] = []
    per_group: dict = {}
    taken_networks: set = set()
    for i in order:
        if len(chosen) == k:
            break
        if per_group.get(groups[i], 0) >= cap or networks[i] in taken_networks:
            continue
        chosen.append(int(i))
        per_group[groups[i]] = per_group.get(groups[i], 0) + 1
        taken_networks.add(networks[i])
    if len(chosen) < k:  # too few groups or networks: fill by score alone
        rest = [int(i) for i in order if int(i) not in set(chosen)]
        chosen += rest[:k - len(chosen)]
    return np.array(chosen, dtype=np.int64)


def pareto_weight(low_ms: np.ndarray, high_ms: np.ndarray, accuracy: np.ndarray | None = None,
                  off_front: float = OFF_FRONT_WEIGHT) -> np.ndarray:
    """[N] per network: 1 if it could be on the latency–accuracy front of a queried device, else off_front.

    low_ms, high_ms: [N] the predicted interval on the queried spec sheet. A network is surely off the
    front when another is surely faster (its high below this one's low) and at least as accurate. Without
    accuracies every network is equally accurate: the front is the fastest one, and the candidates are
    those that could still be it.
    """
    acc = np.zeros(len(low_ms)) if accuracy is None else np.asarray(accuracy, dtype=float)
    weight = np.ones(len(low_ms))
    for i in range(len(low_ms)):
        if np.any((high_ms < low_ms[i]) & (acc >= acc[i])):
            weight[i] = off_front
    return weight


def similarity(features: np.ndarray, query: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """[C] how close each hardware class's spec features [C, F] are to the queried ones [F], in (0, 1]."""
    d = np.sqrt(np.mean(((features - query) / scale) ** 2, axis=1))
    return np.exp(-d)


def round_size(measured: int, budget: int) -> int:
    """How many cells the next round measures: a share of those measured so far, within what is left."""
    return max(0, min(budget - measured, max(MIN_ROUND, math.ceil(ROUND_GROWTH * measured))))


@dataclass(frozen=True)
class StopRule:
    """An adaptive campaign stops at the first of: its measurement budget, its target error, its ε."""

    budget: int  # measurements: every task issued, done or failed
    target_mape: float = 0.0  # %, 0: none
    epsilon_budget: float = 0.0  # per device, Σ ε of its private reports in this campaign; 0: none

    def check(self) -> "StopRule":
        if self.budget < 1:
            raise InvalidInput(f"an adaptive campaign needs a budget of at least 1 measurement, not {self.budget}")
        if not (0 <= self.target_mape < 1000) or math.isnan(self.target_mape):
            raise InvalidInput(f"target MAPE must be a percentage in [0, 1000), not {self.target_mape}")
        if not (self.epsilon_budget >= 0 and math.isfinite(self.epsilon_budget)):
            raise InvalidInput(f"the ε budget must be a finite number ≥ 0, not {self.epsilon_budget}")
        return self

    def reason(self, measured: int, mape: float) -> str | None:
        """Why the campaign stops now, or None; mape: the validation error after the last round (%)."""
        if self.target_mape and math.isfinite(mape) and mape <= self.target_mape:
            return f"reached the target: validation MAPE {mape:.1f} % ≤ {self.target_mape:g} %"
        if measured >= self.budget:
            return f"spent the budget of {self.budget} measurements"
        return None

    def reports_per_device(self, epsilon_per_report: float) -> int | None:
        """How many private reports one device may send this campaign; None: no ε budget applies."""
        if not self.epsilon_budget or epsilon_per_report <= 0:
            return None
        return int(self.epsilon_budget / epsilon_per_report + 1e-9)
