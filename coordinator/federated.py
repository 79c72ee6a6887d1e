"""Federated-train campaigns: a Flower SuperLink beside the coordinator, and the runs it is given.

The SuperLink (`flower-superlink`, and its `flower-superexec` child) listens where `serve --superlink`
says; opted-in agents' SuperNodes dial it. A federated-train campaign becomes one `flwr run` of the
predictor's Flower App (predictor/federated/) with its plan; when it ends, its weights become a new
predictor version (coordinator/predictions.py) with its evaluation and the privacy it spent, and the
campaign is done. Every process is started in its own process group and stopped by that group's id.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from edgeatlas.coordinator.store import Store
from edgeatlas.protos.errors import InvalidInput, Unavailable
from edgeatlas.protos.wire import check_address, free_port

log = logging.getLogger(__name__)

CONNECTION = "edgeatlas"
RUN_TIMEOUT_S = 6 * 3600


def flower_program(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    if not exe.exists():
        raise InvalidInput(f"{name} is not installed: federated training needs the federated extra "
                           "(pip install 'edgeatlas[coordinator,federated]')")
    return str(exe)


def app_dir() -> Path:
    import edgeatlas.predictor.federated as pkg

    return Path(pkg.__file__).parent / "app"


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the process group the process leads (it and its children), SIGKILL after grace_s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # a superexec child that outlived its parent
    except ProcessLookupError:
        pass
    proc.wait()


class SuperLink:
    """flower-superlink on `address` (HOST:PORT), with its state and logs in `workdir`."""

    def __init__(self, address: str, workdir: Path):
        check_address(address)
        self.host, _, port = address.rpartition(":")
        self.port = int(port) or free_port(self.host)
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()  # one run at a time

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1", FLWR_HOME=str(self.workdir / "flwr"))
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # superexec beside it
        return env

    def start(self, wait_s: float = 60.0) -> "SuperLink":
        exe = flower_program("flower-superlink")
        home = self.workdir / "flwr"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                          f'address = "{self.address}"\ninsecure = true\n')
        log_file = (self.workdir / "superlink.log").open("ab")
        self.proc = subprocess.Popen(
            [exe, "--insecure", "--host", self.host, "--port", str(self.port),
             "--database", str(self.workdir / "superlink.db"), "--disable-runtime-dependency-installation"],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env(),
            start_new_session=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"the Flower SuperLink exited at start (see {self.workdir / 'superlink.log'})")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    log.info("Flower SuperLink (pid %d) on %s", self.proc.pid, self.address)
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise Unavailable(f"the Flower SuperLink did not listen on {self.address} within {wait_s:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def run(self, plan_json: str, out: Path, timeout_s: float = RUN_TIMEOUT_S) -> None:
        """One `flwr run` of the predictor's app; returns once its ServerApp has written `out`."""
        exe = flower_program("flwr")
        out.unlink(missing_ok=True)  # only this run's ServerApp may answer
        config = out.with_suffix(".toml")
        config.write_text(f"plan = {json.dumps(plan_json)}\nout = {json.dumps(str(out))}\n")
        with self.lock, (out.with_suffix(".log")).open("ab") as log_file:
            proc = subprocess.Popen([exe, "run", str(app_dir()), CONNECTION, "--run-config", str(config), "--stream"],
                                    stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env(), start_new_session=True)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                stop_group(proc)
                raise Unavailable(f"the federated run took longer than {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not out.exists():
            raise Unavailable(f"the federated run failed (flwr run exit {proc.returncode}; log {out.with_suffix('.log')})")


class FederatedCampaigns:
    """Runs each federated-train campaign once, in a thread of its own, and records what it made."""

    def __init__(self, store: Store, link: SuperLink, predictors):
        self.store = store
        self.link = link
        self.predictors = predictors
        self.running: dict[int, threading.Thread] = {}

    def advance_all(self) -> list[int]:
        """Starts the runs of campaigns not started yet; the ids it started."""
        started = []
        for row in self.store.list_campaigns():
            if row.federated_json and row.status == "running" and row.id not in self.running:
                if "rounds" in json.loads(row.federated_json):
                    continue  # finished before a restart
                thread = threading.Thread(target=self.run, args=(row.id,), name=f"federated-{row.id}", daemon=True)
                self.running[row.id] = thread
                thread.start()
                started.append(row.id)
        return started

    def run(self, campaign_id: int) -> None:
        from edgeatlas.predictor.federated.plan import FederatedPlan
        from edgeatlas.predictor.federated.simulation import outcome_from

        row = self.store.campaign(campaign_id)
        record = json.loads(row.federated_json)
        try:
            plan = FederatedPlan.from_json(json.dumps(record["plan"]))
            hw_mean, hw_std = self.predictors.hardware_standardization()
            plan = replace(plan, hw_mean=hw_mean, hw_std=hw_std)
            out = self.link.workdir / f"campaign-{campaign_id}.pt"  # its .log stays beside the SuperLink's
            log.info("federated campaign %d: %d devices, %d rounds, on SuperLink %s (log %s)", campaign_id,
                     plan.clients, plan.rounds, self.link.address, out.with_suffix(".log"))
            self.link.run(plan.to_json(), out)
            import torch

            outcome = outcome_from(torch.load(str(out), weights_only=True))  # JSON text and tensors only
            out.unlink()
            if len(outcome.rounds) < plan.rounds:  # a device's error makes Flower skip the round's aggregate
                raise Unavailable(f"{len(outcome.rounds)} of {plan.rounds} rounds completed; a device failed "
                                  f"(see {out.with_suffix('.log')})")
            version = self.predictors.from_federated(outcome, plan, trigger=f"federated campaign {campaign_id}")
            record.update(rounds=[r.__dict__ for r in outcome.rounds], predictor_version=version.version)
            reason = f"{len(outcome.rounds)} rounds; predictor version {version.version}"
        except Exception as exc:  # the campaign says why; the coordinator goes on
            log.exception("federated campaign %d failed", campaign_id)
            record.update(rounds=[], error=str(exc))
            reason = f"failed: {exc}"
        self.store.finish_federated(campaign_id, json.dumps(record), reason)
        log.info("federated campaign %d: %s", campaign_id, reason)
