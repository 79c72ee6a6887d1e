"""`predictor predict-batch` on 3,000 queries (target: under a minute on two cores), beside `predict` per query.

Queries: the eight zoo models and NAS-Bench-201 networks × the 12 shared spec sheets × their targets and
batch sizes, written as Q.csv with relative paths. Times the whole command (process start, checkpoint
load, featurizing each model once, predicting) and, for scale, a few single `predict` calls.

    python bench/predict_batch.py --checkpoint CKPT [--queries 3000]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx
import yaml

from edgeatlas.console.zoo import build_zoo
from edgeatlas.predictor.datasets import nasbench201 as nb

SHARED_SPECS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nasbench201"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--queries", type=int, default=3000)
    args = ap.parse_args()
    data_dir = SHARED_SPECS if (SHARED_SPECS / "specs").is_dir() else nb.SAMPLE_DIR
    data = nb.load(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = [p.name for p in build_zoo(root)]
        for row in data.rows[:40]:
            name = f"nb201-{row.index}.onnx"
            onnx.save(nb.nasbench201(name, row.arch), str(root / name))
            models.append(name)
        shutil.copytree(data_dir / "specs", root / "specs")
        raw = yaml.safe_load((data_dir / "settings.yaml").read_text())
        combos = [(entry["spec"], entry["target"], str(entry.get("batch") or ""), entry.get("runtime") or "")
                  for entry in raw.values()]
        rows = []
        while len(rows) < args.queries:
            for m in models:
                for spec, target, batch, runtime in combos:
                    rows.append((m, spec, target, batch, runtime))
        rows = rows[:args.queries]
        with open(root / "q.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model_path", "spec_path", "target", "batch", "runtime"])
            w.writerows(rows)
        cmd = [sys.executable, "-m", "edgeatlas"]
        start = time.perf_counter()
        proc = subprocess.run(cmd + ["predictor", "predict-batch", "--checkpoint", args.checkpoint, "--queries",
                                     str(root / "q.csv"), "--out", str(root / "p.csv")],
                              capture_output=True, text=True)
        batch_s = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        singles = []
        for m, spec, target, batch, runtime in rows[:5]:
            start = time.perf_counter()
            subprocess.run(cmd + ["predict", "--checkpoint", args.checkpoint, "--spec", str(root / spec), "--model",
                                  str(root / m), "--target", target, "--batch", batch or "1", "--json"],
                           capture_output=True, check=True)
            singles.append(time.perf_counter() - start)
        single = sorted(singles)[len(singles) // 2]
        print(f"queries                 {len(rows)} ({len(models)} models × {len(combos)} settings)")
        print(f"predict-batch           {batch_s:.1f} s total, {1000 * batch_s / len(rows):.2f} ms per query")
        print(f"predict (one query)     {single:.2f} s per call (median of {len(singles)})")
        print(f"ratio                   {single * len(rows) / batch_s:.0f}× faster than one call per query")


if __name__ == "__main__":
    main()
