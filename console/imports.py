"""Bringing published measurements into the heat-map, beside the models that produced them."""

from __future__ import annotations

from pathlib import Path

import onnx

from edgeatlas.console.models import prepare, summary_json
from edgeatlas.predictor.datasets.nasbench201 import nasbench201
from edgeatlas.predictor.datasets import nasbench201 as nb201


def import_nasbench201(admin, data_dir: str | Path | None, count: int, out_dir: str | Path,
                       say=lambda text: None) -> list[str]:
    """Builds `count` NAS-Bench-201 networks spread over the latency range, registers them, and imports
    their published latencies (metric latency_mean_ms, source `imported`); returns the model names."""
    dataset = nb201.load(data_dir or nb201.SAMPLE_DIR)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for row in nb201.spread_sample(dataset, count):
        name = f"nb201-{row.index}"
        path = out / f"{name}.onnx"
        onnx.save(nasbench201(name, row.arch), str(path))
        prepared = prepare(path)
        ref = admin.add_model(path, name, prepared.reference_npz, summary_json(prepared), inputs_json=prepared.inputs_json)
        cells = [(dataset.columns[col].spec.to_json(), dataset.columns[col].setting(), {"latency_mean_ms": ms})
                 for col, ms in row.latency_ms.items()]
        admin.import_cells(ref.sha256, nb201.CITATION, cells)
        say(f"      {ref.name:14} {len(cells)} published settings on "
            f"{len({dataset.columns[c].spec.name for c in row.latency_ms})} devices  {row.arch}")
        names.append(ref.name)
    return names
