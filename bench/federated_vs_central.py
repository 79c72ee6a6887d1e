"""Federated DP training of the cost GNN against central training, on the shared NAS-Bench-201 data.

The data are partitioned by device: each device (spec sheet) is one client holding its own measurements
(a random sample of networks, on each of its settings). Three devices, a phone, a CPU server and a GPU,
are held out of every training. The same GNN (predictor/gnn.py) is trained three ways:
  (a) central, no DP: the coordinator's trainer (models.GNNEnsemble, one member) on every device's data;
  (b) central DP-SGD: Opacus on every device's data pooled, at ε per measurement;
  (c) federated DP: Flower's simulation engine, one client per device, DP-SGD on each (the same ε per
      measurement, over all rounds), updates clipped on the device and the aggregate noised on the server.
Each is scored on the held-out devices (the GNN alone, no anchoring): MAPE and Spearman per setting,
averaged. Prints the table with the ε spent and the wall time of each.

    python bench/federated_vs_central.py [--networks 300] [--rounds 5] [--epsilon 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np

from edgeatlas.predictor.data import Samples, load_dir
from edgeatlas.predictor.datasets import nasbench201 as nb
from edgeatlas.predictor.evaluate import score
from edgeatlas.predictor.federated import dpsgd, simulation
from edgeatlas.predictor.federated.plan import FederatedPlan
from edgeatlas.predictor.models import GNNEnsemble, TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nasbench201"
HELD_OUT = ("Samsung Galaxy A50", "Intel Xeon Gold 6240", "NVIDIA GeForce RTX 2080 Ti")


def per_device(data: Samples, networks: int, rng: np.random.Generator) -> tuple[list[Samples], Samples]:
    """(one sample set per training device, each its own random networks; the held-out devices' samples)."""
    device = data.device_of()
    parts = []
    for name in sorted(set(device) - set(HELD_OUT)):
        mine = np.flatnonzero(device == name)
        picks = rng.choice(np.unique(data.graph[mine]), networks, replace=False)
        parts.append(data.where((device == name) & np.isin(data.graph, picks)))
    held = np.isin(device, HELD_OUT)
    test_networks = rng.choice(np.unique(data.graph), 1000, replace=False)
    return parts, data.where(held & np.isin(data.graph, test_networks))


def pooled(parts: list[Samples]) -> Samples:
    return Samples(parts[0].graphs, parts[0].settings, np.concatenate([p.graph for p in parts]),
                   np.concatenate([p.setting for p in parts]), np.concatenate([p.latency_ms for p in parts]))


def evaluate(state: dict, hw_mean: np.ndarray, hw_std: np.ndarray, test: Samples) -> tuple[float, float]:
    gnn = GNNEnsemble(states=[state], hw_mean=hw_mean, hw_std=hw_std, config={"gnn": {}})
    pred = gnn.predict(test)[0]
    scores = [score(pred[test.setting == s], test.latency_ms[test.setting == s]) for s in np.unique(test.setting)]
    return float(np.mean([s.mape for s in scores])), float(np.nanmean([s.spearman for s in scores]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED if (SHARED / "specs").is_dir() else nb.SAMPLE_DIR))
    ap.add_argument("--networks", type=int, default=300, help="networks each device measured")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epsilon", type=float, default=8.0, help="DP-SGD ε per measurement, whole run")
    ap.add_argument("--update-noise", type=float, default=FederatedPlan.update_noise)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    data = load_dir(args.data)
    parts, test = per_device(data, args.networks, np.random.default_rng(args.seed))
    union = pooled(parts)
    used = np.unique(union.setting)
    hw = np.stack([s.features for s in union.settings])[used]
    hw_mean, hw_std = hw.mean(0), hw.std(0) + 1e-3
    print(f"{len(parts)} training devices ({len(union)} measurements, {args.networks} networks each); held out: "
          f"{', '.join(HELD_OUT)} ({len(test)} measurements)")
    rows = []

    start = time.monotonic()
    central = GNNEnsemble().fit(union, None, TrainConfig(members=1, epochs=args.rounds), seed=args.seed)
    rows.append(("(a) central, no DP", *evaluate(central.states[0], central.hw_mean, central.hw_std, test),
                 math.inf, math.nan, time.monotonic() - start))

    start = time.monotonic()
    model = dpsgd.new_model(args.seed)
    cfg = dpsgd.DPConfig(epsilon=args.epsilon, epochs=args.rounds, total_epochs=args.rounds)
    result = dpsgd.train(model, union, hw_mean, hw_std, cfg)
    rows.append(("(b) central, DP-SGD", *evaluate(model.state_dict(), hw_mean, hw_std, test), result.epsilon,
                 math.nan, time.monotonic() - start))

    start = time.monotonic()
    plan = FederatedPlan(clients=len(parts), rounds=args.rounds, epsilon=args.epsilon, update_noise=args.update_noise,
                         hw_mean=hw_mean.tolist(), hw_std=hw_std.tolist(), seed=args.seed)
    outcome = simulation.run(parts, plan)
    last = outcome.rounds[-1]
    rows.append(("(c) federated, DP", *evaluate(outcome.state, hw_mean, hw_std, test), last.epsilon_measurement,
                 last.epsilon_device, time.monotonic() - start))

    print()
    print("federated rounds: round, mean device loss before → after local DP-SGD, ε per measurement (largest), "
          "ε per device (aggregate), mean update norm")
    for r in outcome.rounds:
        print(f"  {r.round:2d}  {r.loss_before:.4f} → {r.loss_after:.4f}  ε {r.epsilon_measurement:.2f}  "
              f"ε device {r.epsilon_device:.1f}  update {r.update_norm:.2f}")
    print()
    print(f"leave-hardware-out on {len(HELD_OUT)} devices, δ = {dpsgd.DELTA:g}")
    print(f"{'training':22s} {'MAPE %':>8s} {'Spearman':>9s} {'ε/measurement':>14s} {'ε/device':>9s} {'wall s':>7s}")
    for name, mape, rho, eps, eps_dev, wall in rows:
        print(f"{name:22s} {mape:8.1f} {rho:9.3f} {eps:14.2f} {eps_dev:9.1f} {wall:7.0f}")
    a, b, c = rows
    print(f"\nMAPE ratio to central without DP: central DP-SGD {b[1] / a[1]:.2f}×, federated {c[1] / a[1]:.2f}×; "
          f"federated / central DP-SGD {c[1] / b[1]:.2f}×")


if __name__ == "__main__":
    main()
