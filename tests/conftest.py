"""Shared fixtures: the model zoo, and a real coordinator process on 127.0.0.1 stopped by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeatlas.protos.processes import stop

EXIT_STATUS = pytest.StashKey[int]()

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEATLAS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`edgeatlas ARGS` to its end. If the test is stopped first (its own timeout, pytest-timeout, Ctrl-C),
    the command gets SIGTERM and a grace period, so that one that started processes (the demo) stops them:
    a SIGKILL alone left a demo's coordinator and agents running through the rest of the suite."""
    proc = subprocess.Popen([sys.executable, "-m", "edgeatlas", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or cli_env(), cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        stop_pid(proc, grace_s=30)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop_pid(proc: subprocess.Popen, grace_s: float = 10) -> None:
    stop([proc], grace_s)


@dataclass
class CoordinatorProcess:
    """A coordinator started with `edgeatlas coordinator serve` in its own process."""

    workdir: Path
    db_path: Path
    proc: subprocess.Popen | None = None
    address: str = ""
    health: str = ""  # its health endpoint, when started with --health-listen
    port: int = 0
    k_anonymity: int = 1  # tests look at cells of one or two devices; the product default is 5
    db_url: str = ""  # default: SQLite at db_path
    extra_args: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()  # EDGEATLAS_* variables to start it with (cli_env drops the rest)

    @property
    def tokens(self) -> dict[str, str]:
        return json.loads((self.workdir / "tokens.json").read_text())

    @property
    def admin_token(self) -> str:
        return self.tokens["admin_token"]

    @property
    def enroll_token(self) -> str:
        return self.tokens["enroll_token"]

    def start(self) -> "CoordinatorProcess":
        ready = self.workdir / "ready.json"
        ready.unlink(missing_ok=True)
        log = open(self.workdir / "coordinator.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeatlas", "coordinator", "serve", "--db",
             self.db_url or f"sqlite:///{self.db_path}",
             "--listen", f"127.0.0.1:{self.port}", "--tokens-file", str(self.workdir / "tokens.json"),
             "--ready-file", str(ready), "--k-anonymity", str(self.k_anonymity), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT,
            env=cli_env(TMPDIR=str(self.workdir), **dict(self.extra_env)))  # what it makes there (a SuperLink's folder) is the test's
        log.close()
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("coordinator did not start:\n" + (self.workdir / "coordinator.log").read_text())
            time.sleep(0.05)
        ready_info = json.loads(ready.read_text())
        self.address, self.health = ready_info["address"], ready_info.get("health", "")
        self.port = int(self.address.rpartition(":")[2])
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def admin(self):
        from edgeatlas.protos.admin_client import AdminClient
        return AdminClient(self.address, self.admin_token)

    def env(self) -> dict[str, str]:
        return cli_env(EDGEATLAS_COORDINATOR=self.address, EDGEATLAS_ADMIN_TOKEN=self.admin_token)


@pytest.fixture
def coordinator(tmp_path):
    c = CoordinatorProcess(tmp_path, tmp_path / "coordinator.db").start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory) -> Path:
    from edgeatlas.console.zoo import build_zoo
    out = tmp_path_factory.mktemp("zoo")
    build_zoo(out)
    return out


@pytest.fixture(scope="session")
def prepared_zoo(zoo_dir):
    """name → PreparedModel (validated, summarised, with reference data), written beside the model."""
    from edgeatlas.console.models import prepare
    prepared = {}
    for path in sorted(zoo_dir.glob("*.onnx")):
        p = prepare(path)
        (zoo_dir / f"{p.name}.ref.npz").write_bytes(p.reference_npz)
        prepared[p.name] = p
    return prepared


@pytest.fixture(scope="session")
def gguf_zoo(tmp_path_factory) -> dict:
    """name → PreparedModel of the zoo's llama GGUFs, reference logits written beside each."""
    from edgeatlas.console.gguf_zoo import build_gguf_zoo
    from edgeatlas.console.models import prepare
    out = tmp_path_factory.mktemp("gguf")
    prepared = {}
    for path in build_gguf_zoo(out):
        p = prepare(path)
        (out / f"{p.name}.ref.npz").write_bytes(p.reference_npz)
        prepared[p.name] = p
    return prepared


def register(admin, prepared, names):
    from edgeatlas.console.models import summary_json
    for name in names:
        p = prepared[name]
        admin.add_model(p.path, p.name, p.reference_npz, summary_json(p), p.format, p.inputs_json)


@pytest.fixture(scope="session")
def postgres():
    import shutil
    import tempfile

    from tests.postgres import PostgresServer, available
    if not available():
        pytest.fail("PostgreSQL is not installed: scripts/test installs Debian's postgresql package")
    root = Path(tempfile.mkdtemp(prefix="edgeatlas-pg-"))  # under /tmp: the postgres user must reach it
    server = PostgresServer(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def coordinator_db(request, kind: str, tmp_path: Path) -> str:
    """CoordinatorProcess's db_url for a fresh database of this kind ("": SQLite in its directory)."""
    if kind == "sqlite":
        return ""
    return request.getfixturevalue("postgres").create_database(f"t{abs(hash(str(tmp_path))) % 10**12}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database of each kind the coordinator supports."""
    return coordinator_db(request, request.param, tmp_path) or f"sqlite:///{tmp_path / 'coordinator.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_coordinator(request, tmp_path):
    """A coordinator on each kind of database it supports."""
    c = CoordinatorProcess(tmp_path, tmp_path / "coordinator.db",
                           db_url=coordinator_db(request, request.param, tmp_path)).start()
    yield c
    c.stop()


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After the summary: a library that left a thread the interpreter waits for (Ray, after a crash of its
    own) would keep pytest from exiting, and CI would wait out its time limit instead of failing. The run
    ends here with pytest's own status instead, saying what was left."""
    left = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if left and EXIT_STATUS in config.stash:
        print(f"\nconftest: threads still running after the session ({', '.join(left)}): exiting now",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(config.stash[EXIT_STATUS])
