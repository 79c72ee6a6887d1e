import hashlib

import pytest

from edgeatlas.agent.cache import ModelCache
from edgeatlas.agent.outbox import Outbox
from edgeatlas.protos.errors import IntegrityError
from edgeatlas.v1 import agent_pb2


def test_bytes_that_do_not_match_their_sha256_are_refused_and_not_kept(tmp_path):
    cache = ModelCache(tmp_path)
    good = b"model bytes"
    sha = hashlib.sha256(good).hexdigest()
    with pytest.raises(IntegrityError, match="refused"):
        cache.store(sha, [b"model ", b"bytez"], ".onnx")
    assert not cache.has(sha, ".onnx")
    assert list(tmp_path.iterdir()) == []
    path = cache.store(sha, [b"model ", b"bytes"], ".onnx")
    assert path.read_bytes() == good and cache.has(sha, ".onnx")


def test_outbox_survives_a_restart_and_drains(tmp_path):
    box = Outbox(tmp_path)
    for i in range(3):
        box.put(agent_pb2.ReportRequest(report_id=f"report-{i:04d}", task_id=i + 1))
    again = Outbox(tmp_path)  # a new process reading the same directory
    assert [r.report_id for r in again.pending()] == ["report-0000", "report-0001", "report-0002"]
    again.acknowledged("report-0001")
    again.rejected("report-0002", "INVALID_ARGUMENT: stats.p50_ms = nan")
    assert [r.report_id for r in again.pending()] == ["report-0000"]
    assert "nan" in (tmp_path / "rejected" / "report-0002.reason.txt").read_text()
