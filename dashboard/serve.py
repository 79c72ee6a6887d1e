"""Starting the Streamlit server for the dashboard: for `edgeatlas dashboard`, the demo and the tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from edgeatlas.protos.errors import InvalidInput, Unavailable
from edgeatlas.protos.processes import stop as stop_processes
from edgeatlas.protos.wire import free_port

APP = Path(__file__).resolve().parent / "app.py"


def installed() -> bool:
    """Whether the `dashboard` extra (Streamlit) is installed here."""
    return importlib.util.find_spec("streamlit") is not None


def command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port",
            str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer", "--theme.base", "light"]


def environment(coordinator: str, admin_token: str | None, tls: dict[str, str] | None = None) -> dict[str, str]:
    """The token travels in the environment, never on a command line that `ps` shows."""
    env = dict(os.environ, EDGEATLAS_COORDINATOR=coordinator, EDGEATLAS_ADMIN_TOKEN=admin_token or "")
    env.update({k: v for k, v in (tls or {}).items() if v})
    return env


def start(coordinator: str, admin_token: str | None, host: str = "127.0.0.1", port: int = 0,
          log: Path | None = None, tls: dict[str, str] | None = None,
          wait_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """(the Streamlit process, its URL) once it answers its health check."""
    if not installed():
        raise InvalidInput('the dashboard needs the dashboard extra: pip install "edgeatlas[dashboard]"')
    port = port or free_port(host)
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(command(host, port), env=environment(coordinator, admin_token, tls), stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://{host}:{port}"
    wait_ready(proc, url, wait_s, log)
    return proc, url


def wait_ready(proc: subprocess.Popen, url: str, wait_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-800:] if log and Path(log).exists() else ""
            raise Unavailable(f"the dashboard exited with code {proc.returncode} before serving {url}. {tail}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise Unavailable(f"the dashboard did not answer at {url} within {wait_s:.0f} s")


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    stop_processes([proc], grace_s)
