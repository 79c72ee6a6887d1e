"""Adaptive campaigns end to end: a coordinator process, a simulated fleet and local agents, the CLI."""

import math

import pytest

from tests.conftest import register, run_cli, stop_pid
from tests.integration.test_campaign import MODELS, campaign_state, enrolled, start_agents, wait_for
from tests.integration.test_simulated_fleet import simulate

pytestmark = pytest.mark.slow

def test_an_adaptive_campaign_on_a_simulated_fleet(coordinator, prepared_zoo, tmp_path):
    names = sorted(prepared_zoo)
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, names)
    env = coordinator.env()
    fleet = simulate(coordinator, 16, 240, tmp_path / "fleet.log")
    try:
        wait_for(lambda: enrolled(coordinator, 16), 60, "16 simulated agents")
        bad = run_cli("campaign", "create", "--models", *names, "--budget", "20", env=env)
        assert bad.returncode == 2 and "--budget applies to an adaptive campaign: add --adaptive" in bad.stderr
        bad = run_cli("campaign", "create", "--models", *names, "--adaptive", env=env)
        assert bad.returncode == 2 and "needs --budget" in bad.stderr
        bad = run_cli("campaign", "create", "--models", *names, "--adaptive", "--budget", "0", env=env)
        assert bad.returncode == 2 and "--budget 0 is not a number of measurements in 1..4294967295" in bad.stderr
        made = run_cli("campaign", "create", "--models", *names, "--adaptive", "--budget", "30",
                       "--selector", "label.simulated=true", "--name", "adaptive-sim", env=env)
        assert made.returncode == 0, made.stderr
        assert "adaptive: 0 rounds, 0/30 measurements" in made.stdout
        with coordinator.admin() as admin:
            cid = admin.list_campaigns()[-1].campaign_id
        done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 180,
                        "the adaptive campaign")
        status = run_cli("campaign", "status", str(cid), env=env)
    finally:
        stop_pid(fleet)
    assert done.counts.done + done.counts.failed == 30 and done.counts.cancelled == 0
    assert "budget of 30" in done.stop_reason
    rounds = list(done.rounds)
    assert [r.round for r in rounds] == list(range(1, len(rounds) + 1)) and len(rounds) >= 4
    assert [r.measurements for r in rounds][:3] == [0, 8, 16] and rounds[-1].measurements == 30
    assert sum(r.picked for r in rounds) == 30 and rounds[-1].picked == 0
    assert math.isnan(rounds[0].validation_mape)
    assert all(math.isfinite(r.validation_mape) and r.validation_mape >= 0 for r in rounds[1:])
    assert len(done.by_hardware) >= 5  # a round spreads over hardware classes
    assert status.returncode == 0 and "round   2: after     8 measurements, validation MAPE" in status.stdout


def test_an_adaptive_campaign_on_local_agents(coordinator, prepared_zoo, tmp_path):
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, MODELS)
    procs = start_agents(coordinator, tmp_path, n=2)
    try:
        wait_for(lambda: enrolled(coordinator, 2), 60, "two agents to enroll")
        env = coordinator.env()
        made = run_cli("campaign", "create", "--models", *MODELS, "--adaptive", "--budget", "3",
                       "--iterations", "20", "--duration", "0.2", "--threads", "1", env=env)
        assert made.returncode == 0, made.stderr
        with coordinator.admin() as admin:
            cid = admin.list_campaigns()[-1].campaign_id
        done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 180,
                        "the adaptive campaign on local agents")
    finally:
        for p in procs:
            stop_pid(p)
    # Both agents are one hardware class (this machine): a round of 3 over 4 models, each run by one of them
    assert (done.counts.done, done.counts.failed) == (3, 0), list(done.failures)
    assert len(done.by_hardware) == 1 and "budget of 3" in done.stop_reason
    assert [(r.measurements, r.picked) for r in done.rounds] == [(0, 3), (3, 0)]
