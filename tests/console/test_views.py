import csv
import io
import json

import pytest

from edgeatlas.console import views
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.v1 import admin_pb2


def heatmap():
    shown = admin_pb2.HeatmapCell(model_name="mlp-s", hardware_class="cpu:amd-epyc",
                                  setting_key="cpu/onnxruntime/CPUExecutionProvider/b1/t1/fp32/single-stream",
                                  source="fleet", n_devices=6, n_reports=6, privacy="ldp gaussian ε=1")
    shown.metrics["latency_p50_ms"].CopyFrom(admin_pb2.MetricValue(value=0.5, low=0.25, high=1.0, n=6))
    hidden = admin_pb2.HeatmapCell(model_name="resnet-s", hardware_class="cpu:amd-epyc",
                                   setting_key=shown.setting_key, source="fleet", n_devices=2, n_reports=2,
                                   suppressed=True, min_devices=5, devices_needed=1_234_567)
    return admin_pb2.Heatmap(cells=[shown, hidden])


def test_one_record_many_views():
    h = heatmap()
    rows = list(csv.DictReader(io.StringIO(views.to_csv(h))))
    assert [(r["model"], r["metric"]) for r in rows] == [("mlp-s", "latency_p50_ms"), ("resnet-s", "suppressed")]
    assert json.loads(views.to_json(h))[1]["value"] is None  # a suppressed cell carries no value
    table = views.summary(h)
    assert "0.5 [0.25, 1.00]" in table and "suppressed: 2 of k=5 devices" in table and "+1.23M" in table
    matrix = views.matrix(h, "latency_p50_ms")
    assert "0.5" in matrix and "<k (2)" in matrix
    with pytest.raises(InvalidInput, match="metric"):
        views.matrix(h, "latency_p42_ms")
