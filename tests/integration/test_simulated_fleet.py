"""`edgeatlas fleet simulate`: virtual agents over the real protocol, marked simulated end to end."""

import json
import random
import subprocess
import sys

import pytest

from edgeatlas.agent.simulate import load_catalog, synthetic_latency_ms
from edgeatlas.protos.records import RunParams, Setting

from tests.conftest import cli_env, register, run_cli, stop_pid
from tests.integration.test_campaign import campaign_state, wait_for

pytestmark = pytest.mark.slow


def simulate(coordinator, agents: int, duration_s: int, log_path) -> subprocess.Popen:
    """`fleet simulate` against the coordinator, its output in log_path; stop it with stop_pid."""
    env = coordinator.env()
    env["EDGEATLAS_ENROLL_TOKEN"] = coordinator.enroll_token
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "edgeatlas", "fleet", "simulate", "--agents", str(agents),
                                 "--duration", str(duration_s)], stdout=log, stderr=subprocess.STDOUT, env=env)


def test_simulated_fleet_populates_the_heatmap_marked_simulated(coordinator, prepared_zoo, tmp_path):
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s", "resnet-s"])
    fleet = simulate(coordinator, 40, 120, tmp_path / "fleet.log")
    try:
        def enrolled():
            with coordinator.admin() as admin:
                return len(admin.list_agents()) == 40
        wait_for(enrolled, 60, "40 simulated agents")
        with coordinator.admin() as admin:
            cid = admin.create_campaign(["mlp-s", "resnet-s"], {"label.simulated": "true"}, 1, Setting(),
                                        RunParams()).campaign_id
        done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 120,
                        "the simulated campaign")
    finally:
        stop_pid(fleet)
    assert (done.counts.done, done.counts.failed) == (80, 0)
    with coordinator.admin() as admin:
        cells = admin.heatmap().cells
        agents = admin.list_agents()
    assert all(a.simulated and json.loads(a.spec_json)["simulated"] is True for a in agents)
    assert {c.source for c in cells} == {"simulated"}  # never mixed into fleet cells
    assert all(c.privacy == "simulated (synthetic)" and c.setting.runtime == "simulated" for c in cells)
    classes = {c.hardware_class for c in cells}
    assert len(classes) >= 7 and "gpu:nvidia-rtx-2080-ti" in classes and "cpu:cortex-a76x4" in classes
    assert sum(c.n_reports for c in cells) == 80


def test_fleet_simulate_needs_a_token_and_a_sane_count():
    proc = run_cli("fleet", "simulate", "--agents", "3", "--coordinator", "127.0.0.1:9")
    assert proc.returncode == 2 and "--token-file" in proc.stderr
    proc = run_cli("fleet", "simulate", "--agents", "0", "--coordinator", "127.0.0.1:9",
                   env=cli_env(EDGEATLAS_ENROLL_TOKEN="x"))
    assert proc.returncode == 2 and "--agents" in proc.stderr


def test_synthetic_model_orders_devices_sensibly():
    catalog = {s.name: s for s in load_catalog()}
    rng = random.Random(0)
    summary = {"flops": 2e8, "ops": {"Conv": 20, "Relu": 20}}
    pi4 = synthetic_latency_ms(catalog["Raspberry Pi 4"], summary, 1, rng)[1]
    xeon = synthetic_latency_ms(catalog["Server with Intel Xeon Gold 6240"], summary, 1, rng)[1]
    target, gpu = synthetic_latency_ms(catalog["NVIDIA GeForce RTX 2080 Ti"], summary, 1, rng)
    assert target == "gpu" and xeon < pi4 and gpu > 0
