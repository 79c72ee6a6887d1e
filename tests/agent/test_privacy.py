"""Local DP on the device: calibration, exact samplers, the ledger and its accountant."""

import math
from fractions import Fraction

import numpy as np
import pytest
from dp_accounting import dp_event, rdp

from edgeatlas.agent.privacy.ledger import Budget, BudgetExceeded, Ledger, spent_epsilon
from edgeatlas.protos.noise import discrete_gaussian, discrete_laplace, randomized_round
from edgeatlas.agent.privacy.release import release, to_grid
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.privacy import ORDERS, PrivacyParams, rdp_to_epsilon, rho_for, zcdp_delta
from edgeatlas.protos.records import LatencyStats

GAUSS = PrivacyParams(mechanism="gaussian", epsilon=1.0, delta=1e-6)
LAPLACE = PrivacyParams(mechanism="laplace", epsilon=2.0, delta=0.0)


def test_calibrated_rho_meets_delta_exactly():
    for eps in (0.5, 1, 2, 4, 8):
        rho = rho_for(eps, 1e-6)
        assert zcdp_delta(rho, eps) <= 1e-6 < zcdp_delta(rho * 1.01, eps)


def test_accountant_matches_googles_rdp_accountant():
    z, n = 3.0, 25  # 25 gaussian releases of noise multiplier 3
    ours = rdp_to_epsilon({a: n * a / (2 * z * z) for a in ORDERS}, 1e-6)
    acct = rdp.RdpAccountant(orders=list(ORDERS))
    acct.compose(dp_event.GaussianDpEvent(z), n)
    assert ours == pytest.approx(acct.get_epsilon(1e-6), rel=1e-6)


def test_per_report_epsilon_holds_under_googles_accountant():
    # One gaussian report as ρ-zCDP is a Gaussian of noise multiplier 1/sqrt(2ρ).
    acct = rdp.RdpAccountant(orders=[1 + i / 10 for i in range(1, 400)])
    acct.compose(dp_event.GaussianDpEvent(1 / math.sqrt(2 * GAUSS.rho())))
    assert acct.get_epsilon(GAUSS.delta) == pytest.approx(GAUSS.epsilon, rel=0.02)
    assert acct.get_epsilon(GAUSS.delta) >= GAUSS.epsilon * 0.999


def test_samplers_have_the_right_spread():
    lap = np.array([discrete_laplace(Fraction(40)) for _ in range(20000)])
    q = math.exp(-1 / 40)
    assert abs(lap.mean()) < 1.5 and lap.var() == pytest.approx(2 * q / (1 - q) ** 2, rel=0.06)
    gauss = np.array([discrete_gaussian(Fraction(30) ** 2) for _ in range(20000)])
    assert abs(gauss.mean()) < 1.0 and gauss.std() == pytest.approx(30, rel=0.03)
    rounded = np.array([randomized_round(Fraction(7, 4)) for _ in range(20000)])
    assert set(rounded) == {1, 2} and rounded.mean() == pytest.approx(1.75, abs=0.02)


def test_values_are_clipped_to_public_bounds():
    assert to_grid(math.log(1e9), GAUSS, "log_p50_ms") == GAUSS.steps
    assert to_grid(math.log(1e-9), GAUSS, "log_p50_ms") == 0


def test_release_carries_only_noised_logs_of_the_asked_statistics():
    stats = LatencyStats(2.0, 2.5, 3.0, 2.2, 0.2, 1.5, 4.0, 450.0, 100, 0.2)
    r = release(stats, GAUSS)
    assert set(r.values) == set(GAUSS.statistics)
    assert all(math.isfinite(v) for v in r.values.values())


@pytest.mark.parametrize("params", [
    PrivacyParams(epsilon=0), PrivacyParams(epsilon=100), PrivacyParams(mechanism="laplace", delta=1e-6),
    PrivacyParams(delta=0.5), PrivacyParams(statistics=("log_p42_ms",)), PrivacyParams(bounds_ms=(5, 1)),
    PrivacyParams(mechanism="randomized-response")])
def test_bad_privacy_params_are_refused(params):
    with pytest.raises(InvalidInput):
        params.check()


def test_ledger_composes_persists_and_refuses(tmp_path):
    budget = Budget(epsilon=4.0, delta=1e-6, window_s=3600)
    ledger = Ledger(tmp_path / "ledger.db", budget)
    now = 1_000_000.0
    made = 0
    while True:
        try:
            ledger.check(LAPLACE, now)
        except BudgetExceeded as exc:
            assert "declined" in str(exc) and "ε ≤ 4" in str(exc)
            break
        ledger.record(f"r{made}", made, LAPLACE, now)
        made += 1
    assert made == 2  # pure composition: 2 + 2 = 4, a third would be 6
    ledger.record("t0", 99, None, now)  # a trusted release is recorded, not counted
    ledger.close()
    again = Ledger(tmp_path / "ledger.db", budget)  # after a restart
    assert again.spent(now) == pytest.approx(4.0)
    assert [e["mode"] for e in again.entries()] == ["ldp", "ldp", "trusted"]
    assert again.spent(now + 3601) == 0.0  # the window rolled past them
    again.check(LAPLACE, now + 3601)


def test_gaussian_reports_compose_sublinearly():
    ten = spent_epsilon([GAUSS] * 10, 1e-6)
    assert GAUSS.epsilon * 2 < ten < GAUSS.epsilon * 10


def test_a_secure_round_is_recorded_composed_and_refused_like_a_report(tmp_path):
    from edgeatlas.protos.secure import SecureContract
    budget = Budget(epsilon=2.0, delta=1e-6, window_s=3600)
    ledger = Ledger(tmp_path / "ledger.db", budget)
    one = SecureContract.for_cohort(PrivacyParams(epsilon=1.0), 1, 20)
    three = SecureContract.for_cohort(PrivacyParams(epsilon=1.0), 3, 20)
    now = 1_000_000.0
    ledger.record("round-1", 0, one, now)
    ledger.record("r1", 1, PrivacyParams(epsilon=1.0), now)  # an ldp report beside it
    assert ledger.spent(now) == pytest.approx(spent_epsilon([one, PrivacyParams(epsilon=1.0)], 1e-6))
    assert ledger.spent(now) == pytest.approx(spent_epsilon([PrivacyParams(epsilon=1.0)] * 2, 1e-6), rel=0.01)
    with pytest.raises(BudgetExceeded):
        ledger.check(three, now)  # five cells in all: ε ≈ 2.4 > 2
    ledger.close()
    again = Ledger(tmp_path / "ledger.db", budget)
    assert [e["mode"] for e in again.entries()] == ["secure", "ldp"]
    assert again.entries()[0]["params"]["cohort"] == 20
