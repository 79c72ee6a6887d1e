"""Opting in to federated training: a Flower SuperNode beside the agent, training on this device's own data.

The SuperNode (a `flower-supernode` process and its `flower-superexec` child) connects out to the
coordinator's SuperLink, like the agent does, and runs the predictor's ClientApp when a federated
training campaign asks: DP-SGD on the exact results this agent keeps (results.jsonl, the models in its
cache, spec.json), and only a clipped, noised model update leaves. It needs the `federated` extra
(torch, Opacus, Flower); the agent itself never imports them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.processes import stop_tree
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.protos.wire import free_port

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"


def check_installed() -> str:
    """The flower-supernode program beside this Python, or InvalidInput naming the missing extra."""
    exe = Path(sys.executable).with_name("flower-supernode")
    found = str(exe) if exe.exists() else shutil.which("flower-supernode")
    try:
        import importlib.util

        missing = [m for m in ("flwr", "opacus", "torch") if importlib.util.find_spec(m) is None]
    except ValueError:
        missing = []
    if not found or missing:
        raise InvalidInput("--federated needs the federated extra: pip install 'edgeatlas[agent,federated]'")
    return found


class SuperNode:
    """A flower-supernode for this agent's state directory, stopped by PID with its children."""

    def __init__(self, superlink: str, state_root: Path, spec: SpecSheet, port: int = 0, insecure: bool = True):
        self.superlink = superlink
        self.state_root = Path(state_root)
        self.spec = spec
        self.port = port
        self.insecure = insecure
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = check_installed()
        # What the ClientApp reads: the sheet this device enrolled with, next to its own results.
        (self.state_root / SPEC_FILE).write_text(self.spec.to_json())
        port = self.port or free_port()
        env = dict(os.environ, FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
        env["PATH"] = str(Path(exe).parent) + os.pathsep + env.get("PATH", "")  # its superexec is beside it
        cmd = [exe, "--superlink", self.superlink, "--host", "127.0.0.1", "--port", str(port),
               "--node-config", f"data='{self.state_root}'"]
        if self.insecure:
            cmd.insert(1, "--insecure")
        log_path = self.state_root / "supernode.log"
        self.proc = subprocess.Popen(cmd, stdout=log_path.open("ab"), stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        log.info("federated training: SuperNode (pid %d) to SuperLink %s; log %s", self.proc.pid, self.superlink,
                 log_path)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_tree(self.proc.pid)
        self.proc = None
