"""Secure campaigns end to end: a coordinator process, real agent processes and a simulated fleet on
127.0.0.1. The reports carry no values; a cohort's round sums them and the cells say `secure`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
import yaml

from edgeatlas.agent.privacy.ledger import Budget, Ledger
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunParams, Setting

from tests.conftest import CoordinatorProcess, cli_env, register, stop_pid
from tests.integration.test_campaign import start_agents, wait_for

pytestmark = pytest.mark.slow

MODELS = ["mlp-s", "resnet-s"]
SECURE = PrivacyParams(mode="secure", cohort_min=3)


def cells_of(c: CoordinatorProcess, source: str):
    with c.admin() as admin:
        return [cell for cell in admin.heatmap().cells if cell.source == source]


@pytest.fixture
def secure_coordinator(tmp_path):
    c = CoordinatorProcess(tmp_path, tmp_path / "coordinator.db", k_anonymity=3,
                           extra_args=("--secure-stage-timeout", "20")).start()
    yield c
    c.stop()


def test_three_real_agents_publish_secure_cells_and_spend_their_epsilon_once(secure_coordinator, prepared_zoo,
                                                                             tmp_path):
    c = secure_coordinator
    with c.admin() as admin:
        register(admin, prepared_zoo, MODELS)
    procs = start_agents(c, tmp_path, n=3)
    try:
        wait_for(lambda: len(c.admin().list_agents()) >= 3, 60, "three agents to enroll")
        with c.admin() as admin:
            cid = admin.create_campaign(MODELS, {}, 1, Setting(threads=1),
                                        RunParams(warmup_iterations=2, min_iterations=10, min_duration_s=0.05),
                                        privacy=SECURE).campaign_id
        cells = wait_for(lambda: len(found := cells_of(c, "fleet")) == 2 and found, 180, "two secure cells")
    finally:
        for p in procs:
            stop_pid(p)
    logs = "".join((tmp_path / f"agent-{i}.log").read_text() for i in range(3))
    assert "Traceback" not in logs, logs
    for cell in cells:
        assert cell.privacy == "secure gaussian ε=1 δ=1e-06" and cell.n_devices == 3 and not cell.suppressed
        m = cell.metrics["latency_p50_ms"]
        assert m.n == 3 and 0 < m.low <= m.value <= m.high
    with c.admin() as admin:
        assert admin.campaign(cid).status == "done"
    # the coordinator never held a value of these runs: the reports are empty, only the sums reached cells
    db = sqlite3.connect(c.db_path)
    rows = db.execute("SELECT privacy_mode, stats_json, released_json FROM report").fetchall()
    assert rows and all(r == ("secure", "{}", "{}") for r in rows)
    for i in range(3):  # one round, in the ledger before it left; nothing held any more
        ledger = Ledger(tmp_path / f"agent-{i}" / "privacy-ledger.db", Budget())
        entries = ledger.entries()
        ledger.close()
        assert [e["mode"] for e in entries] == ["secure"] and entries[0]["params"]["cells"] == 2
        assert json.loads((tmp_path / f"agent-{i}" / "held.json").read_text()) == []


def test_a_simulated_cohort_takes_part_through_the_same_protocol(secure_coordinator, prepared_zoo, tmp_path):
    c = secure_coordinator
    with c.admin() as admin:
        register(admin, prepared_zoo, MODELS)
    catalog = tmp_path / "one-device.yaml"  # one product: the fleet is one hardware class
    catalog.write_text(yaml.safe_dump([{"schema": "edgeatlas.spec/v1", "name": "Raspberry Pi 5",
                                        "device_class": "board",
                                        "cpu": {"vendor": "broadcom", "model": "BCM2712", "arch": "arm64",
                                                "cores": 4, "threads": 4, "max_ghz": 2.4, "simd": "neon",
                                                "clusters": [{"cores": 4, "core": "cortex-a76", "max_ghz": 2.4}]},
                                        "memory": {"size_gb": 8, "bandwidth_gbs": 17.1}}]))
    env = cli_env(EDGEATLAS_COORDINATOR=c.address, EDGEATLAS_ENROLL_TOKEN=c.enroll_token)
    fleet = subprocess.Popen([sys.executable, "-m", "edgeatlas", "fleet", "simulate", "--agents", "5",
                              "--catalog", str(catalog), "--duration", "120"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: len(c.admin().list_agents()) >= 5, 60, "five simulated agents")
        with c.admin() as admin:
            admin.create_campaign(MODELS, {"label.simulated": "true"}, 1, Setting(), RunParams(),
                                  privacy=PrivacyParams(mode="secure", cohort_min=5))
        cells = wait_for(lambda: len(found := cells_of(c, "simulated")) == 2 and found, 120, "two simulated cells")
    finally:
        stop_pid(fleet)
    for cell in cells:
        assert cell.privacy == "secure gaussian ε=1 δ=1e-06, simulated" and cell.n_devices == 5
        assert cell.metrics["latency_p50_ms"].n == 5
