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

PI5 = {"schema": "edgeatlas.spec/v1", "name": "Raspberry Pi 5", "device_class": "board",
       "cpu": {"vendor": "broadcom", "model": "BCM2712", "arch": "arm64", "cores": 4, "threads": 4,
               "max_ghz": 2.4, "simd": "neon", "clusters": [{"cores": 4, "core": "cortex-a76", "max_ghz": 2.4}]},
       "memory": {"size_gb": 8, "bandwidth_gbs": 17.1}}


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
                                        RunParams(warmup_iterations=5, min_iterations=64, min_duration_s=0.2),
                                        privacy=SECURE).campaign_id
        cells = wait_for(lambda: len(found := cells_of(c, "fleet")) == 2 and found, 180, "two secure cells")
    finally:
        for p in procs:
            stop_pid(p)
    logs = "".join((tmp_path / f"agent-{i}.log").read_text() for i in range(3))
    assert "Traceback" not in logs, logs
    # a run LoadGen judged invalid is held by nobody: a cell's devices are those that held a valid value
    assert all(c.privacy == "secure gaussian ε=1 δ=1e-06" and c.suppressed == (c.n_devices < 3) for c in cells)
    assert any(not c.suppressed for c in cells)
    for cell in [c for c in cells if not c.suppressed]:
        m = cell.metrics["latency_p50_ms"]
        assert m.n == cell.n_devices == 3 and 0 < m.low <= m.value <= m.high
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
        assert [e["mode"] for e in entries] == ["secure"] and entries[0]["params"]["cells"] == 2  # one round
        assert json.loads((tmp_path / f"agent-{i}" / "held.json").read_text()) == []


def test_a_simulated_cohort_takes_part_through_the_same_protocol(secure_coordinator, prepared_zoo, tmp_path):
    c = secure_coordinator
    with c.admin() as admin:
        register(admin, prepared_zoo, MODELS)
    catalog = tmp_path / "one-device.yaml"  # one product: the fleet is one hardware class
    catalog.write_text(yaml.safe_dump([PI5]))
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



def test_over_the_wire_a_dropout_a_replay_and_a_lie_get_clear_statuses(secure_coordinator, prepared_zoo):
    """Four devices speak the protocol by hand: a wrong round is NOT_FOUND, a lie about what it holds is
    INVALID_ARGUMENT and stores nothing (the honest retry is taken), a replayed stage FAILED_PRECONDITION,
    and a device that vanishes after key exchange leaves a sum of the other three."""
    import asyncio
    import random

    import grpc

    from edgeatlas import __version__
    from edgeatlas.agent.privacy.release import statistic_logs
    from edgeatlas.agent.report import completed, new_report
    from edgeatlas.agent.secagg import drive_async, participant_for, stages
    from edgeatlas.agent.simulate import synthetic_stats
    from edgeatlas.protos import PROTOCOL_VERSION, convert
    from edgeatlas.protos.records import Fidelity, RunResult, ScenarioOutcome
    from edgeatlas.protos.wire import bearer
    from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

    c = secure_coordinator
    with c.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])

    async def enroll(stub, i: int):
        resp = await stub.Enroll(agent_pb2.EnrollRequest(
            protocol_version=PROTOCOL_VERSION, enrollment_token=c.enroll_token, spec_json=json.dumps(PI5),
            agent_version=__version__, name=f"hand-{i}", simulated=True), timeout=30)
        return bearer(resp.credential)

    def campaign():
        with c.admin() as admin:
            admin.create_campaign(["mlp-s"], {}, 1, Setting(), RunParams(), privacy=SECURE)

    async def device(stub, i: int, md, log: dict):
        lease = await stub.LeaseTask(agent_pb2.LeaseTaskRequest(protocol_version=PROTOCOL_VERSION, wait_s=10),
                                     metadata=md, timeout=30)
        task = lease.task
        ran = Setting(target="cpu", runtime="simulated", runtime_version=__version__, execution_provider="simulated",
                      batch=1, threads=0, precision="fp32", scenario="single-stream")
        result = RunResult(setting=ran, stats=synthetic_stats(2.0 + i, 1, random.Random(i)), fidelity=Fidelity(),
                           valid=True, outcome=ScenarioOutcome(driver="native", verdict="VALID"))
        privacy = convert.privacy_from_pb(task.privacy)
        await stub.Report(completed(new_report(task, trusted=False), result, privacy), metadata=md, timeout=30)
        held = {(task.model.sha256, ran.key()): statistic_logs(result.stats, privacy)}
        invite = None
        while invite is None:
            lease = await stub.LeaseTask(agent_pb2.LeaseTaskRequest(protocol_version=PROTOCOL_VERSION, wait_s=5),
                                         metadata=md, timeout=30)
            invite = lease.task.secure_round if lease.task.HasField("secure_round") else None
        if i == 0:
            with pytest.raises(grpc.aio.AioRpcError) as lost:
                await stub.SecureRound(agent_pb2.SecureRoundRequest(round_id="f" * 32, stage=1), metadata=md,
                                       timeout=30)
            log["wrong round"] = lost.value.code()
        protocol = stages(participant_for(invite, held), invite, lambda: None)
        calls = 0

        async def call(request):
            nonlocal calls
            calls += 1
            if i == 1 and request.stage == 1:  # claims a cell it does not hold, then tells the truth
                lie = agent_pb2.SecureRoundRequest()
                lie.CopyFrom(request)
                lie.holds.append(7)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.SecureRound(lie, metadata=md, timeout=30)
                log["lie"] = (refused.value.code(), refused.value.details())
            if i == 3 and request.stage == 3:
                raise ConnectionAbortedError  # vanishes with its masked vector unsent
            answer = asyncio.ensure_future(stub.SecureRound(request, metadata=md, timeout=60))
            if i == 2 and request.stage == 2:  # the same shares again, while the first call waits
                await asyncio.sleep(0.5)
                with pytest.raises(grpc.aio.AioRpcError) as replayed:
                    await stub.SecureRound(request, metadata=md, timeout=30)
                log["replay"] = replayed.value.code()
            return await answer

        try:
            log[i] = await drive_async(protocol, call)
        except ConnectionAbortedError:
            log[i] = "vanished"

    async def fleet():
        log: dict = {}
        async with grpc.aio.insecure_channel(c.address) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            mds = await asyncio.gather(*(enroll(stub, i) for i in range(4)))
            await asyncio.to_thread(campaign)
            await asyncio.gather(*(device(stub, i, md, log) for i, md in enumerate(mds)))
        return log

    log = asyncio.run(fleet())
    assert log["wrong round"] == grpc.StatusCode.NOT_FOUND
    assert log["lie"][0] == grpc.StatusCode.INVALID_ARGUMENT and "holds" in log["lie"][1]
    assert log["replay"] == grpc.StatusCode.FAILED_PRECONDITION
    assert log[3] == "vanished"
    assert all(log[i] == "published: 1 cells from 3 devices" for i in range(3)), log
    cell, = cells_of(c, "simulated")
    assert cell.n_devices == 3 and cell.privacy.startswith("secure gaussian")


def test_bounds_auto_without_a_predictor_is_one_clear_error_and_stores_nothing(secure_coordinator, prepared_zoo,
                                                                               tmp_path):
    from edgeatlas.protos.errors import NotFound

    c = secure_coordinator
    with c.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s"])
    procs = start_agents(c, tmp_path, n=1)
    try:
        wait_for(lambda: len(c.admin().list_agents()) >= 1, 60, "an agent to enroll")
        with c.admin() as admin:
            with pytest.raises(NotFound, match="no predictor trained yet"):
                admin.create_campaign(["mlp-s"], {}, 1, Setting(), RunParams(), privacy=SECURE, bounds_auto=True)
            assert not admin.list_campaigns()
    finally:
        for p in procs:
            stop_pid(p)
