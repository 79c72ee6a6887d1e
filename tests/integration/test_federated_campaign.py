"""A federated-train campaign end to end on Flower's deployment engine: the coordinator's SuperLink, two
opted-in agents with their SuperNodes, real ONNX measurements kept on the devices, a new predictor version."""

import json

import psutil
import pytest

from tests.conftest import CoordinatorProcess, register, run_cli, stop_pid
from tests.integration.test_campaign import MODELS, campaign_state, enrolled, start_agents, wait_for

pytestmark = pytest.mark.slow


def flower_processes(under: str) -> list[psutil.Process]:
    """Running Flower processes whose command line mentions `under` (this test's folders)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "flower-" in cmd and under in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def test_a_federated_campaign_trains_a_predictor_version(tmp_path, prepared_zoo):
    from edgeatlas.console.imports import import_nasbench201

    coordinator = CoordinatorProcess(tmp_path, tmp_path / "coordinator.db",
                                     extra_args=("--superlink", "127.0.0.1:0")).start()
    agents = []
    try:
        superlink = json.loads((tmp_path / "ready.json").read_text())["superlink"]
        assert superlink.startswith("127.0.0.1:")
        with coordinator.admin() as admin:
            import_nasbench201(admin, None, 8, tmp_path / "nb201")  # public cells: to score the version on
            register(admin, prepared_zoo, MODELS)
        env = coordinator.env()
        agents = start_agents(coordinator, tmp_path, n=2, extra=("--federated", "--superlink", superlink))
        wait_for(lambda: enrolled(coordinator, 2), 60, "two agents to enroll")
        made = run_cli("campaign", "create", "--models", *MODELS, "--iterations", "20", "--duration", "0.2",
                       "--threads", "1", env=env)
        assert made.returncode == 0, made.stderr
        with coordinator.admin() as admin:
            measure = admin.list_campaigns()[-1].campaign_id
        wait_for(lambda: campaign_state(coordinator, measure).status == "done", 180, "the measurements")

        for args, message in ((("--models", MODELS[0]), "no --models or --adaptive"),
                              (("--rounds", "0"), "--rounds 0 must be a positive number"),
                              (("--epsilon", "-1"), "--epsilon -1.0 must be a positive number")):
            bad = run_cli("campaign", "create", "--kind", "federated-train", *args, env=env)
            assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        bad = run_cli("campaign", "create", "--models", MODELS[0], "--rounds", "2", env=env)
        assert bad.returncode == 2 and "--rounds applies to --kind federated-train" in bad.stderr
        with coordinator.admin() as admin:
            before = len(admin.list_campaigns())

        made = run_cli("campaign", "create", "--kind", "federated-train", "--devices", "2", "--rounds", "2",
                       "--epsilon", "4", "--name", "fl", env=env)
        assert made.returncode == 0, made.stderr
        assert "federated-train, running, 0/2 rounds on 2 devices" in made.stdout
        with coordinator.admin() as admin:
            campaigns = admin.list_campaigns()
            assert len(campaigns) == before + 1
            cid = campaigns[-1].campaign_id
        done = wait_for(lambda: (c := campaign_state(coordinator, cid)).status == "done" and c, 420,
                        "the federated campaign")
        status = run_cli("campaign", "status", str(cid), env=env)
        versions = run_cli("predictor", "versions", env=env)
    finally:
        for proc in agents:
            stop_pid(proc)
        coordinator.stop()
    assert done.predictor_version >= 1, done.stop_reason
    rounds = list(done.federated_rounds)
    assert [r.round for r in rounds] == [1, 2]
    # four measurements per device: whether a round's loss falls is up to DP-SGD's noise (test_federated.py
    # checks that it falls, on devices with more data)
    assert all(0 < r.loss_before < 100 and 0 < r.loss_after < 100 for r in rounds)
    assert 0 < rounds[0].epsilon_measurement < rounds[1].epsilon_measurement <= 4 * 1.01
    assert 0 < rounds[0].epsilon_device < rounds[1].epsilon_device
    assert status.returncode == 0 and "round   2: device loss" in status.stdout
    assert versions.returncode == 0
    line = [v for v in versions.stdout.splitlines() if v.startswith(f"v{done.predictor_version} ")][0]
    assert f"federated campaign {cid}" in line and "per measurement" in line and "gnn MAPE" in line
    # Every SuperNode and the SuperLink (its folder is under tmp_path: TMPDIR), with their superexec children,
    # stopped with their agent / coordinator
    assert list(tmp_path.glob("edgeatlas-superlink-*")) and flower_processes(str(tmp_path)) == []
