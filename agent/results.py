"""The owner's own record of exact results: kept on the device, never sent (bounded in size)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgeatlas.protos.records import RunResult

MAX_LINES = 2000


class LocalResults:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def add(self, model: str, task_id: int, result: RunResult, conditions: dict | None = None) -> None:
        line = json.dumps({"at_s": time.time(), "model": model, "task_id": task_id,
                           "setting": result.setting.to_dict(), "stats": result.stats.to_dict(),
                           "valid": result.valid, "invalid_reason": result.invalid_reason,
                           "conditions": conditions or {}})
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        lines = (lines + [line])[-MAX_LINES:]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.path)

    def all(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
