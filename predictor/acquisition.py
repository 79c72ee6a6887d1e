"""Adaptive measurement: which cells to measure next, from the predictor's uncertainty, and when to stop.

A cell is one network on one hardware class in one setting. The surrogate is the predictor's tree model
trained several times on bootstrap resamples of the cells measured so far: where its members disagree,
a measurement teaches the most. Cheap enough to retrain after every round (well under a second per
member on hundreds of cells), and its out-of-bag error is a validation error that spends no measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgeatlas.predictor.data import Samples
from edgeatlas.predictor.models import Tabular
from edgeatlas.protos.errors import InvalidInput

MEMBERS = 5
ROUND_GROWTH = 0.5  # each round measures half as many cells again as are measured so far
MIN_ROUND = 8
OFF_FRONT_WEIGHT = 0.25  # a network that cannot be on the queried Pareto front still counts a quarter


@dataclass
class Surrogate:
    """Bagged trees on tabular features → log latency (ms); members: [M] fitted Tabular models."""

    members: list[Tabular] = field(default_factory=list)
    oob_mape: float = math.nan  # %, each measured cell predicted by the members that never saw it

    def fit(self, train: Samples, members: int = MEMBERS, seed: int = 0, max_iter: int = 100) -> "Surrogate":
        rng = np.random.default_rng(seed)
        n = len(train)
        if n < 2:
            raise InvalidInput(f"the surrogate needs at least 2 measured cells, not {n}")
        oob_sum, oob_count = np.zeros(n), np.zeros(n)
        self.members = []
        for m in range(members):
            pick = rng.integers(0, n, n)
            member = Tabular().fit(train.where(pick), None, seed=seed * 100 + m, max_iter=max_iter)
            self.members.append(member)
            out = np.setdiff1d(np.arange(n), pick)
            if len(out):
                oob_sum[out] += member.predict_log(train.where(out))
                oob_count[out] += 1
        seen = oob_count > 0
        if seen.any():
            pred = oob_sum[seen] / oob_count[seen]
            truth = train.latency_ms[seen]
            self.oob_mape = 100 * float(np.mean(np.abs(np.exp(pred) - truth) / truth))
        return self

    def predict(self, samples: Samples) -> np.ndarray:
        """[M, S] log-latency (ms), one row per member."""
        return np.stack([m.predict_log(samples) for m in self.members])


def spread(members_log: np.ndarray) -> np.ndarray:
    """[S] the members' standard deviation of log latency: the acquisition score before weights."""
    return members_log.std(axis=0)


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
