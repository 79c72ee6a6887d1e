"""The dashboard's tables and rules, on hand-made admin API messages (no coordinator, no Streamlit)."""

from __future__ import annotations

import math

import pytest

from edgeatlas.dashboard import data
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.v1 import admin_pb2


def cell(model, hw, source="imported", value=10.0, metric="latency_mean_ms", suppressed=False, n_devices=1,
         batch=1, threads=0, runtime="onnxruntime"):
    c = admin_pb2.HeatmapCell(model_name=model, hardware_class=hw, source=source, suppressed=suppressed,
                              n_devices=n_devices, n_reports=n_devices, min_devices=5,
                              setting_key=f"cpu/{runtime}/b{batch}/t{threads}")
    c.setting.target, c.setting.runtime, c.setting.batch, c.setting.threads = "cpu", runtime, batch, threads
    if not suppressed:
        c.metrics[metric].CopyFrom(admin_pb2.MetricValue(value=value, low=value * 0.9, high=value * 1.1, n=n_devices))
    return c


HARDWARE = [admin_pb2.HardwareInfo(hardware_class="cpu:cortex-a76x4", device_class="board"),
            admin_pb2.HardwareInfo(hardware_class="gpu:nvidia-rtx-2080-ti", device_class="server")]


def frame(*cells):
    return data.cells_frame(admin_pb2.Heatmap(cells=list(cells)), HARDWARE)


def test_matrix_log_colours_values_and_marks_suppressed_cells_without_values():
    f = frame(cell("a", "cpu:cortex-a76x4", value=100.0), cell("b", "cpu:cortex-a76x4", value=1.0),
              cell("a", "cpu:x86", source="fleet", suppressed=True, n_devices=2))
    m = data.matrix(f, "latency_mean_ms")
    assert m.models == ["a", "b"] and m.columns == ["cpu:x86", "cpu:cortex-a76x4 ·imported"]
    assert m.z[0][1] == pytest.approx(2.0) and m.z[1][1] == pytest.approx(0.0)  # log10
    assert m.text[0][0] == "k<5" and math.isnan(m.z[0][0])
    assert "2 of the 5 devices" in m.hover[0][0] and "100" not in m.hover[0][0]
    assert m.text[1][0] == "" and "no measurement" in m.hover[1][0]
    assert "95 % CI 90.00–110" in m.hover[0][1]


def test_matrix_keeps_one_setting_per_cell_batch_one_first():
    f = frame(cell("a", "cpu:cortex-a76x4", value=50.0, batch=8), cell("a", "cpu:cortex-a76x4", value=5.0, batch=1))
    assert data.matrix(f, "latency_mean_ms").text == [["5.00"]]


def test_filters_by_source_device_class_and_campaign():
    f = frame(cell("a", "cpu:cortex-a76x4", source="simulated", runtime="simulated"),
              cell("a", "gpu:nvidia-rtx-2080-ti"), cell("b", "cpu:cortex-a76x4", threads=1))
    assert set(data.apply(f, data.Filters(sources=("imported",)))["hardware_class"]) == {
        "gpu:nvidia-rtx-2080-ti", "cpu:cortex-a76x4"}
    assert list(data.apply(f, data.Filters(device_classes=("server",)))["model"]) == ["a"]
    campaign = admin_pb2.Campaign(models=["b"])
    campaign.setting.threads = 1
    campaign.by_hardware["cpu:cortex-a76x4"].done = 1
    picked = data.apply(f, data.for_campaign(data.Filters(), campaign))
    assert list(picked["model"]) == ["b"] and list(picked["threads"]) == [1]


def test_metrics_and_commonest_metric():
    f = frame(cell("a", "h1", metric="latency_p50_ms"), cell("a", "h2"), cell("b", "h2"))
    metrics = data.metrics_in(f)
    assert metrics == ["latency_p50_ms", "latency_mean_ms"]
    assert data.commonest_metric(f, metrics) == "latency_mean_ms"
    assert data.metric_label("throughput_ips") == "throughput (inferences/s)"


def test_csv_export_has_every_row_and_the_suppressed_flag():
    f = frame(cell("a", "h1"), cell("b", "h1", source="fleet", suppressed=True))
    lines = data.export_csv(f).strip().splitlines()
    assert len(lines) == 3 and "suppressed" in lines[0] and lines[2].count("True") == 1


def test_privacy_per_device_class_leaves_simulated_devices_out():
    agents = [admin_pb2.AgentInfo(agent_id="1", device_class="phone", epsilon_24h=3.0, releases_24h=3),
              admin_pb2.AgentInfo(agent_id="2", device_class="phone", epsilon_24h=1.0, releases_24h=1),
              admin_pb2.AgentInfo(agent_id="3", device_class="board", simulated=True, epsilon_24h=0.0)]
    table = data.privacy_by_class(data.agents_frame(agents, 0))
    assert table.to_dict("records") == [{"device_class": "phone", "devices": 2, "releases_24h": 4,
                                         "mean_epsilon_24h": 2.0, "max_epsilon_24h": 3.0}]


def test_progress_counts_finished_tasks():
    c = admin_pb2.Campaign()
    c.counts.done, c.counts.failed, c.counts.pending = 2, 1, 1
    c.by_hardware["cpu:a"].done = 1
    c.by_hardware["cpu:a"].pending = 1
    assert data.progress(c.counts) == 0.75
    assert data.hardware_progress(c).to_dict("records")[0]["progress"] == 50


def test_a_federated_campaign_shows_its_rounds_and_privacy():
    c = admin_pb2.Campaign(campaign_id=3, federated=admin_pb2.Federated(devices=2, rounds=2, epsilon=4.0))
    c.federated_rounds.add(round=1, loss_before=0.5, loss_after=0.1, epsilon_measurement=3.1, epsilon_device=90.0)
    c.federated_rounds.add(round=2, loss_before=0.2, loss_after=0.1, epsilon_measurement=4.0, epsilon_device=160.0)
    rounds = data.federated_rounds(c)
    assert rounds["round"].tolist() == [1, 2] and rounds["ε per measurement"].tolist() == [3.1, 4.0]
    assert data.campaigns_frame([c]).loc[0, "privacy"] == "federated DP-SGD ε=4/measurement"


def test_selectors_parse_or_name_the_bad_one():
    assert data.parse_selectors("device_class=phone\ncpu.arch = arm64, label.site=lab") == {
        "device_class": "phone", "cpu.arch": "arm64", "label.site": "lab"}
    assert data.parse_selectors("memory.size_gb >= 8, device_class!=phone") == {
        "memory.size_gb": ">=8", "device_class": "!=phone"}
    assert data.parse_selectors("  ") == {}
    with pytest.raises(InvalidInput, match="'phone' is not KEY=VALUE"):
        data.parse_selectors("phone")
    with pytest.raises(InvalidInput, match="'cpu.cores>=' is not KEY=VALUE"):
        data.parse_selectors("cpu.cores>=")


def test_spec_sheets_parse_or_name_the_field():
    assert data.parse_spec("name: x\ncpu: {cores: 4}").get("cpu.cores") == 4
    with pytest.raises(InvalidInput, match="device_class"):
        data.parse_spec("device_class: toaster")
    with pytest.raises(InvalidInput, match="cpu.cores"):
        data.parse_spec('{"cpu": {"cores": -3}}', "pasted")
    with pytest.raises(InvalidInput, match="empty"):
        data.parse_spec("\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        data.parse_spec("cpu: [unclosed")


def test_pareto_front_prefers_accuracy_when_every_model_has_one():
    def answer(ms, gflops, accuracy=None):
        a = admin_pb2.PredictResponse(latency_ms=ms, gflops=gflops)
        if accuracy is not None:
            a.accuracy = accuracy
        return a
    with_acc = data.predictions_frame([("fast", answer(1, 1, 0.7)), ("slow-good", answer(5, 9, 0.9)),
                                       ("dominated", answer(6, 2, 0.8))])
    assert data.pareto(with_acc) == ("accuracy", [True, True, False])
    without = data.predictions_frame([("cheap-fast", answer(1, 1)), ("costly-slow", answer(5, 9)),
                                      ("cheap-slow", answer(6, 0.5))])
    assert data.pareto(without) == ("gflops", [True, False, True])


def test_compare_hardware_and_models_give_ratios():
    f = frame(cell("a", "h1", value=2.0), cell("a", "h2", value=6.0), cell("b", "h1", value=1.0))
    hw = data.compare_hardware(f, "latency_mean_ms", "h1", "h2").set_index("model")
    assert hw.loc["a", "ratio b/a"] == pytest.approx(3.0) and math.isnan(hw.loc["b", "ratio b/a"])
    models = data.compare_models(f, "latency_mean_ms", "a", "b").set_index("hardware")
    assert models.loc["h1 ·imported", "ratio b/a"] == pytest.approx(0.5)
    assert data.classes_by_coverage(f, "latency_mean_ms") == ["h1", "h2"]


def test_an_uploaded_graph_gets_its_spec_from_flags_or_a_one_line_refusal():
    import json

    import pytest
    from onnx import TensorProto, helper

    from edgeatlas.dashboard.data import uploaded_spec
    from edgeatlas.protos.errors import InvalidInput

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(InvalidInput, match=r"dimension 2 \('H'\) is dynamic"):
        uploaded_spec(model, "")
    spec = json.loads(uploaded_spec(model, "--dim H=32 --dim W=48"))
    assert spec == [{"name": "x", "dtype": "float32", "shape": ["batch", 3, 32, 48], "source": "normal"}]
    with pytest.raises(InvalidInput, match="not one of --input"):
        uploaded_spec(model, "--shape x=1")
    with pytest.raises(InvalidInput, match="not an ONNX model"):
        uploaded_spec(b"\x00garbage", "")
    with pytest.raises(InvalidInput, match="input flags"):
        uploaded_spec(model, "--dim 'H=3")


def test_fingerprint_uploads_and_runtime_coverage_are_read_for_the_page():
    text, setting = data.fingerprint_upload(b'{"threads": 2, "batch": 1, "runtime": "onnxruntime"}')
    assert setting == {"threads": 2, "batch": 1, "runtime": "onnxruntime"} and '"threads": 2' in text
    assert data.fingerprint_upload(b"\xff\xfe")[1] is None and data.fingerprint_upload(b"[1]")[1] is None
    covered = data.runtime_coverage(admin_pb2.PredictorVersion(runtimes=["pytorch", "tflite"]))
    assert "covers pytorch, tflite" in covered and "onnxruntime, llama.cpp" in covered
    assert "does not record" in data.runtime_coverage(admin_pb2.PredictorVersion())
    paired = data.runtime_coverage(admin_pb2.PredictorVersion(runtimes=["onnxruntime/cpu", "pytorch/gpu"]))
    assert "covers onnxruntime on cpu, pytorch on gpu" in paired
    assert "for tflite, llama.cpp (or on another processor) the answer says so" in paired


@pytest.mark.parametrize("source,privacy,mode", [
    ("fleet", "secure gaussian ε=1 δ=1e-06", "secure"), ("fleet", "ldp gaussian ε=1 δ=1e-06", "ldp"),
    ("simulated", "secure gaussian ε=1 δ=1e-06, simulated", "simulated"), ("trusted", "trusted (exact)", "trusted"),
    ("imported", "", "imported"), ("fleet", "fleet (mixed contracts)", "fleet (mixed contracts)")])
def test_each_cell_says_which_mode_its_values_rest_on(source, privacy, mode):
    assert data.cell_mode(source, privacy) == mode
    frame = data.cells_frame(admin_pb2.Heatmap(cells=[admin_pb2.HeatmapCell(
        model_name="m", hardware_class="cpu:x", source=source, privacy=privacy)]))
    assert list(frame["mode"]) == [mode]
