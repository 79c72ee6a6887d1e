"""Secure aggregation rounds: the devices' Participant against the coordinator's Round, in one process.

What the coordinator receives is captured and checked: masked vectors look uniform, no device's values
can be rebuilt from them, only the sum decodes. Dropouts, garbage, replays and small cohorts end with a
clear error and nothing published.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import chisquare

from edgeatlas.protos.noise import discrete_gaussian
from edgeatlas.agent.secagg import Participant, vector
from edgeatlas.coordinator.secagg import Replay, Round, RoundFailed
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.secure import MODULUS, SealedShare, SecureContract, Tampered, UnmaskShare, decode

PRIVACY = PrivacyParams(bounds_ms=(1.0, 25.0))


def no_noise(sigma2: Fraction, rng=None) -> int:
    return 0


def cells_of(rng: np.random.Generator, held=(0,)) -> dict[int, dict[str, float]]:
    base = math.log(5.0) + rng.normal(0, 0.2)
    return {c: {"log_p50_ms": base, "log_p99_ms": base + 0.5, "log_mean_ms": base + 0.1} for c in held}


def run(n: int, *, cells: int = 2, drop_after_share: int = 0, silent_at_unmask: int = 0, sampler=no_noise,
        rng_seed: int = 0, contract: SecureContract | None = None, tamper=None, held=(0,)):
    """A full round: n devices, the first `drop_after_share` vanish before their masked vector, the last
    `silent_at_unmask` survivors never send unmasking shares. Returns (round, participants, result)."""
    rnd, parts, ids, survivors = to_unmasking(n, cells=cells, drop_after_share=drop_after_share, sampler=sampler,
                                              rng_seed=rng_seed, contract=contract, tamper=tamper, held=held)
    for i in survivors[:len(survivors) - silent_at_unmask]:
        rnd.unmask(ids[i], parts[i].unmask(survivors, rnd.denoise))
    return rnd, parts, rnd.result()


def to_unmasking(n: int, *, cells: int = 2, drop_after_share: int = 0, sampler=no_noise, rng_seed: int = 0,
                 contract: SecureContract | None = None, tamper=None, held=(0,)):
    """A round up to its survivors: (round, participants, device ids, survivors)."""
    rng = np.random.default_rng(rng_seed)
    contract = contract or SecureContract.for_cohort(PRIVACY, cells, n)
    parts = [Participant("r", contract, cells_of(rng, held), sampler=sampler) for _ in range(n)]
    ids = [f"d{i}" for i in range(n)]
    rnd = Round("r", contract, ids, sampler=sampler)
    for d, p in zip(ids, parts):
        rnd.advertise(d, p.advertise())
    roster = rnd.close_advertise()
    for d, p in zip(ids, parts):
        rnd.share(d, p.share(roster))
    rnd.close_share()
    for i, (d, p) in enumerate(zip(ids, parts)):
        if i >= drop_after_share:
            y = p.masked(rnd.inbox(d))
            rnd.masked(d, tamper(i, y) if tamper else y)
    return rnd, parts, ids, rnd.close_masked()


def exact_sum(parts, contract, who) -> np.ndarray:
    return sum(parts[i].exact for i in who)


@pytest.mark.parametrize("n,drop", [(3, 0), (10, 0), (10, 3), (30, 10), (70, 23)])
def test_the_sum_of_the_survivors_decodes_exactly_without_noise(n, drop):
    rnd, parts, (cells, survivors) = run(n, drop_after_share=drop)
    assert survivors == n - drop
    want = exact_sum(parts, rnd.contract, range(drop, n))
    p = rnd.contract.privacy
    for name, col in zip(p.statistics, range(1, 4)):
        lo, _ = p.log_bounds(name)
        assert cells[0].log_means[name] == pytest.approx(lo + want[col] / (n - drop) * p.step_log(name))
    assert cells[0].devices == n - drop and cells[1].devices == 0


def test_survivors_silent_at_unmasking_do_not_stop_the_round():
    _, _, (cells, survivors) = run(12, drop_after_share=2, silent_at_unmask=2)
    assert survivors == 10 and cells[0].devices == 10


def test_too_many_dropouts_publish_nothing_and_say_so():
    with pytest.raises(RoundFailed, match="fewer than the 7 it needs; nothing is published"):
        run(10, drop_after_share=4)


def test_a_cohort_below_its_minimum_never_gets_a_roster():
    contract = SecureContract.for_cohort(PRIVACY, 1, 10)
    rnd = Round("r", contract, [f"d{i}" for i in range(10)])
    for i in range(6):
        rnd.advertise(f"d{i}", Participant("r", contract, {}).advertise())
    with pytest.raises(RoundFailed, match="6 devices advertised keys, fewer than the 7"):
        rnd.close_advertise()
    with pytest.raises(InvalidInput):
        rnd.share("d0", [])


@pytest.mark.parametrize("drop", [0, 3])
def test_the_published_noise_is_a_central_curators_whoever_survives(drop):
    """The decoded mean's error has the variance the contract states: at least σ²/S² (what a trusted curator
    adds over the S survivors), and with every device surviving, no more than that either: the coordinator
    took the removable noise of the survivors the contract named back out."""
    contract = SecureContract.for_cohort(PRIVACY, 1, 10)
    errors, var, denoised = [], None, None
    for seed in range(40):
        rnd, parts, (cells, n) = run(10, cells=1, sampler=discrete_gaussian, rng_seed=seed, contract=contract,
                                     drop_after_share=drop)
        exact = exact_sum(parts, contract, range(drop, 10))
        p, name = contract.privacy, "log_p50_ms"
        errors.append(cells[0].log_means[name] - (p.log_bounds(name)[0] + exact[1] / n * p.step_log(name)))
        var, denoised = cells[0].noise_var_log[name], rnd.denoise
    central = contract.sigma2 * contract.privacy.step_log("log_p50_ms") ** 2 / (10 - drop) ** 2
    assert central <= var <= 1.06 * central  # M or M + 1 of the 20 components of σ²/20 kept
    assert denoised == (list(range(10)) if drop == 0 else [3])  # 7 survivors add 21 components: one comes out
    assert 0.4 * var < np.mean(np.square(errors)) < 2.0 * var  # 40 draws: a χ² with 40 d.f. lies well inside


def test_the_noise_split_keeps_the_central_noise_for_any_survivors():
    """For cohorts of every size, any S ≥ t survivors keep M components after removal and never fewer;
    with all surviving the kept noise is σ² to rounding, with only t nothing is removed."""
    for cohort in (2, 3, 10, 31, 100, 997, 5000):
        c = SecureContract.for_cohort(PRIVACY, 1, cohort)
        assert c.needed * c.unit_sigma2 >= c.sigma2 and c.min_survivors * c.per_device >= c.needed
        for s in range(c.min_survivors, cohort + 1, max(1, cohort // 50)):
            assert c.needed <= c.kept(s) < c.needed + c.removable + 1
        assert c.kept(cohort) * c.unit_sigma2 <= c.sigma2 * 1.01
        assert c.denoised(c.min_survivors) == (c.min_survivors * c.per_device - c.needed) // max(c.removable, 1)


def test_a_device_gives_noise_shares_only_for_the_survivors_the_contract_names():
    """A coordinator that asks for more removable noise than the contract allows, or for another device's,
    gets nothing: the device refuses the whole stage."""
    rnd, parts, ids, survivors = to_unmasking(6, cells=1, drop_after_share=1)  # five survivors of six
    assert 0 < len(rnd.denoise) < len(survivors)
    for greedy in (survivors, rnd.denoise[::-1], [0] + rnd.denoise[1:]):
        with pytest.raises(InvalidInput, match="remove the noise"):
            Participant.unmask(parts[1], survivors, greedy)
        parts[1].stage = 3  # the refused stage, answered again with what the contract allows
    shares = parts[1].unmask(survivors, rnd.denoise)
    assert {s.owner for s in shares if s.kind == "noise"} == set(rnd.denoise) - {1}
    with pytest.raises(InvalidInput, match="one noise share per neighbour to denoise"):
        rnd.unmask("d2", [s for s in parts[2].unmask(survivors, rnd.denoise) if s.kind != "noise"])


def test_what_the_coordinator_holds_reveals_no_single_device():
    """Masked vectors look uniform modulo 2^32 and are unrelated to the device's values; for no device
    does the coordinator hold both its seed's shares and its masking key's shares; only the sum decodes."""
    n = 12
    rnd, parts, _ = run(n, cells=64, drop_after_share=2)
    for i, y in rnd.masked_inputs.items():
        top = (y.astype(np.uint64) >> 24).astype(np.int64)  # 256 bins of the high byte
        assert chisquare(np.bincount(top, minlength=256)).pvalue > 1e-4
        assert abs(np.corrcoef(y.astype(np.float64), parts[i].exact.astype(np.float64))[0, 1]) < 0.25
        # decoding one device's masked vector as if it were a sum fails the honesty checks
        with pytest.raises(Tampered):
            decode(rnd.contract, [int(v) for v in y], [1] * 64, 1)
    kinds = {}
    for sent in rnd.unmasked.values():
        for s in sent:
            kinds.setdefault(s.owner, set()).add(s.kind)
    assert not any({"seed", "key"} <= k for k in kinds.values())
    assert {o for o, k in kinds.items() if "key" in k} == {0, 1}  # only the dropped devices' keys
    assert {o for o, k in kinds.items() if "noise" in k} == set(rnd.denoise)  # and the denoised' noise seeds


def test_a_replayed_message_is_refused_and_the_first_one_stands():
    contract = SecureContract.for_cohort(PRIVACY, 1, 3)
    parts = [Participant("r", contract, {0: cells_of(np.random.default_rng(i))[0]}, sampler=no_noise)
             for i in range(3)]
    rnd = Round("r", contract, ["a", "b", "c"])
    first = parts[0].advertise()
    rnd.advertise("a", first)
    with pytest.raises(Replay):
        rnd.advertise("a", parts[1].advertise())
    assert rnd.advertised["a"] == first
    with pytest.raises(InvalidInput, match="stage 1 asked at stage 1"):
        parts[0].advertise()  # a device answers each stage once


def test_a_garbage_share_only_costs_its_receiver_and_a_wrong_unmasking_share_is_outvoted():
    n = 10
    rng = np.random.default_rng(3)
    contract = SecureContract.for_cohort(PRIVACY, 1, n)
    parts = [Participant("r", contract, cells_of(rng), sampler=no_noise) for _ in range(n)]
    ids = [f"d{i}" for i in range(n)]
    rnd = Round("r", contract, ids, sampler=no_noise)
    for d, p in zip(ids, parts):
        rnd.advertise(d, p.advertise())
    roster = rnd.close_advertise()
    for i, (d, p) in enumerate(zip(ids, parts)):
        sealed = p.share(roster)
        if i == 0:  # device 0 sends garbage to device 1
            sealed = [SealedShare(s.sender, s.receiver, b"\0" * 80) if s.receiver == 1 else s for s in sealed]
        rnd.share(d, sealed)
    rnd.close_share()
    with pytest.raises(InvalidInput, match="does not open"):
        parts[1].masked(rnd.inbox("d1"))  # device 1 refuses: it drops out, the round goes on without it
    for i in range(2, n):
        rnd.masked(ids[i], parts[i].masked(rnd.inbox(ids[i])))
    rnd.masked("d0", parts[0].masked(rnd.inbox("d0")))
    survivors = rnd.close_masked()
    for i in survivors:
        shares = parts[i].unmask(survivors, rnd.denoise)
        if i == 2:  # device 2 lies about its share of device 0's seed
            shares = [UnmaskShare(s.owner, s.kind, bytes(16)) if s.owner == 0 else s for s in shares]
        rnd.unmask(ids[i], shares)
    cells, count = rnd.result()
    want = exact_sum(parts, contract, survivors)
    assert count == 9 and cells[0].devices == 9
    p = contract.privacy
    assert cells[0].log_means["log_p50_ms"] == pytest.approx(p.log_bounds("log_p50_ms")[0] + want[1] / 9 * p.step_log("log_p50_ms"))


@pytest.mark.parametrize("bad", [np.zeros(3, dtype=np.uint32), np.zeros(5, dtype=np.int64)])
def test_a_malformed_masked_vector_is_refused(bad):
    contract = SecureContract.for_cohort(PRIVACY, 1, 3)
    rnd = Round("r", contract, ["a", "b", "c"])
    parts = [Participant("r", contract, {}, sampler=no_noise) for _ in range(3)]
    for d, p in zip("abc", parts):
        rnd.advertise(d, p.advertise())
    roster = rnd.close_advertise()
    for d, p in zip("abc", parts):
        rnd.share(d, p.share(roster))
    rnd.close_share()
    with pytest.raises(InvalidInput, match="uint32"):
        rnd.masked("a", bad)
    assert "a" not in rnd.masked_inputs


def test_poisoning_out_of_range_is_caught_and_in_range_is_bounded():
    """10 % of a cohort send extremes. Outside the protocol's range (what no honest device can send) the
    sum fails its checks and nothing is published; at the range's ends, the published log-mean moves by
    at most the poisoned share × the bounds' width (PrivacyParams.log_bounds), the bound the README states."""
    n = 30
    def huge(i, y):
        return ((y.astype(np.uint64) + 2 ** 20) % MODULUS).astype(np.uint32) if i < 3 else y
    with pytest.raises(RoundFailed, match="outside its grid|presence"):
        run(n, cells=1, tamper=huge)

    contract = SecureContract.for_cohort(PRIVACY, 1, n)
    _, parts, (honest, _) = run(n, cells=1, contract=contract)
    lo, hi = contract.privacy.log_bounds("log_p50_ms")
    extreme = {0: {s: hi + 5 for s in contract.statistics}}
    def at_the_top(i, y):
        if i >= 3:
            return y
        shift = (vector(contract, extreme) - parts[i].exact) % MODULUS
        return ((y.astype(np.uint64) + shift.astype(np.uint64)) % MODULUS).astype(np.uint32)
    _, _, (poisoned, _) = run(n, cells=1, contract=contract, tamper=at_the_top)
    moved = poisoned[0].log_means["log_p50_ms"] - honest[0].log_means["log_p50_ms"]
    assert 0 < moved <= 0.1 * (hi - lo) + 1e-9
    assert poisoned[0].clipped == pytest.approx(3)  # and the clip count shows it


def test_the_round_is_accounted_at_the_campaigns_epsilon_per_cell():
    contract = SecureContract.for_cohort(PrivacyParams(epsilon=1.0), 1, 100)
    assert contract.epsilon() == pytest.approx(1.0, rel=0.01)
    four = SecureContract.for_cohort(PrivacyParams(epsilon=1.0), 4, 100)
    assert four.epsilon() > 1.5 * contract.epsilon()  # four cells compose
    assert contract.sigma2 * contract.privacy.step_log("log_p50_ms") ** 2 == pytest.approx(
        (1 + 1 / 31) * PrivacyParams().noise_variance_log("log_p50_ms"), rel=0.01)  # the clip count: 3 %


@pytest.mark.parametrize("bad,match", [
    (dict(privacy=PrivacyParams(mechanism="laplace", delta=0.0)), "must be gaussian"),
    (dict(cells=0), "1..256 cells"), (dict(cohort=1, min_survivors=1), "2..5000"),
    (dict(min_survivors=11), "minimum survivors 11"),
])
def test_a_malformed_contract_is_refused(bad, match):
    args = dict(privacy=PRIVACY, cells=1, cohort=10, min_survivors=7) | bad
    with pytest.raises(InvalidInput, match=match):
        SecureContract(**args).check()
    with pytest.raises(InvalidInput, match="malformed"):
        SecureContract.from_dict({"cells": 1})
