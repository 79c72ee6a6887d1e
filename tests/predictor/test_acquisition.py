"""The acquisition rule, the rounds' sizes and the stop rules of adaptive campaigns (predictor/acquisition.py)."""

import math

import numpy as np
import pytest

from edgeatlas.predictor import acquisition as acq
from edgeatlas.protos.errors import InvalidInput


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from edgeatlas.predictor.data import load_dir
    from edgeatlas.predictor.datasets import nasbench201 as nb

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEATLAS_CACHE", str(tmp_path_factory.mktemp("cache")))
        return load_dir(nb.SAMPLE_DIR, limit=60)


def test_choose_takes_the_cell_that_teaches_the_most_then_conditions_on_it(sample):
    # Constructed: a GPU, a CPU server and a phone measured on many networks; a second CPU server never.
    # Its cells are the unsure ones.
    rng = np.random.default_rng(0)
    settings = np.array([0, 14, 17, 16])
    measured = np.flatnonzero(np.isin(sample.setting, settings[:3]) & (sample.graph < 40))
    surrogate = acq.Surrogate().fit(sample.where(rng.permutation(measured)[:90]), seed=0)
    open_ = np.flatnonzero(np.isin(sample.setting, settings) & (sample.graph >= 40))
    cells = sample.where(open_)
    _, sd = surrogate.predict(cells)
    unseen = cells.setting == settings[3]
    assert sd[unseen].mean() > 2 * sd[~unseen].mean()
    first = acq.choose(surrogate, cells, 1)
    assert unseen[first[0]]
    # the greedy rule, written out: the cell whose measurement most lowers the summed variance
    cov = surrogate.covariance(cells)
    gain = (cov ** 2).sum(0) / (np.diag(cov) + surrogate.params[3] + 1e-6)
    assert first[0] == int(np.argmax(gain))
    # without caps, k picks; each later pick is conditioned on the earlier (no cell twice)
    picks = acq.choose(surrogate, cells, 6)
    assert len(set(picks)) == 6 and picks[0] == first[0]
    noise = surrogate.params[3] + 1e-6
    after = cov - np.outer(cov[:, first[0]], cov[:, first[0]]) / (cov[first[0], first[0]] + noise)
    gain_after = (after ** 2).sum(0) / (np.diag(after) + noise)
    gain_after[first[0]] = -np.inf
    assert picks[1] == int(np.argmax(gain_after))
    # a weight of zero on the unseen setting's cells: their variance no longer matters, none is taken first
    weight = np.where(unseen, 0.0, 1.0)
    assert not unseen[acq.choose(surrogate, cells, 1, weight=weight)[0]]


def test_choose_spreads_a_round_over_classes_and_networks(sample):
    settings = np.array([0, 14, 17, 16])
    train = sample.where(np.flatnonzero(np.isin(sample.setting, settings[:2]) & (sample.graph < 30)))
    surrogate = acq.Surrogate().fit(train, seed=0)
    cells = sample.where(np.flatnonzero(np.isin(sample.setting, settings) & (sample.graph >= 30)))
    picks = acq.choose(surrogate, cells, 8, cells.setting, cells.graph)
    _, per_class = np.unique(cells.setting[picks], return_counts=True)
    assert list(per_class) == [2, 2, 2, 2]  # its even share each, though the unmeasured classes are less sure
    assert len(set(cells.graph[picks])) == 8


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


def test_the_surrogate_learns_and_validates_leave_one_out(sample):
    rng = np.random.default_rng(0)
    train_idx = rng.choice(len(sample), 300, replace=False)
    rest = np.setdiff1d(np.arange(len(sample)), train_idx)
    surrogate = acq.Surrogate().fit(sample.where(train_idx), seed=1)
    mean, sd = surrogate.predict(sample.where(rest))
    assert mean.shape == sd.shape == (len(rest),)
    truth = sample.latency_ms[rest]
    mape = 100 * np.mean(np.abs(np.exp(mean) - truth) / truth)
    trees = 100 * np.mean(np.abs(np.exp(surrogate.trees.predict_log(sample.where(rest))) - truth) / truth)
    constant = 100 * np.mean(np.abs(np.exp(np.log(sample.latency_ms[train_idx]).mean()) - truth) / truth)
    assert mape < constant / 3 and mape < trees  # it learned devices and networks, better than its trees alone
    # the leave-one-out error estimates the error on unseen cells
    assert 0 < surrogate.validation_mape < constant / 3 and 0.3 < surrogate.validation_mape / mape < 3
    # sure where measured, unsure far from it
    _, sd_seen = surrogate.predict(sample.where(train_idx[:50]))
    assert sd_seen.mean() < sd.mean() and sd.max() > 0
    with pytest.raises(InvalidInput, match="at least 2"):
        acq.Surrogate().fit(sample.where(train_idx[:1]))
