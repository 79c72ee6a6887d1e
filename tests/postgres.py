"""A throwaway PostgreSQL server for the tests: Debian's packages, a private cluster on 127.0.0.1,
stopped by the PID in its postmaster.pid."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def available() -> bool:
    return bool(BIN) and _user() is not None


def _user():
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.bin = BIN[-1]

    def _as_postgres(self, argv: list[str]) -> subprocess.CompletedProcess:
        user = _user()
        prefix = [] if os.getuid() == user.pw_uid else ["runuser", "-u", "postgres", "--"]
        return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=120)

    def start(self) -> "PostgresServer":
        user = _user()
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)
        proc = self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])
        if proc.returncode != 0:
            raise RuntimeError("initdb failed: " + proc.stderr)
        proc = self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "log"),
                                  "-o", f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=on", "start"])
        if proc.returncode != 0:
            raise RuntimeError("postgres did not start: " + proc.stderr + (self.root / "log").read_text())
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
