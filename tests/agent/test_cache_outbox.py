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


@pytest.mark.parametrize("sha, suffix", [("../../../etc/passwd", ".onnx"), ("a" * 63 + "/", ""),
                                         ("A" * 64, ".onnx"), ("a" * 64, "/../../x"), ("a" * 64, ".py")])
def test_the_coordinators_sha256_and_format_never_become_a_path_outside_the_cache(tmp_path, sha, suffix):
    from edgeatlas.protos.errors import InvalidInput

    cache = ModelCache(tmp_path / "cache")
    for use in (lambda: cache.path(sha, suffix), lambda: cache.has(sha, suffix),
                lambda: cache.store(sha, [b"x"], suffix)):
        with pytest.raises(InvalidInput, match="not 64 hex digits|not onnx or gguf"):
            use()
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_state_directory_and_everything_in_it_are_the_owners_alone(tmp_path):
    import os
    import stat

    from edgeatlas.agent.state import StateDir

    old = os.umask(0o022)
    try:
        root = tmp_path / "state"
        (root / "raw").mkdir(parents=True)
        (root / "results.jsonl").write_text("{}\n")  # left readable by an older agent
        (root / "raw" / "r.npz").write_bytes(b"x")
        state = StateDir(root)
        (state.root / "ledger.jsonl").write_text("{}\n")  # made after: born private
        Outbox(state.outbox).put(agent_pb2.ReportRequest(report_id="report-0001", task_id=1))
        modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert modes and all(m == (0o700 if (root / p).is_dir() else 0o600) for p, m in modes.items()), modes
    finally:
        os.umask(old)
