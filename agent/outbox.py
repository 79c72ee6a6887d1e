"""Durable outbox: a report is on disk before it is sent and deleted only once acknowledged."""

from __future__ import annotations

import os
from pathlib import Path

from edgeatlas.v1 import agent_pb2


class Outbox:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "rejected").mkdir(exist_ok=True)

    def put(self, report: agent_pb2.ReportRequest) -> Path:
        path = self.root / f"{report.report_id}.pb"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(report.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        return path

    def pending(self) -> list[agent_pb2.ReportRequest]:
        """Reports not yet acknowledged, oldest first."""
        reports = []
        for path in sorted(self.root.glob("*.pb"), key=lambda p: p.stat().st_mtime):
            report = agent_pb2.ReportRequest()
            report.ParseFromString(path.read_bytes())
            reports.append(report)
        return reports

    def acknowledged(self, report_id: str) -> None:
        (self.root / f"{report_id}.pb").unlink(missing_ok=True)

    def rejected(self, report_id: str, reason: str) -> None:
        """Keeps a report the coordinator refused for good, with its reason, out of the queue."""
        path = self.root / f"{report_id}.pb"
        if path.exists():
            path.replace(self.root / "rejected" / path.name)
            (self.root / "rejected" / f"{report_id}.reason.txt").write_text(reason + "\n")

    def __len__(self) -> int:
        return len(list(self.root.glob("*.pb")))
