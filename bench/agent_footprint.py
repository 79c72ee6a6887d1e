"""An idle agent's footprint: resident memory and CPU use of a running `edgeatlas agent run` over 60 s.

Starts a coordinator on 127.0.0.1 (SQLite in a temporary folder) and one agent as separate processes,
lets the agent enroll and settle, then samples the agent's RSS and CPU time once a second while it has
no task (it long-polls the coordinator and heartbeats). Prints mean and peak RSS and mean CPU %, beside
a bare Python interpreter's RSS. Targets: under 80 MB RSS, under 1 % CPU. Both processes are stopped by PID.

    python bench/agent_footprint.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgeatlas", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEATLAS_")}
        try:
            ready = tmp_path / "coordinator.json"
            coordinator = start(["coordinator", "serve", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--listen",
                                 "127.0.0.1:0", "--tokens-file", str(tmp_path / "tokens.json"),
                                 "--ready-file", str(ready)], tmp_path / "coordinator.log", env)
            procs.append(coordinator)
            wait_for(ready, coordinator, "the coordinator")
            address = json.loads(ready.read_text())["address"]
            token = json.loads((tmp_path / "tokens.json").read_text())["enroll_token"]
            agent = start(["agent", "run", "--coordinator", address, "--state-dir", str(tmp_path / "agent")],
                          tmp_path / "agent.log", dict(env, EDGEATLAS_ENROLL_TOKEN=token))
            procs.append(agent)
            wait_for(tmp_path / "agent" / "identity.json", agent, "the agent")
            time.sleep(5)  # enrolled: let start-up work finish before measuring idle
            p = psutil.Process(agent.pid)
            bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            time.sleep(0.5)
            bare_rss = psutil.Process(bare.pid).memory_info().rss / 1e6
            bare.kill()
            bare.wait()
            rss, cpu0, t0 = [], p.cpu_times(), time.monotonic()
            for _ in range(args.seconds):
                time.sleep(1)
                rss.append(p.memory_info().rss / 1e6)
            cpu1, t1 = p.cpu_times(), time.monotonic()
            busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            print(f"idle agent over {t1 - t0:.0f} s (one agent enrolled with a coordinator on 127.0.0.1, no tasks)")
            print(f"  RSS      mean {sum(rss) / len(rss):.1f} MB, peak {max(rss):.1f} MB "
                  f"(a bare python interpreter: {bare_rss:.1f} MB)   target < 80 MB")
            print(f"  CPU      {100 * busy / (t1 - t0):.2f} % of one core ({busy:.2f} s of CPU time)   "
                  f"target < 1 %")
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


if __name__ == "__main__":
    main()
