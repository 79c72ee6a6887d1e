"""A coordinator process and two agent processes on 127.0.0.1: campaigns complete, even across a restart."""

import subprocess
import sys
import time

import pytest

from edgeatlas.agent.privacy.ledger import Budget, Ledger
from edgeatlas.agent.results import LocalResults
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Setting

from tests.conftest import cli_env, register, stop_pid

pytestmark = pytest.mark.slow

MODELS = ["mlp-s", "resnet-s", "mobilenet-s", "transformer-s"]


def start_agents(coordinator, tmp_path, n=2, extra=()):
    procs = []
    for i in range(n):
        log = open(tmp_path / f"agent-{i}.log", "ab")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edgeatlas", "agent", "run", "--coordinator", coordinator.address,
             "--state-dir", str(tmp_path / f"agent-{i}"), "--name", f"agent-{i}", *extra],
            stdout=log, stderr=subprocess.STDOUT, env=cli_env(EDGEATLAS_ENROLL_TOKEN=coordinator.enroll_token)))
        log.close()
    return procs


def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def enrolled(coordinator, n):
    with coordinator.admin() as admin:
        return len(admin.list_agents()) >= n


def campaign_state(coordinator, cid):
    with coordinator.admin() as admin:
        return admin.campaign(cid)


@pytest.fixture
def fleet(coordinator, prepared_zoo, tmp_path):
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, MODELS)
    procs = start_agents(coordinator, tmp_path)
    try:
        wait_for(lambda: enrolled(coordinator, 2), 60, "two agents to enroll")
        yield coordinator, procs
    finally:
        for p in procs:
            stop_pid(p)
        logs = "".join((tmp_path / f"agent-{i}.log").read_text() for i in range(len(procs)))
        assert "Traceback" not in logs, logs


def create(coordinator, duration_s=0.3):
    with coordinator.admin() as admin:
        return admin.create_campaign(MODELS, {}, 1, Setting(threads=1),
                                     RunParams(warmup_iterations=5, min_iterations=20, min_duration_s=duration_s)
                                     ).campaign_id


def test_campaign_completes_and_fills_the_heatmap(fleet, tmp_path):
    coordinator, _ = fleet
    cid = create(coordinator)
    done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 120, "the campaign")
    assert (done.counts.done, done.counts.failed) == (8, 0)
    with coordinator.admin() as admin:
        cells = admin.heatmap().cells
        agents = admin.list_agents()
    assert sorted(c.model_name for c in cells) == sorted(MODELS)
    for cell in cells:  # every value the coordinator holds was noised on a device
        assert cell.source == "fleet" and cell.privacy == "ldp gaussian ε=1 δ=1e-06"
        assert cell.n_devices == 2 and cell.n_reports == 2 and not cell.suppressed
        for name in ("latency_p50_ms", "latency_p99_ms", "latency_mean_ms", "throughput_ips"):
            m = cell.metrics[name]
            assert 0 < m.low <= m.value <= m.high and m.n == 2
        assert cell.setting.threads == 1 and cell.setting.runtime_version
    assert all(a.online and a.tasks_done == 4 for a in agents)
    for i in range(2):  # and accounted: one ledger entry per report; exact values only on the device
        ledger = Ledger(tmp_path / f"agent-{i}" / "privacy-ledger.db", Budget())
        assert [e["mode"] for e in ledger.entries()] == ["ldp"] * 4
        assert 0 < ledger.spent() < 4 * 1.0  # four ε = 1 releases compose to less than 4
        ledger.close()
        local = LocalResults(tmp_path / f"agent-{i}" / "results.jsonl").all()
        assert len(local) == 4 and all(r["stats"]["p50_ms"] <= r["stats"]["p99_ms"] for r in local)


def test_an_agent_over_its_budget_declines_and_says_why(coordinator, prepared_zoo, tmp_path):
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, MODELS[:2])
    procs = start_agents(coordinator, tmp_path, n=1, extra=("--privacy-budget", "1.5"))
    try:
        wait_for(lambda: enrolled(coordinator, 1), 60, "the agent to enroll")
        with coordinator.admin() as admin:
            cid = admin.create_campaign(MODELS[:2], {}, 1, Setting(threads=1),
                                        RunParams(warmup_iterations=1, min_iterations=5, min_duration_s=0.05),
                                        privacy=PrivacyParams(mechanism="laplace", epsilon=1.0, delta=0.0)
                                        ).campaign_id
        done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 120, "the campaign")
    finally:
        for p in procs:
            stop_pid(p)
    assert (done.counts.done, done.counts.declined) == (1, 1)  # 1 + 1 > 1.5
    assert any("declined: privacy budget ε ≤ 1.5" in f for f in done.failures)


def test_campaign_completes_across_a_coordinator_restart(fleet):
    coordinator, _ = fleet
    cid = create(coordinator, duration_s=0.8)
    wait_for(lambda: campaign_state(coordinator, cid).counts.done >= 2, 60, "the first reports")
    coordinator.kill()  # SIGKILL mid-campaign: no chance to flush anything
    time.sleep(2)
    coordinator.start()  # same database, same port
    done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 180,
                    "the campaign after the restart")
    assert done.counts.done == 8 and done.counts.failed == 0
    with coordinator.admin() as admin:
        cells = admin.heatmap().cells
    assert sum(c.n_reports for c in cells) == 8  # every task counted exactly once


def test_campaign_completes_on_postgresql(postgres, prepared_zoo, tmp_path):
    from tests.conftest import CoordinatorProcess

    coordinator = CoordinatorProcess(tmp_path, tmp_path / "unused.db",
                                     db_url=postgres.create_database("campaign_pg")).start()
    try:
        with coordinator.admin() as admin:
            register(admin, prepared_zoo, MODELS[:2])
        procs = start_agents(coordinator, tmp_path)
        try:
            wait_for(lambda: enrolled(coordinator, 2), 60, "two agents to enroll")
            with coordinator.admin() as admin:
                cid = admin.create_campaign(MODELS[:2], {}, 1, Setting(threads=1),
                                            RunParams(warmup_iterations=2, min_iterations=10, min_duration_s=0.1)
                                            ).campaign_id
            done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 120,
                            "the campaign on PostgreSQL")
        finally:
            for p in procs:
                stop_pid(p)
        with coordinator.admin() as admin:
            cells = admin.heatmap().cells
    finally:
        coordinator.stop()
    assert done.counts.done == 4 and not (tmp_path / "unused.db").exists()
    assert sorted(c.model_name for c in cells) == sorted(MODELS[:2]) and all(c.n_devices == 2 for c in cells)


def test_campaign_completes_across_an_agent_killed_mid_task(coordinator, prepared_zoo, tmp_path):
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, MODELS)
    agent, = start_agents(coordinator, tmp_path, n=1)
    try:
        wait_for(lambda: enrolled(coordinator, 1), 60, "the agent to enroll")
        cid = create(coordinator, duration_s=1.0)
        wait_for(lambda: campaign_state(coordinator, cid).counts.done >= 1, 60, "a first report")
        agent.kill()  # SIGKILL, most likely mid-run: no chance to tidy up
        agent.wait()
        agent, = start_agents(coordinator, tmp_path, n=1)  # the same state directory
        done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 120,
                        "the campaign after the agent's restart")
    finally:
        stop_pid(agent)
    assert (done.counts.done, done.counts.failed) == (4, 0)
    with coordinator.admin() as admin:
        cells = admin.heatmap().cells
        agents = admin.list_agents()
    assert len(agents) == 1  # it came back as itself, not as a new device
    assert sum(c.n_reports for c in cells) == 4  # each task counted once
    assert list((tmp_path / "agent-0" / "outbox").glob("*.pb")) == []  # the outbox drained
