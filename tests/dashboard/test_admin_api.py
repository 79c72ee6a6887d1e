"""The admin API the dashboard needs, on the wire: hardware list, published predictors, unregistered models."""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest

from edgeatlas.coordinator.store import Store
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.v1 import admin_pb2, admin_pb2_grpc

from tests.conftest import run_cli
from tests.dashboard.test_pages import RASPBERRY_PI_5
from tests.test_cli import one_line_error

pytestmark = pytest.mark.slow
SPEC = SpecSheet.from_text(RASPBERRY_PI_5).to_json()


def test_hardware_lists_every_class_with_its_sheet(world):
    with world.coordinator.admin() as admin:
        hardware = {h.hardware_class: h for h in admin.list_hardware()}
        cells = {c.hardware_class for c in admin.heatmap().cells}
    assert cells <= set(hardware)  # enrolled, imported and simulated classes alike
    s7 = next(h for h in hardware.values() if h.name == "Samsung Galaxy S7")  # an imported device's sheet
    assert s7.device_class == "phone" and json.loads(s7.spec_json)["soc"]


def test_predict_reads_an_unregistered_onnx_graph_without_storing_it(world, zoo_dir):
    with world.coordinator.admin() as admin:
        before = len(admin.list_models())
        onnx_bytes = (zoo_dir / "transformer-s.onnx").read_bytes()
        answer = admin.predict(SPEC, onnx_bytes)
        registered = admin.predict(SPEC, "mlp-s")
        with pytest.raises(InvalidInput, match="not an ONNX graph the predictor can read"):
            admin.predict(SPEC, b"not onnx at all")
        assert len(admin.list_models()) == before
    assert 0 < answer.latency_ms_low <= answer.latency_ms <= answer.latency_ms_high
    assert answer.gflops > 0 and answer.weight_mb > 0 and not answer.HasField("accuracy")
    assert registered.model_name == "mlp-s" and registered.gflops < answer.gflops


def test_predict_wants_exactly_one_model(world):
    channel = grpc.insecure_channel(world.coordinator.address)
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    metadata = (("authorization", f"Bearer {world.coordinator.admin_token}"),)
    for request, why in ((admin_pb2.PredictRequest(spec_json=SPEC, model="mlp-s", model_onnx=b"x"), "not both"),
                         (admin_pb2.PredictRequest(spec_json=SPEC), "needs spec_json and a model")):
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, metadata=metadata, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and why in err.value.details()
    channel.close()


def test_publishing_garbage_stores_no_version(world, tmp_path):
    with world.coordinator.admin() as admin:
        before = [v.version for v in admin.predictor_versions()]
        garbage = b"\x80\x04 definitely not a checkpoint"  # a pickle's first bytes
        with pytest.raises(InvalidInput, match="the published checkpoint: a pickled .* never loaded"):
            admin.publish_predictor(garbage)
        with pytest.raises(InvalidInput, match="the published checkpoint: not a safetensors predictor checkpoint"):
            admin.publish_predictor(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json either}")
        assert [v.version for v in admin.predictor_versions()] == before
    store = Store(f"sqlite:///{world.coordinator.db_path}")
    assert store.blob(hashlib.sha256(garbage).hexdigest()) is None  # not even its bytes were kept
    store.close()
    missing = run_cli("predictor", "publish", str(tmp_path / "nope.pt"), env=world.coordinator.env())
    one_line_error(missing, "no such file")


def test_published_version_is_listed_with_what_it_was_trained_on(world):
    with world.coordinator.admin() as admin:
        first = admin.predictor_versions()[0]
    assert first.trigger == "published" and first.devices == 12 and first.networks > 0 and first.cells > 0


def test_bounds_auto_gives_each_model_and_class_its_predicted_bounds(world):
    """`campaign create --bounds-ms auto`: the published predictor's answer for each model on each class of
    the campaign's devices, widened (protos/privacy.auto_bounds); a task is leased and checked under them."""
    from edgeatlas.coordinator.scheduling import task_privacy
    from edgeatlas.protos.privacy import PrivacyParams, auto_bounds
    from edgeatlas.protos.records import RunParams, Setting

    with world.coordinator.admin() as admin:
        made = admin.create_campaign(["mlp-s", "resnet-s"], {"label.simulated": "true"}, 1, Setting(), RunParams(),
                                     "auto-bounds", PrivacyParams(mode="secure"), bounds_auto=True)
        agents = [a for a in admin.list_agents() if a.simulated]
        pi = next(a for a in agents if "Raspberry Pi 5" in json.loads(a.spec_json)["name"])
        answer = admin.predict(pi.spec_json, "mlp-s", runtime="onnxruntime")
    store = Store(f"sqlite:///{world.coordinator.db_path}")
    try:
        row = store.campaign(made.campaign_id)
        stored = json.loads(row.privacy_json)["auto_bounds"]
        classes = {a.hardware_class for a in agents}
        assert len(stored) == 2 * len(classes)  # every model on every class
        sha = store.resolve_models(["mlp-s"])[0].sha256
        contract = task_privacy(row.privacy_json, sha, pi.hardware_class)
        assert contract.mode == "secure" and contract.bounds_ms != PrivacyParams().bounds_ms
        lo, hi = contract.bounds_ms
        # they hold the estimate, clipped to the default bounds where it lies beyond them (an unseen
        # runtime's answer for a tiny network can be under their 10 µs)
        low, high = PrivacyParams().bounds_ms
        assert lo <= min(max(answer.latency_ms, low), high) < hi
        assert (lo, hi) == pytest.approx(auto_bounds(answer.latency_ms, answer.latency_ms_low, answer.latency_ms_high))
        # a class the table does not name keeps the campaign's own bounds
        assert task_privacy(row.privacy_json, sha, "cpu:unknown").bounds_ms == PrivacyParams().bounds_ms
        with world.coordinator.admin() as admin:  # and the campaign says which bounds each task has
            shown = admin.campaign(made.campaign_id).auto_bounds
        assert len(shown) == len(stored) and shown[f"mlp-s|{pi.hardware_class}"] == f"{lo:.4g}..{hi:.4g}"
        status = run_cli("campaign", "status", str(made.campaign_id), env=world.coordinator.env())
        assert status.returncode == 0 and "per cell, cohorts of ≥ 10" in status.stdout, status.stderr
        assert f"bounds {lo:.4g}..{hi:.4g} ms for mlp-s on {pi.hardware_class} (from the predictor)" in status.stdout
    finally:
        store.close()
