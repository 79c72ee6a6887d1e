"""The owner's own record of exact results: kept on the device, never sent (bounded in size).

results.jsonl holds one line per task (the last MAX_LINES); raw/<task_id>.npy the per-query latencies
in milliseconds (the last MAX_RAW_FILES tasks, at most MAX_RAW_VALUES values each).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgeatlas.agent.report import exact_record
from edgeatlas.protos.records import RunResult

MAX_LINES = 2000
MAX_RAW_FILES = 200
MAX_RAW_VALUES = 100_000


class LocalResults:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.raw_dir = self.path.parent / "raw"

    def add(self, model: str, task_id: int, result: RunResult, conditions: dict | None = None,
            model_sha256: str = "", model_format: str = "", inputs_json: str = "") -> None:
        """One line per task; `inputs_json`: the input spec it ran at (protos/inputs.py), so that what the
        device learns from later (federated training) sees the shapes it measured, not symbolic ones."""
        line = json.dumps({"at_s": time.time(), "model": model, "task_id": task_id, "model_sha256": model_sha256,
                           "model_format": model_format, "inputs_json": inputs_json, **exact_record(result),
                           "conditions": conditions or {}})
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        lines = (lines + [line])[-MAX_LINES:]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.path)
        if result.raw_ms is not None and len(result.raw_ms):
            self._keep_raw(task_id, np.asarray(result.raw_ms, np.float32))

    def _keep_raw(self, task_id: int, raw_ms: np.ndarray) -> None:
        self.raw_dir.mkdir(exist_ok=True)
        if raw_ms.size > MAX_RAW_VALUES:  # evenly spaced in time order: the run's shape survives
            raw_ms = raw_ms[np.linspace(0, raw_ms.size - 1, MAX_RAW_VALUES).astype(np.int64)]
        np.save(self.raw_dir / f"{task_id}.npy", raw_ms)
        files = sorted(self.raw_dir.glob("*.npy"), key=lambda p: p.stat().st_mtime)
        for old in files[:-MAX_RAW_FILES]:
            old.unlink()

    def raw(self, task_id: int) -> np.ndarray | None:
        path = self.raw_dir / f"{task_id}.npy"
        return np.load(path) if path.exists() else None

    def all(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
