"""Utility of the private heat-map: error of a cell's geometric-mean latency against the noise floor.

For ε in {0.5, 1, 2, 4, 8} (per report, the default gaussian contract, δ = 1e-6) and N in
{10, 100, 1000} devices per cell: N devices with true latencies around 5 ms each release their p50
through the real mechanism (clip, grid, exact discrete noise); the coordinator's estimator folds the
releases. Prints the RMS error of the log geometric mean, the relative error it means, and its ratio
to the analytic floor σ/√N of the mechanism (target: within 1.2×). Writes a PNG of error vs N.

    python bench/dp_utility.py [--trials 100] [--out dp_utility.png]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from edgeatlas.agent.privacy.release import release_value
from edgeatlas.coordinator import aggregate
from edgeatlas.protos.privacy import PrivacyParams

EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
DEVICES = (10, 100, 1000)


def trial(params: PrivacyParams, n: int, rng: np.random.Generator) -> float:
    """Error of the estimated log geometric mean against the devices' true one."""
    true_logs = rng.normal(math.log(5.0), 0.3, size=n)
    folded = (0, 0.0, 0.0)
    for x in true_logs:
        folded = aggregate.fold_log(*folded, release_value(float(x), params, "log_p50_ms"))
    est = aggregate.estimate(*folded, noise_var_sum=n * params.noise_variance_log("log_p50_ms"))
    return math.log(est.value) - float(true_logs.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--out", default="dp_utility.png")
    parser.add_argument("--bounds-ms", default="0.01:10000", help="the contract's public bounds LO:HI")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    bounds = tuple(float(x) for x in args.bounds_ms.split(":"))
    base = PrivacyParams(bounds_ms=bounds)
    print(f"contract: {base.mechanism}, δ = {base.delta:g}, {len(base.statistics)} statistics per report, "
          f"bounds {base.bounds_ms[0]:g}..{base.bounds_ms[1]:g} ms; {args.trials} trials per row")
    print(f"{'ε':>5} {'N':>6} {'σ/√N (log)':>11} {'RMS error':>10} {'as a factor':>12} {'ratio':>6}")
    curves: dict[float, list[tuple[int, float, float]]] = {}
    for eps in EPSILONS:
        params = PrivacyParams(epsilon=eps, bounds_ms=bounds)
        sigma = math.sqrt(params.noise_variance_log("log_p50_ms"))
        for n in DEVICES:
            errors = np.array([trial(params, n, rng) for _ in range(args.trials)])
            rms, floor = float(np.sqrt(np.mean(errors ** 2))), sigma / math.sqrt(n)
            curves.setdefault(eps, []).append((n, rms, floor))
            factor = f"×{math.exp(rms):.3g}" if rms < 700 else "overflow"
            print(f"{eps:5g} {n:6d} {floor:11.3f} {rms:10.3f} {factor:>12} {rms / floor:6.2f}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for eps, points in curves.items():
        ns, rms, floor = zip(*points)
        line, = ax.plot(ns, rms, "o-", label=f"ε = {eps:g}")
        ax.plot(ns, floor, "--", color=line.get_color(), alpha=0.6)
    ax.set(xscale="log", yscale="log", xlabel="devices per cell (N)",
           ylabel="RMS error of log geometric mean", title="Private heat-map cell: error (—) vs floor σ/√N (--)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
