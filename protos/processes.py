"""Stopping processes by PID, the one way every room does it: SIGTERM, a shared grace period, then SIGKILL.

Never by name: only processes this code started (or their descendants) are signalled.
"""

from __future__ import annotations

import subprocess
import time
from typing import Callable, Iterable


def stop(procs: Iterable[subprocess.Popen], grace_s: float = 10.0,
         on_kill: Callable[[subprocess.Popen], None] | None = None) -> None:
    """Ends started processes: SIGTERM to those still running, then SIGKILL to any still there after
    grace_s (one period for all of them); `on_kill` hears of each one killed."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if on_kill is not None:
                on_kill(proc)
            proc.kill()
            proc.wait()


def stop_found(processes: Iterable, grace_s: float = 10.0) -> None:
    """The same for psutil.Process objects (processes found, not started here: a tree's descendants)."""
    import psutil

    processes = list(processes)
    for p in processes:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


def stop_tree(pid: int, grace_s: float = 10.0) -> None:
    """A process and every process under it (psutil finds them)."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    stop_found(root.children(recursive=True) + [root], grace_s)
