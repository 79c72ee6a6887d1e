"""A device's own measurements as training samples: what an opted-in agent keeps in its state directory.

results.jsonl (agent/results.py: one line per task, exact values and the input spec it ran at, never
sent), the models in models/
(by sha256, as fetched), and spec.json (the sheet the device enrolled with). Only valid single-stream
ONNX results count; latency is each task's mean in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeatlas.predictor.data import GraphSet, Samples, SettingInfo
from edgeatlas.protos import inputs
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.spec import SpecSheet


def load_store(root: Path) -> Samples:
    import onnx

    from edgeatlas.predictor.graph import from_onnx

    spec_path, results_path = root / "spec.json", root / "results.jsonl"
    if not spec_path.exists() or not results_path.exists():
        raise InvalidInput(f"{root}: no spec.json or results.jsonl: this device has measured nothing yet")
    spec = SpecSheet.from_json(spec_path.read_text(), origin=str(spec_path))
    graphs, graph_of, settings, setting_of = [], {}, [], {}
    g_idx, s_idx, latency = [], [], []
    for line in results_path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        sha, mean_ms = row.get("model_sha256"), (row.get("stats") or {}).get("mean_ms")
        model = root / "models" / f"{sha}.onnx"
        setting = row.get("setting") or {}
        # single-stream latency only: a server run's latency is under a load the graph says nothing of
        if row.get("model_format", "onnx") != "onnx" or not row.get("valid") or not sha or not mean_ms \
                or not model.exists() or setting.get("scenario", "single-stream") != "single-stream":
            continue
        if sha not in graph_of:  # at the input shapes it ran at (older lines without a spec: the graph's own)
            specs = inputs.from_json(row["inputs_json"]) if row.get("inputs_json") else ()
            graph_of[sha] = len(graphs)
            graphs.append(from_onnx(onnx.load(str(model)), row.get("model") or sha[:12], specs))
        s = setting
        key = "/".join(str(s.get(k)) for k in ("target", "runtime", "execution_provider", "batch", "threads"))
        if key not in setting_of:
            setting_of[key] = len(settings)
            settings.append(SettingInfo(key=key, device=spec.name or "this device", spec=spec, target=s["target"],
                                        batch=int(s.get("batch") or 1), threads=int(s.get("threads") or 0),
                                        runtime=s.get("runtime") or "onnxruntime"))
        g_idx.append(graph_of[sha])
        s_idx.append(setting_of[key])
        latency.append(float(mean_ms))
    if len(latency) < 2:
        raise InvalidInput(f"{root}: {len(latency)} valid ONNX measurement(s); federated training needs at least 2")
    return Samples(GraphSet.from_graphs(graphs), settings, np.array(g_idx), np.array(s_idx),
                   np.array(latency, dtype=np.float64), source=str(root))
