"""The coordinator's predictor over the admin API: retrained when cells arrive, versioned, served."""

import json
import time

import grpc
import pytest

from edgeatlas.console.imports import import_nasbench201
from edgeatlas.predictor.hardware import processor
from edgeatlas.protos.errors import InvalidInput, NotFound
from edgeatlas.protos.spec import SpecSheet

from tests.conftest import SHARED, CoordinatorProcess, run_cli
from tests.test_cli import one_line_error

pytestmark = pytest.mark.slow
PIXEL3 = SHARED / "datasets" / "nasbench201" / "specs" / "pixel_3.yaml"


def test_no_predictor_before_enough_cells(coordinator):
    spec = SpecSheet.load(PIXEL3).to_json()
    with coordinator.admin() as admin:
        with pytest.raises(NotFound, match="no predictor trained yet"):
            admin.predict(spec, "mlp-s")
        with pytest.raises(InvalidInput, match="at least 20"):
            admin.train_predictor()
        assert admin.predictor_versions() == []


@pytest.mark.timeout(900)  # several versions are trained on two cores; a loaded machine takes minutes
def test_retrains_on_new_cells_keeps_versions_and_serves_them(tmp_path):
    c = CoordinatorProcess(tmp_path, tmp_path / "c.db",
                           # the import stores a network's 21 cells at once: a threshold of 21 always sees the last
                           extra_args=("--retrain-cells", "21", "--retrain-check-s", "1")).start()
    try:
        spec = SpecSheet.load(PIXEL3).to_json()
        with c.admin() as admin:
            names = import_nasbench201(admin, None, 6, tmp_path / "nb")  # 6 networks × 21 settings
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # a version as cells arrive, one more once all 126 are in
                auto = admin.predictor_versions()
                if auto and auto[-1].cells == 6 * 21:
                    break
                time.sleep(1)
            assert auto and all(v.trigger == "new-cells" for v in auto)
            assert [v.cells for v in auto] == sorted(v.cells for v in auto) and auto[-1].cells == 6 * 21
            first = auto[-1:]
            assert first[0].devices == 12 and first[0].networks == 6 and first[0].size_bytes > 0
            evaluation = json.loads(first[0].evaluation_json)
            assert set(evaluation) == {"roofline", "tabular", "gnn"}
            assert all(f["n"] > 0 and f["mape"] >= 0 for f in evaluation.values())
            answer = admin.predict(spec, names[0], "cpu", 1, 0, "tflite")
            assert answer.version == len(auto) and answer.model_name == names[0]
            assert 0 < answer.latency_ms_low <= answer.latency_ms <= answer.latency_ms_high
            peak = processor(SpecSheet.load(PIXEL3), "cpu", 1, 0, "tflite").peak_flops
            assert answer.latency_ms >= 0.999 * answer.gflops * 1e9 / peak * 1e3  # never faster than it computes
            second = admin.train_predictor(members=1, epochs=1)
            assert second.version == len(auto) + 1 and second.trigger == "manual"
            assert [v.version for v in admin.predictor_versions()] == list(range(1, len(auto) + 2))
            assert admin.predict(spec, names[0], version=1).version == 1
            assert admin.predict(spec, names[0]).version == second.version
            with pytest.raises(NotFound, match="version 99"):
                admin.predict(spec, names[0], version=99)
            with pytest.raises(NotFound):
                admin.predict(spec, "no-such-model")
            with pytest.raises(InvalidInput, match="spec_json"):
                admin.predict("{not json", names[0])
            with pytest.raises(InvalidInput, match="accelerator"):
                admin.predict(spec, names[0], target="npu")
            # an unregistered graph with a dynamic dimension: refused naming it, answered with its spec
            from edgeatlas.protos import inputs
            from tests.models.third_party import fetch
            cls = fetch("ch-ppocr-mobile-v2-0-cls-infer").read_bytes()  # [-1, 3, ?, ?], 0.6 MB
            with pytest.raises(InvalidInput, match=r"dimension 2 is dynamic"):
                admin.predict(spec, cls)
            specs = (inputs.InputSpec("x", "float32", (inputs.BATCH, 3, 48, 192)),)
            small = admin.predict(spec, cls, inputs_json=inputs.to_json(specs))
            specs = (inputs.InputSpec("x", "float32", (inputs.BATCH, 3, 192, 768)),)
            large = admin.predict(spec, cls, inputs_json=inputs.to_json(specs))
            assert 0 < small.latency_ms < large.latency_ms and small.gflops < large.gflops
            with pytest.raises(InvalidInput, match="dimension 1 is 3 in the model"):
                admin.predict(spec, cls, inputs_json=inputs.to_json(
                    (inputs.InputSpec("x", "float32", (inputs.BATCH, 4, 48, 192)),)))
            # the training data is tflite and pytorch: an onnxruntime answer says so; a fingerprint calibrates it
            covered = admin.predictor_versions()[-1].runtimes  # each runtime with the processors it ran on
            assert {r.split("/")[0] for r in covered} == {"pytorch", "tflite"} and "tflite/cpu" in covered
            ort_answer = admin.predict(spec, names[0], "cpu", 1, 1, "onnxruntime")
            assert "no sample of onnxruntime" in ort_answer.note
            assert ort_answer.latency_ms_low <= ort_answer.roofline_latency_ms * 1.001
            from edgeatlas.predictor import fingerprint as fp
            twice = {n: 2.0 * (i + 1) for i, n in enumerate(fp.NAMES)}
            fingerprint = fp.Fingerprint(latency_ms=twice, threads=1).to_json()
            tuned = admin.predict(spec, names[0], "cpu", 1, 1, "onnxruntime", fingerprint_json=fingerprint)
            assert "shots" in tuned.note and tuned.zero_shot_latency_ms == pytest.approx(ort_answer.latency_ms)
            with pytest.raises(InvalidInput, match="threads"):
                admin.predict(spec, names[0], "cpu", 1, 4, "onnxruntime", fingerprint_json=fingerprint)
            with pytest.raises(InvalidInput, match="fingerprint_json: not JSON"):
                admin.predict(spec, names[0], "cpu", 1, 1, "onnxruntime", fingerprint_json="{")
            with pytest.raises(InvalidInput, match="not a network of"):
                admin.predict(spec, names[0], "cpu", 1, 1, "onnxruntime",
                              fingerprint_json=fingerprint.replace('"gemm"', '"resnet"'))
            assert len(admin.predictor_versions()) == len(auto) + 1  # refused queries store nothing
            # the reference networks registered and measured on this class: its cells are its fingerprint
            built = run_cli("models", "build", "--reference", "--upload", "--out", str(tmp_path / "ref"),
                            "--coordinator", c.address, "--admin-token", c.admin_token)
            assert built.returncode == 0 and f"{len(fp.NAMES)} reference networks" in built.stdout, built.stderr
            refs = {m.name: m.sha256 for m in admin.list_models() if m.name.startswith("ref-")}
            assert sorted(refs) == sorted(f"ref-{n}" for n in fp.NAMES)
            from edgeatlas.protos.records import Setting
            ort1 = Setting(runtime="onnxruntime", threads=1)
            for i, name in enumerate(fp.NAMES):
                admin.import_cells(refs[f"ref-{name}"], "measured for this test", [(spec, ort1, {"latency_mean_ms": 2.0 * (i + 1)})])
            by_class = admin.predict(spec, names[0], "cpu", 1, 1, "onnxruntime")
            assert by_class.note.startswith("the fingerprint of cpu:") and "from its cells" in by_class.note
            assert by_class.zero_shot_latency_ms > 0 and by_class.latency_ms != ort_answer.latency_ms
            assert "no sample of onnxruntime" in admin.predict(spec, names[0], "cpu", 1, 4, "onnxruntime").note
        env_args = ("--coordinator", c.address, "--admin-token", c.admin_token)
        listed = run_cli("predictor", "versions", *env_args)
        assert listed.returncode == 0 and "v1" in listed.stdout and "new-cells" in listed.stdout
        asked = run_cli("predictor", "ask", "--spec", str(PIXEL3), "--model", names[0], "--version", "1", *env_args)
        assert asked.returncode == 0 and json.loads(asked.stdout)["version"] == 1, asked.stderr
        one_line_error(run_cli("predictor", "ask", "--spec", str(PIXEL3), "--model", "nope", *env_args), "nope")
        ckpt = tmp_path / "from-coordinator.pt"
        trained = run_cli("predictor", "train", "--data", f"coordinator:{c.address}", "--out", str(ckpt),
                          "--members", "1", "--epochs", "1", "--admin-token", c.admin_token, timeout=600)
        assert trained.returncode == 0 and ckpt.is_file(), trained.stderr
        local = run_cli("predict", "--checkpoint", str(ckpt), "--spec", str(PIXEL3), "--model",
                        str(tmp_path / "nb" / f"{names[0]}.onnx"), "--json")
        assert local.returncode == 0 and json.loads(local.stdout)["latency_ms"] > 0, local.stderr
    finally:
        c.stop()


def test_grpc_status_codes_on_the_wire(coordinator):
    from edgeatlas.v1 import admin_pb2, admin_pb2_grpc
    channel = grpc.insecure_channel(coordinator.address)
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    meta = [("authorization", f"Bearer {coordinator.admin_token}")]
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(admin_pb2.PredictRequest(model="x"), metadata=meta, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        stub.ListPredictorVersions(admin_pb2.ListPredictorVersionsRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
