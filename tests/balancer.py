"""Coordinator replicas on one PostgreSQL behind HAProxy (scripts/balancer), all on 127.0.0.1 and stopped
by PID: the topology of docker/compose.yaml, for the tests and bench/scale_out.py."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc

from tests.conftest import CoordinatorProcess, stop_pid

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica(workdir: Path, db_url: str, tokens_from: Path | None = None, *extra: str) -> CoordinatorProcess:
    """A coordinator on `db_url` with a health endpoint; sharing the first replica's tokens file."""
    workdir.mkdir(parents=True, exist_ok=True)
    if tokens_from is not None:
        (workdir / "tokens.json").write_bytes((tokens_from / "tokens.json").read_bytes())
    return CoordinatorProcess(workdir, workdir / "unused.db", db_url=db_url,
                              extra_args=("--health-listen", "127.0.0.1:0", *extra))


def role(r: CoordinatorProcess) -> str:
    """What a replica's health endpoint says: leader or follower (or down)."""
    try:
        with urllib.request.urlopen(f"http://{r.health}/healthz", timeout=2) as answer:
            return answer.read().decode().strip()
    except OSError:
        return "down"


class Balancer:
    """scripts/balancer (HAProxy) in front of the given replicas; `address` is what clients dial."""

    def __init__(self, workdir: Path, replicas: list[CoordinatorProcess]):
        self.workdir, self.replicas = workdir, replicas
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def start(self) -> Balancer:
        self.address = f"127.0.0.1:{free_port()}"
        argv = [str(ROOT / "scripts" / "balancer"), "--listen", self.address,
                "--config", str(self.workdir / "haproxy.cfg")]
        for r in self.replicas:
            argv += ["--replica", f"{r.address}={r.health}"]
        log = open(self.workdir / "haproxy.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while not self.reaches_a_replica():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the balancer did not start:\n" + (self.workdir / "haproxy.log").read_text())
            time.sleep(0.1)
        return self

    def reaches_a_replica(self) -> bool:
        """A call through the balancer gets a coordinator's own answer (no credential: UNAUTHENTICATED)."""
        from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

        with grpc.insecure_channel(self.address) as channel:
            try:
                agent_pb2_grpc.AgentServiceStub(channel).Heartbeat(agent_pb2.HeartbeatRequest(), timeout=2)
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return True

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
            self.proc = None
