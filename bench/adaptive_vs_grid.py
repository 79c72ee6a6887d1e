"""Adaptive selection against random selection and a fixed grid, replayed on the shared NAS-Bench-201 data.

"Measuring" a cell (one network on one device setting) reveals its published latency. Each seed holds
three devices out (a phone, a CPU server, a GPU; a different three per seed), starts every strategy from
the same 20 random cells, and lets it choose more cells on the other devices:
- random: uniformly among the cells not yet measured;
- grid: a fixed suite, networks spread evenly over the FLOPs range, each measured on every setting in turn
  (what a static benchmark suite does);
- adaptive: rounds (predictor/acquisition.py): refit the surrogate, take the cells whose measurement most
  lowers its summed posterior variance over the cells still open, spread over settings and networks;
- adaptive-spec: the same, each open cell's variance weighted by how close its setting's spec features are
  to the held-out devices' (the hardware half of `campaign create --for-spec`: someone asked about those).
After 50, 100, 200, 400 and 800 measurements the same surrogate is trained on what each strategy chose
and scored on the held-out devices (MAPE, Spearman per setting, averaged). Prints the table (mean over
seeds), how many measurements each strategy needs to reach a given MAPE, and writes a PNG.

Two more columns say where the held-out error comes from:
- scaled: the held-out MAPE once each held-out setting's predictions are shifted by their median log error
  (an oracle that knows each unseen device's overall speed): what is left is the shape, which networks are
  slower than others there;
- fleet: the MAPE on 5,000 cells of the fleet's own devices that no strategy may measure (the heat-map's
  unfilled cells), where the choice of cells is all that differs.

    python bench/adaptive_vs_grid.py [--seeds 10] [--out adaptive_vs_grid.png]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeatlas.predictor import acquisition as acq
from edgeatlas.predictor.data import SUMMARY, Samples, load_dir
from edgeatlas.predictor.datasets import nasbench201 as nb
from edgeatlas.predictor.evaluate import score

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nasbench201"
CHECKPOINTS = (50, 100, 200, 400, 800)
SEED_CELLS = 20
CANDIDATES = acq.MAX_CANDIDATES  # cells weighed per adaptive round, drawn afresh from those not yet measured
EVAL_NETWORKS = 1000
FLEET_CELLS = 5000  # cells of the fleet's devices kept out of every strategy's reach, to score the fill-in
STRATEGIES = ("random", "grid", "adaptive", "adaptive-spec")
GROUPS = {  # one of each held out per seed, rotating
    "phone": ["Samsung Galaxy A50", "Google Pixel 3", "Essential Phone PH-1", "Samsung Galaxy S7"],
    "cpu": ["Intel Xeon Silver 4210R", "Intel Xeon Gold 6240", "Intel Xeon Silver 4114"],
    "gpu": ["NVIDIA TITAN RTX", "NVIDIA GeForce GTX 1080 Ti", "NVIDIA GeForce RTX 2080 Ti", "NVIDIA TITAN Xp",
            "NVIDIA GeForce GTX TITAN X"],
}


@dataclass
class Checkpoint:
    """The surrogate's errors after some measurements: MAPE in %, Spearman per setting, each a mean over settings."""

    mape: float  # on the held-out devices
    spearman: float
    scaled_mape: float  # on the held-out devices, each setting's overall speed given (the oracle above)
    fleet_mape: float  # on the fleet's cells that were never measurable


def per_setting(pred_log: np.ndarray, test: Samples, scaled: bool = False) -> list:
    """Scores per setting of test; scaled: shift each setting's predictions by their median log error first."""
    out = []
    for s in np.unique(test.setting):
        p, y = pred_log[test.setting == s], test.latency_ms[test.setting == s]
        out.append(score(p + np.median(np.log(y) - p) if scaled else p, y))
    return out


def evaluate(surrogate: acq.Surrogate, test: Samples, fleet: Samples) -> Checkpoint:
    pred, _ = surrogate.predict(test)
    scores = per_setting(pred, test)
    return Checkpoint(mape=float(np.mean([s.mape for s in scores])),
                      spearman=float(np.nanmean([s.spearman for s in scores])),
                      scaled_mape=float(np.mean([s.mape for s in per_setting(pred, test, scaled=True)])),
                      fleet_mape=float(np.mean([s.mape for s in per_setting(surrogate.predict(fleet)[0], fleet)])))


def grid_order(pool: Samples, rng: np.random.Generator) -> np.ndarray:
    """Pool indices in the order a fixed suite measures them: network by network, each on every setting."""
    flops = pool.graphs.summary[:, SUMMARY.index("log_flops")]
    networks = np.unique(pool.graph)
    ranked = networks[np.argsort(flops[networks], kind="stable")]
    # A suite of networks spread evenly over the FLOPs ranking, visited coarse to fine: the van der Corput
    # sequence 1/2, 1/4, 3/4, 1/8, ... of positions in the ranking.
    seen, suite = set(), []
    for i in range(1, 4 * len(networks)):
        position, denominator, k = 0.0, 1.0, i
        while k:
            denominator *= 2
            position += (k % 2) / denominator
            k //= 2
        g = int(ranked[min(len(ranked) - 1, int(position * len(ranked)))])
        if g not in seen:
            seen.add(g)
            suite.append(g)
        if len(suite) >= 1000:
            break
    rank = {g: i for i, g in enumerate(suite)}
    key = np.array([rank.get(int(g), len(suite)) for g in pool.graph], dtype=np.int64)
    return np.lexsort((rng.random(len(pool)), pool.setting, key))


def run_seed(data: Samples, seed: int, say) -> dict[str, list[Checkpoint]]:
    rng = np.random.default_rng(seed)
    held = [names[seed % len(names)] for names in GROUPS.values()]
    device = data.device_of()
    fleet_all = data.where(~np.isin(device, held))
    test_all = data.where(np.isin(device, held))
    networks = np.unique(test_all.graph)
    eval_networks = rng.choice(networks, min(EVAL_NETWORKS, len(networks)), replace=False)
    test = test_all.where(np.isin(test_all.graph, eval_networks))
    kept_out = np.zeros(len(fleet_all), dtype=bool)
    kept_out[rng.choice(len(fleet_all), min(FLEET_CELLS, len(fleet_all) // 4), replace=False)] = True
    pool, fleet = fleet_all.where(~kept_out), fleet_all.where(kept_out)
    start_cells = rng.choice(len(pool), SEED_CELLS, replace=False)
    say(f"seed {seed}: held out {', '.join(held)}; {len(pool)} cells to choose from, "
        f"{len(test)} held-out cells and {len(fleet)} unmeasurable fleet cells to score on")
    grid = grid_order(pool, rng)
    features = np.stack([st.features for st in data.settings])
    scale = np.abs(features[np.unique(pool.setting)]).mean(0) + 1e-6
    queried = features[np.unique(test_all.setting)]
    near = np.max([acq.similarity(features, q, scale) for q in queried], axis=0)  # [settings]
    out: dict[str, list[tuple[float, float]]] = {}
    for strategy in STRATEGIES:
        started = time.monotonic()
        chosen = list(start_cells)
        measured = np.zeros(len(pool), dtype=bool)
        measured[chosen] = True
        curve = []
        for target in CHECKPOINTS:
            while len(chosen) < target:
                if strategy == "random":
                    new = rng.choice(np.flatnonzero(~measured), target - len(chosen), replace=False)
                elif strategy == "grid":
                    new = grid[~measured[grid]][:target - len(chosen)]
                else:
                    k = min(target - len(chosen), acq.round_size(len(chosen), target))
                    surrogate = acq.Surrogate().fit(pool.where(measured), seed=seed)
                    open_cells = np.flatnonzero(~measured)
                    cand = rng.choice(open_cells, min(CANDIDATES, len(open_cells)), replace=False)
                    weight = near[pool.setting[cand]] if strategy == "adaptive-spec" else None
                    new = cand[acq.choose(surrogate, pool.where(cand), k, pool.setting[cand], pool.graph[cand],
                                          weight)]
                measured[new] = True
                chosen += [int(i) for i in new]
            surrogate = acq.Surrogate().fit(pool.where(measured), seed=seed)
            curve.append(evaluate(surrogate, test, fleet))
        out[strategy] = curve
        say(f"  {strategy:13s} " + "  ".join(f"{n}: {c.mape:5.1f} %" for n, c in zip(CHECKPOINTS, curve))
            + f"  (scaled {curve[-1].scaled_mape:4.1f} %, fleet {curve[-1].fleet_mape:4.1f} % at {CHECKPOINTS[-1]};"
            f" {time.monotonic() - started:.0f} s)")
    return out


def needed(curve: np.ndarray, goal: float) -> float:
    """Measurements to reach MAPE ≤ goal, interpolated on log(measurements) between checkpoints; inf if never."""
    for i, m in enumerate(curve):
        if m <= goal + 1e-9:
            if i == 0:
                return float(CHECKPOINTS[0])
            a, b = curve[i - 1], m
            frac = (a - goal) / (a - b) if a != b else 1.0
            lo, hi = math.log(CHECKPOINTS[i - 1]), math.log(CHECKPOINTS[i])
            return math.exp(lo + frac * (hi - lo))
    return math.inf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--data", default=str(SHARED if (SHARED / "specs").is_dir() else nb.SAMPLE_DIR))
    ap.add_argument("--out", default="adaptive_vs_grid.png")
    args = ap.parse_args()
    data = load_dir(args.data)
    print(f"{args.data}: {len(data)} published cells, {len(data.graphs)} networks, {len(data.settings)} settings "
          f"on {len(data.devices())} devices; surrogate: a GP over the roofline, blended with boosted trees "
          "where it knows little")
    runs = [run_seed(data, seed, print) for seed in range(args.seeds)]

    def mean(field: str) -> dict[str, np.ndarray]:
        return {s: np.mean([[getattr(c, field) for c in r[s]] for r in runs], axis=0) for s in STRATEGIES}

    def versus_random(field: str) -> str:
        """Per checkpoint row: each strategy's value minus random's on the same seed, ± standard error (seeds
        differ in which devices are held out, and some are much harder)."""
        rows = []
        for i in range(len(CHECKPOINTS)):
            parts = []
            for s in STRATEGIES[1:]:
                d = np.array([getattr(r[s][i], field) - getattr(r["random"][i], field) for r in runs])
                sem = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
                parts.append(f"{s}: {d.mean():+.1f} ±{sem:.1f}")
            rows.append("  ".join(parts))
        return rows

    mape, rho, scaled, fleet = mean("mape"), mean("spearman"), mean("scaled_mape"), mean("fleet_mape")
    tables = [(f"held-out-device MAPE % / Spearman, mean of {args.seeds} seeds", "mape",
               lambda s, i: f"{mape[s][i]:8.1f} / {rho[s][i]:5.3f}"),
              ("held-out-device MAPE % with each device's overall speed given (scaled)", "scaled_mape",
               lambda s, i: f"{scaled[s][i]:16.1f}"),
              ("MAPE % on the fleet's own cells that no strategy could measure (fleet)", "fleet_mape",
               lambda s, i: f"{fleet[s][i]:16.1f}")]
    for title, field, cell in tables:
        print(f"\n{title}")
        print(f"{'measurements':>12s} " + " ".join(f"{s:>16s}" for s in STRATEGIES)
              + "   minus random's on the same seed (± standard error)")
        for i, (n, row) in enumerate(zip(CHECKPOINTS, versus_random(field))):
            print(f"{n:12d} " + " ".join(cell(s, i) for s in STRATEGIES) + "   " + row)
    for title, curves in (("held-out-device", mape), ("fleet", fleet)):
        print(f"\nmeasurements needed to reach a {title} MAPE (interpolated between checkpoints; inf: not within 800)")
        goals = sorted({float(curves["random"][i]) for i in (1, 2, 3, 4)}, reverse=True)  # what random reaches
        print(f"{'MAPE %':>8s} " + " ".join(f"{s:>13s}" for s in STRATEGIES) + "  random / adaptive(-spec)")
        for goal in goals:
            need = {s: needed(curves[s], goal) for s in STRATEGIES}
            ratios = [need["random"] / need[s] if math.isfinite(need[s]) else math.nan
                      for s in ("adaptive", "adaptive-spec")]
            print(f"{goal:8.2f} " + " ".join(f"{need[s]:13.0f}" for s in STRATEGIES)
                  + "  " + " / ".join(f"{r:.2f}×" for r in ratios))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for s in STRATEGIES:
        axes[0].plot(CHECKPOINTS, mape[s], marker="o", label=s)
        axes[1].plot(CHECKPOINTS, rho[s], marker="o", label=s)
        axes[2].plot(CHECKPOINTS, fleet[s], marker="o", label=s)
    names = ("held-out-device MAPE (%)", "held-out-device Spearman", "fleet's unmeasured cells: MAPE (%)")
    for ax, name in zip(axes, names):
        ax.set_xscale("log")
        ax.set_xticks(CHECKPOINTS, [str(c) for c in CHECKPOINTS])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("measurements")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"NAS-Bench-201 replay, mean of {args.seeds} seeds")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
