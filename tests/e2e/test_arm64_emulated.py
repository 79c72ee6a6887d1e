"""The agent as an arm64 program: Debian's arm64 Python under qemu-user on this x86-64 machine probes a
Raspberry Pi 4's CPU, runs an ONNX Runtime benchmark and reports to an x86-64 coordinator on 127.0.0.1.
Its spec sheet and heat-map column say `emulated`: the timings are this machine's, not a Pi's."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from edgeatlas.protos.records import RunParams, Setting

from tests.conftest import REPO, cli_env, register, stop_pid
from tests.integration.test_campaign import campaign_state, wait_for

pytestmark = pytest.mark.slow
PYTHON = REPO / "build" / "arm64" / "python"


@pytest.fixture(scope="module")
def arm64_python():
    built = subprocess.run([str(REPO / "scripts" / "arm64-emulated")], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout + built.stderr  # scripts/test installs qemu-user-static
    return PYTHON


def test_probe_runs_as_arm64_and_says_it_is_emulated(arm64_python):
    proc = subprocess.run([str(arm64_python), "-m", "edgeatlas", "agent", "spec", "--format", "json"],
                          capture_output=True, text=True, timeout=300, env=cli_env())
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)
    assert spec["os"]["machine"] == "aarch64" and spec["cpu"]["arch"] == "arm64"
    assert spec["cpu"]["clusters"] == [{"core": "cortex-a72", "cores": 4, "max_ghz": 1.5}]
    assert spec["soc"] == "Broadcom BCM2711" and spec["emulated"] == "qemu-aarch64"
    assert "CPUExecutionProvider" in spec["runtimes"]["onnxruntime"]["providers"]


def test_emulated_agent_benchmarks_and_reports_to_an_x86_coordinator(arm64_python, coordinator, prepared_zoo,
                                                                   tmp_path):
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
    log = open(tmp_path / "agent.log", "wb")
    agent = subprocess.Popen([str(arm64_python), "-m", "edgeatlas", "agent", "run", "--coordinator",
                              coordinator.address, "--state-dir", str(tmp_path / "state"), "--name", "pi4-emulated",
                              "--label", "emulated=true"], stdout=log, stderr=subprocess.STDOUT,
                             env=cli_env(EDGEATLAS_ENROLL_TOKEN=coordinator.enroll_token))
    try:
        def enrolled():
            with coordinator.admin() as admin:
                return next(iter(admin.list_agents()), None)
        info = wait_for(enrolled, 240, "the emulated agent to enroll")
        assert info.hardware_class == "cpu:cortex-a72x4-emulated"
        assert json.loads(info.spec_json)["os"]["machine"] == "aarch64"
        with coordinator.admin() as admin:
            cid = admin.create_campaign(["mlp-s"], {"label.emulated": "true"}, 1, Setting(threads=1),
                                        RunParams(warmup_iterations=2, min_iterations=10, min_duration_s=0.2),
                                        name="arm64").campaign_id
        started = time.monotonic()
        done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 600,
                        "the emulated benchmark")
    finally:
        stop_pid(agent)
        log.close()
    assert (done.counts.done, done.counts.failed) == (1, 0), (tmp_path / "agent.log").read_text()[-2000:]
    with coordinator.admin() as admin:
        cells = [c for c in admin.heatmap().cells if c.hardware_class == "cpu:cortex-a72x4-emulated"]
    assert len(cells) == 1 and cells[0].n_reports == 1 and cells[0].model_name == "mlp-s"
    assert cells[0].metrics["latency_p50_ms"].value > 0  # valid: outputs matched the x86 reference run
    print(f"emulated arm64 benchmark finished in {time.monotonic() - started:.0f} s")
