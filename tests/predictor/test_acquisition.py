"""The acquisition rule, the rounds' sizes and the stop rules of adaptive campaigns (predictor/acquisition.py)."""

import math

import numpy as np
import pytest

from edgeatlas.predictor import acquisition as acq
from edgeatlas.protos.errors import InvalidInput


def test_spread_is_the_members_disagreement():
    members = np.array([[1.0, 2.0, 3.0], [1.0, 2.5, 1.0], [1.0, 1.5, 5.0]])
    assert acq.spread(members) == pytest.approx([0.0, np.std([2.0, 2.5, 1.5]), np.std([3.0, 1.0, 5.0])])


def test_pick_takes_the_most_uncertain_cells():
    # Constructed: members agree on every cell but three, which they disagree on by different amounts.
    rng = np.random.default_rng(0)
    members = np.tile(rng.normal(size=40), (5, 1))
    members[:, 7] += [0, 1, -1, 2, -2]
    members[:, 21] += [0, 3, -3, 1, -1]
    members[:, 30] += [0, 0.1, -0.1, 0, 0]
    assert list(acq.pick(acq.spread(members), 3)) == [21, 7, 30]


def test_pick_spreads_a_round_over_classes_and_networks():
    score = np.array([9, 8, 7, 6, 5, 4, 3, 2], dtype=float)
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])  # the four most uncertain cells share a class
    networks = np.array([0, 0, 1, 2, 3, 3, 4, 5])
    chosen = acq.pick(score, 4, groups, networks)
    assert list(chosen) == [0, 2, 4, 6]  # two per class, no network twice
    # Too few classes to fill the round evenly: the rest come by score alone
    assert sorted(acq.pick(score, 8, groups, networks)) == list(range(8))


def test_pareto_weight_keeps_networks_that_could_be_on_the_front():
    low = np.array([1.0, 5.0, 2.0, 9.0])
    high = np.array([2.0, 6.0, 8.0, 10.0])
    accuracy = np.array([0.7, 0.9, 0.7, 0.8])
    w = acq.pareto_weight(low, high, accuracy)
    # 0 is fastest; 1 is the most accurate; 2 overlaps 0's interval so could still beat it;
    # 3 is surely slower than 1 and less accurate: off the front.
    assert list(w) == [1.0, 1.0, 1.0, acq.OFF_FRONT_WEIGHT]
    # Without accuracies only the networks that could be the fastest count fully
    assert list(acq.pareto_weight(low, high)) == [1.0, acq.OFF_FRONT_WEIGHT, 1.0, acq.OFF_FRONT_WEIGHT]


def test_similarity_is_one_for_the_queried_device_and_falls_with_distance():
    features = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 2.0], [9.0, 2.0]])
    near = acq.similarity(features, np.array([1.0, 2.0]), np.ones(2))
    assert near[0] == pytest.approx(1.0) and near[0] > near[2] > near[3] > 0


def test_rounds_grow_with_what_is_measured_and_never_pass_the_budget():
    assert acq.round_size(0, 100) == acq.MIN_ROUND
    assert acq.round_size(40, 100) == 20
    assert acq.round_size(90, 100) == 10
    assert acq.round_size(100, 100) == 0
    sizes, measured = [], 0
    while (k := acq.round_size(measured, 50)) > 0:
        sizes.append(k)
        measured += k
    assert measured == 50 and sizes == [8, 8, 8, 12, 14]


def test_stop_rules():
    rule = acq.StopRule(budget=10, target_mape=15.0).check()
    assert rule.reason(4, math.nan) is None  # nothing to validate yet, budget left
    assert rule.reason(4, 20.0) is None
    assert "target" in rule.reason(4, 14.9)
    assert "budget of 10" in rule.reason(10, 30.0)
    assert acq.StopRule(budget=10).reason(9, 0.0) is None  # no target: only the budget
    assert acq.StopRule(budget=10, epsilon_budget=2.5).reports_per_device(1.0) == 2
    assert acq.StopRule(budget=10, epsilon_budget=3.0).reports_per_device(1.0) == 3
    assert acq.StopRule(budget=10).reports_per_device(1.0) is None
    assert acq.StopRule(budget=10, epsilon_budget=2.0).reports_per_device(0.0) is None  # trusted: no ε spent


@pytest.mark.parametrize("kwargs,message", [({"budget": 0}, "budget"), ({"budget": 5, "target_mape": -1}, "MAPE"),
                                            ({"budget": 5, "target_mape": math.nan}, "MAPE"),
                                            ({"budget": 5, "epsilon_budget": math.inf}, "ε budget")])
def test_bad_stop_rules_are_refused(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        acq.StopRule(**kwargs).check()


def test_the_surrogate_learns_and_validates_out_of_bag(tmp_path, monkeypatch):
    from edgeatlas.predictor.data import load_nb201_dir
    from edgeatlas.predictor.datasets import nasbench201 as nb

    monkeypatch.setenv("EDGEATLAS_CACHE", str(tmp_path))
    samples = load_nb201_dir(nb.SAMPLE_DIR, limit=60)
    rng = np.random.default_rng(0)
    train_idx = rng.choice(len(samples), 300, replace=False)
    rest = np.setdiff1d(np.arange(len(samples)), train_idx)
    surrogate = acq.Surrogate().fit(samples.where(train_idx), seed=1)
    members = surrogate.predict(samples.where(rest))
    assert members.shape == (acq.MEMBERS, len(rest))
    truth = samples.latency_ms[rest]
    mape = 100 * np.mean(np.abs(np.exp(members.mean(0)) - truth) / truth)
    constant = 100 * np.mean(np.abs(np.exp(np.log(samples.latency_ms[train_idx]).mean()) - truth) / truth)
    assert mape < constant / 3  # it learned devices and networks, not just the average
    # the out-of-bag error estimates the error on unseen cells
    assert 0 < surrogate.oob_mape < constant / 3 and 0.3 < surrogate.oob_mape / mape < 3
    assert acq.spread(members).min() >= 0 and acq.spread(members).max() > 0
    with pytest.raises(InvalidInput, match="at least 2"):
        acq.Surrogate().fit(samples.where(train_idx[:1]))
