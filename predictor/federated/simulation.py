"""Runs the federated training on Flower's simulation engine: each device's samples a virtual SuperNode."""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from edgeatlas.predictor.data import Samples
from edgeatlas.predictor.federated.plan import FederatedPlan
from edgeatlas.predictor.federated.serverapp import Outcome
from edgeatlas.protos.processes import stop_found


def run(partitions: list[Samples], plan: FederatedPlan, workdir: Path | None = None) -> Outcome:
    """One SuperNode per partition, plan.clients of them sampled each round; the clients run one at a time in
    Ray workers (CPU-bound DP-SGD)."""
    # flwr must never build a fresh environment (and download a CUDA torch) for the app
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    from flwr.simulation import run_simulation

    from edgeatlas.predictor.federated.clientapp import app as client_app
    from edgeatlas.predictor.federated.serverapp import server_app

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp)
        for i, part in enumerate(partitions):
            (folder / f"{i}.pkl").write_bytes(pickle.dumps(part.compact()))
        # plan.clients of them train each round (all, when it asks for more than there are)
        plan = replace(plan, clients=min(plan.clients, len(partitions)) or len(partitions), partitions=str(folder))
        plan.check()
        out = folder / "outcome.pt"
        cpus = max(1, os.cpu_count() or 1)
        before = children()
        try:
            start_ray(cpus)
            run_simulation(server_app=server_app(plan, out), client_app=client_app,
                           num_supernodes=len(partitions),
                           backend_config={"client_resources": {"num_cpus": cpus, "num_gpus": 0.0}})
        finally:
            import psutil
            import ray

            ray.shutdown()  # Flower shuts Ray down itself, unless the run failed before its backend started
            # Ray's processes end after its shutdown, some a moment later, and one may start a helper as it
            # ends; a next run's Ray would race them: waited for until none is left (60 s at most).
            deadline = time.monotonic() + 60
            while (left := children() - before) and time.monotonic() < deadline:
                psutil.wait_procs(list(left), timeout=max(0.1, deadline - time.monotonic()))
        if not out.exists():
            raise RuntimeError("federated simulation ended without an outcome (see Flower's log above)")
        import torch

        saved = torch.load(str(out), weights_only=True)  # JSON text and tensors only
    return outcome_from(saved)


def start_ray(cpus: int, attempts: int = 3) -> None:
    """Starts Ray for Flower's backend, which then uses it (and shuts it down): a start is retried, because Ray
    gives its GCS server and its raylet a fixed 30 s each to come up, and on a loaded CI machine they did not."""
    import ray

    # what Flower's backend passes when it starts Ray itself: its workers import what this process can
    pythonpath = os.pathsep.join(filter(None, [*sys.path, os.environ.get("PYTHONPATH")]))
    for attempt in range(1, attempts + 1):
        before = children()
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
            return
        except Exception as e:  # Ray raises a bare Exception when its raylet is not up in its fixed 30 s
            ray.shutdown()
            stop_found(children() - before)  # a half-started node's processes, which Ray's shutdown does not know
            if attempt == attempts:
                raise RuntimeError(f"Ray did not start in {attempts} attempts: {e}") from e
            print(f"Ray did not start ({e}); trying again", file=sys.stderr)


def children() -> set:
    """This process's live descendants (zombies, already ended, left out)."""
    import psutil

    alive = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.add(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def outcome_from(saved: dict) -> Outcome:
    import json

    from edgeatlas.predictor.federated.serverapp import RoundRecord

    data = json.loads(saved["outcome"])
    return Outcome(plan=data["plan"], rounds=[RoundRecord(**r) for r in data["rounds"]], state=saved["state"])
