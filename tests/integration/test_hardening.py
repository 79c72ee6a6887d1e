"""The issue-19 attacks on a real coordinator over 127.0.0.1, on SQLite and PostgreSQL: each gets a clear
status, stores nothing, and leaves the rest serving."""

import json
import os
import pickle

import grpc
import pytest

from edgeatlas.agent.probe import probe
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import RunParams, Setting
from edgeatlas.protos.wire import bearer
from edgeatlas.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc

from tests.conftest import REPO, CoordinatorProcess, cli_env, coordinator_db, register, run_cli

pytestmark = pytest.mark.slow

SPEC = probe("/", measure_bandwidth=False).data
MALFORMED = {
    "name": {**SPEC, "name": 42},
    "cpu.model": {**SPEC, "cpu": {**SPEC["cpu"], "model": ["a", "b"]}},
    "device_class": {**SPEC, "device_class": {"x": 1}},
    "soc": {**SPEC, "soc": 7.5},
    "cpu.clusters[0].core": {**SPEC, "cpu": {**SPEC["cpu"], "clusters": [{"cores": 2, "core": 3}]}},
    "nested deeper": None,  # JSON nested 900 deep, written below
}


def deep_json() -> str:
    return '{"name": "x", "extra": ' + '{"a": ' * 900 + "1" + "}" * 900 + "}"


def test_malformed_enrollments_are_refused_without_spending_the_token_and_nothing_breaks(any_coordinator):
    c = any_coordinator
    one_use = run_cli("token", "create", "--kind", "enroll", "--uses", "1", env=c.env()).stdout.strip()
    channel = grpc.insecure_channel(c.address)
    agent = agent_pb2_grpc.AgentServiceStub(channel)
    for field, sheet in MALFORMED.items():
        text = deep_json() if sheet is None else json.dumps(sheet)
        with pytest.raises(grpc.RpcError) as info:
            agent.Enroll(agent_pb2.EnrollRequest(enrollment_token=one_use, spec_json=text), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, info.value.details())
        assert field in info.value.details() and "\n" not in info.value.details()
    ok = agent.Enroll(agent_pb2.EnrollRequest(enrollment_token=one_use, spec_json=json.dumps(SPEC)), timeout=10)
    assert ok.agent_id  # the one use was still there
    with pytest.raises(grpc.RpcError) as info:
        agent.Enroll(agent_pb2.EnrollRequest(enrollment_token=one_use, spec_json=json.dumps(SPEC)), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # and now it is spent
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    md = bearer(c.admin_token)
    listed = admin.ListHardware(admin_pb2.ListHardwareRequest(), metadata=md, timeout=10)
    assert [h.name for h in listed.hardware] == [SPEC["name"]]
    for precision in (0.001, 0.003, 0.1):
        admin.GetHeatmap(admin_pb2.GetHeatmapRequest(target_precision=precision), metadata=md, timeout=10)
    for precision in (0.0009, 1e-300, -1.0):
        with pytest.raises(grpc.RpcError) as info:
            admin.GetHeatmap(admin_pb2.GetHeatmapRequest(target_precision=precision), metadata=md, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()
    pages_answer(c)


def pages_answer(c: CoordinatorProcess) -> None:
    """The dashboard's heat-map, fleet and compare pages draw without an error against this coordinator."""
    from streamlit.testing.v1 import AppTest

    env = {"EDGEATLAS_COORDINATOR": c.address, "EDGEATLAS_ADMIN_TOKEN": c.admin_token}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for page in ("heatmap", "fleet", "compare"):
            at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
            at.query_params["page"] = page
            at.run()
            assert not at.exception, (page, [e.message for e in at.exception])
            assert not [e.value for e in at.error if "coordinator" in e.value.lower()], page
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_enrollments_are_rate_limited_per_address_and_token(db, request, tmp_path):
    c = CoordinatorProcess(tmp_path, tmp_path / "c.db", db_url=coordinator_db(request, db, tmp_path),
                           extra_args=("--enroll-rate", "5")).start()
    try:
        agent = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(c.address))
        codes = []
        for i in range(8):
            try:
                agent.Enroll(agent_pb2.EnrollRequest(enrollment_token=c.enroll_token, spec_json=json.dumps(SPEC),
                                                     name=f"sybil-{i}"), timeout=10)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
        assert codes == ["OK"] * 5 + ["RESOURCE_EXHAUSTED"] * 3
        with c.admin() as admin:
            assert len(admin.list_agents()) == 5
    finally:
        c.stop()


class Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_checkpoint_is_refused_and_runs_nothing_on_the_coordinator(coordinator, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "edgeatlas.predictor/v1", "tabular": pickle.dumps(Shell(marker))}, str(path))
    with coordinator.admin() as admin, pytest.raises(InvalidInput, match="pickled .* never loaded"):
        admin.publish_predictor(path.read_bytes())
    assert not marker.exists()
    with coordinator.admin() as admin:
        assert admin.predictor_versions() == []


def test_an_agent_fetches_its_tasks_model_and_nothing_else(coordinator, prepared_zoo):
    channel = grpc.insecure_channel(coordinator.address)
    agent = agent_pb2_grpc.AgentServiceStub(channel)
    me = agent.Enroll(agent_pb2.EnrollRequest(enrollment_token=coordinator.enroll_token,
                                              spec_json=json.dumps(SPEC)), timeout=10)
    md = bearer(me.credential)
    with coordinator.admin() as admin:
        register(admin, prepared_zoo, ["mlp-s", "mlp-l"])
        admin.create_campaign(["mlp-s"], {}, 1, Setting(threads=1), RunParams())
        other = admin.upload_blob(b"a predictor checkpoint, say")
    mine = prepared_zoo["mlp-s"].sha256
    data = b"".join(c.data for c in agent.FetchModel(agent_pb2.FetchModelRequest(sha256=mine), metadata=md, timeout=10))
    assert len(data) == prepared_zoo["mlp-s"].size_bytes
    details = set()
    for sha in (other, prepared_zoo["mlp-l"].sha256, "0" * 64):
        with pytest.raises(grpc.RpcError) as info:
            list(agent.FetchModel(agent_pb2.FetchModelRequest(sha256=sha), metadata=md, timeout=10))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        details.add(info.value.details().replace(sha[:16], "SHA"))
    assert len(details) == 1  # not stored, and stored but not for this agent, read the same
    channel.close()


def test_start_up_tokens_from_the_environment_replace_the_earlier_ones(tmp_path):
    c = CoordinatorProcess(tmp_path, tmp_path / "c.db").start()
    first_admin = c.admin_token
    c.stop()
    new = {"EDGEATLAS_ADMIN_TOKEN": "adm-" + "x" * 28, "EDGEATLAS_ENROLL_TOKEN": "enr-" + "y" * 28}
    short = run_cli("coordinator", "serve", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--listen", "127.0.0.1:0",
                    env=cli_env(EDGEATLAS_ADMIN_TOKEN="x"), timeout=60)
    assert short.returncode == 2 and "at least 16" in short.stderr and len(short.stderr.strip().splitlines()) == 1
    c.extra_env = tuple(new.items())
    c.start()
    try:
        from edgeatlas.protos.admin_client import AdminClient
        from edgeatlas.protos.errors import Unauthenticated
        with AdminClient(c.address, new["EDGEATLAS_ADMIN_TOKEN"]) as admin:
            admin.list_models()
        with AdminClient(c.address, first_admin) as admin, pytest.raises(Unauthenticated):
            admin.list_models()
        assert "revoked 1 earlier start-up admin token" in (tmp_path / "coordinator.log").read_text()
    finally:
        c.stop()


def test_an_onnx_upload_naming_external_data_files_is_refused(coordinator, tmp_path):
    """Its relative paths were resolved on the coordinator's disk: an upload told whether a file exists."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph)
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    hostile = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for entry in hostile.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../../../etc/hostname"  # onnx.save itself refuses to write such a path
    (tmp_path / "m.onnx").write_bytes(hostile.SerializeToString())
    with coordinator.admin() as admin, pytest.raises(InvalidInput, match="external file"):
        admin.add_model(tmp_path / "m.onnx", "external", b"", "{}")
    with coordinator.admin() as admin:
        assert admin.list_models() == []


def test_an_agent_is_back_within_seconds_of_the_coordinator_after_an_outage(tmp_path, prepared_zoo):
    """After a 30 s outage gRPC's own reconnect backoff had grown past 20 s; one agent took 65 s to return."""
    import subprocess
    import sys
    import time

    from tests.conftest import stop_pid

    c = CoordinatorProcess(tmp_path, tmp_path / "c.db").start()
    (tmp_path / "token").write_text(c.enroll_token)
    agent = subprocess.Popen([sys.executable, "-m", "edgeatlas", "agent", "run", "--coordinator", c.address,
                              "--token-file", str(tmp_path / "token"), "--state-dir", str(tmp_path / "agent")],
                             stdout=open(tmp_path / "agent.log", "wb"), stderr=subprocess.STDOUT, env=cli_env())
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "agent" / "identity.json").exists():
            assert time.monotonic() < deadline and agent.poll() is None, (tmp_path / "agent.log").read_text()
            time.sleep(0.2)
        c.stop()
        time.sleep(30)
        c.start()
        back = time.monotonic()
        with c.admin() as admin:
            register(admin, prepared_zoo, ["mlp-s"])
            cid = admin.create_campaign(["mlp-s"], {}, 1, Setting(threads=1),
                                        RunParams(warmup_iterations=1, min_iterations=5, min_duration_s=0.05,
                                                  max_duration_s=5)).campaign_id
            while admin.campaign(cid).counts.done < 1:
                # before: up to 30 s of the agent's backoff plus gRPC's; now the probe wakes it within 0.5 s
                assert time.monotonic() - back < 8, (tmp_path / "agent.log").read_text()[-2000:]
                time.sleep(0.2)
        print(f"agent back and its task done {time.monotonic() - back:.1f} s after the coordinator returned")
        assert agent.poll() is None
    finally:
        stop_pid(agent)
        c.stop()
