"""The test suite itself: a thread a library leaves behind cannot hold pytest past its summary."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

LEFT_BEHIND = '''
import threading

def test_leaves_a_thread():
    threading.Thread(target=threading.Event().wait, name="held-forever").start()  # not a daemon
    assert {outcome}
'''


@pytest.mark.parametrize("outcome, status", [("True", 0), ("False", 1)])
def test_a_thread_left_running_does_not_hold_the_run(tmp_path, outcome, status):
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from tests.conftest import EXIT_STATUS, pytest_sessionfinish, pytest_unconfigure  # noqa: F401\n")
    (tmp_path / "test_left.py").write_text(LEFT_BEHIND.format(outcome=outcome))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert "threads still running after the session (held-forever)" in proc.stderr
