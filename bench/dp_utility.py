"""Utility of the private heat-map: a cell's error under local DP and under secure aggregation, side by side.

For ε in {0.5, 1, 2, 8} per cell (the default gaussian contract: three statistics, δ = 1e-6) and N in
{10, 30, 100, 300, 1000} devices of one class, whose true p50 latencies lie around 5 ms (log-normal,
σ = 0.3 between devices), the error of the cell's log geometric mean against the devices' true one:
- ldp: each device releases through the real local mechanism (agent/privacy/release.py); the
  coordinator folds the releases (coordinator/aggregate.py);
- secure: a cohort of N; --dropout of it (20 %) vanishes after key exchange, and each survivor puts its
  clipped, gridded value in the sum with its noise (agent/secagg.noise_share: fixed and removable
  components of the exact discrete Gaussian, so that any ⌈2N/3⌉ survivors carry the full noise); the
  coordinator takes the removable components of the survivors the contract names back out
  (protos/secure.removable_noise, from their noise seeds). The masks cancel exactly
  (tests/coordinator/test_secagg.py) and are left out here. Decoded as the coordinator decodes
  (protos/secure.decode), and compared with the survivors' true mean;
- secure, bounds auto: the same, with the contract's bounds from the predictor's estimate for the class
  (protos/privacy.auto_bounds). The estimate is off by a log-normal error of σ = --predictor-error
  (0.15: this machine's fingerprint-calibrated MAPE was 12 %) and its 80 % interval is calibrated.
Printed per row: RMS error (log) and as a factor; its ratio to the mechanism's own floor (its noise σ
over the devices counted); the secure rows also against a trusted curator's floor (the σ central DP
adds for the same contract, its clip count included, over the survivors): what distributing the noise and
tolerating dropouts cost. The published noise is the central σ to rounding whoever survives, so that
ratio is 1 but for the grid's rounding and the trials' sampling error (±9 % a row at 60 trials); the
last lines pool every row's trials into one ratio and hold the figures against the issue's targets.
With bounds from the predictor, the ratio to the floor grows with N: the noise shrinks as 1/N while the
bias of clipping the devices far from the estimate does not (the clip count released with the sum
shows it). Writes a PNG of error vs N.

    python bench/dp_utility.py [--trials 60] [--dropout 0.2] [--out dp_utility.png]
"""

from __future__ import annotations

import argparse
import math
import secrets

import numpy as np

from edgeatlas.agent.privacy.release import release_value
from edgeatlas.agent.secagg import cell_values, noise_share
from edgeatlas.coordinator import aggregate
from edgeatlas.protos.privacy import PrivacyParams, auto_bounds
from edgeatlas.protos.secure import SecureContract, decode, removable_noise

EPSILONS = (0.5, 1.0, 2.0, 8.0)
DEVICES = (10, 30, 100, 300, 1000)
STAT = "log_p50_ms"
TRUE_MS, SPREAD = 5.0, 0.3


def devices(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(math.log(TRUE_MS), SPREAD, size=n)


def ldp_trial(params: PrivacyParams, n: int, rng: np.random.Generator) -> float:
    true_logs = devices(n, rng)
    folded = (0, 0.0, 0.0)
    for x in true_logs:
        folded = aggregate.fold_log(*folded, release_value(float(x), params, STAT))
    est = aggregate.estimate(*folded, noise_var_sum=n * params.noise_variance_log(STAT))
    return math.log(est.value) - float(true_logs.mean())


def secure_trial(params: PrivacyParams, n: int, survivors: int, rng: np.random.Generator,
                 predictor_error: float | None) -> float:
    """One cohort's error; with predictor_error, the bounds come from a predictor that far off."""
    true_logs = devices(n, rng)[:survivors]
    if predictor_error is not None:
        estimate = math.exp(float(true_logs.mean()) + rng.normal(0, predictor_error))
        half = 1.2816 * predictor_error  # a calibrated 80 % interval
        params = PrivacyParams(epsilon=params.epsilon, bounds_ms=auto_bounds(
            estimate, estimate * math.exp(-half), estimate * math.exp(half)))
    contract = SecureContract.for_cohort(params, 1, n)
    total = np.zeros(contract.dim, dtype=np.int64)
    noise_seeds = [secrets.token_bytes(16) for _ in true_logs]
    for x, noise_seed in zip(true_logs, noise_seeds):
        total += cell_values(contract, {s: float(x) for s in params.statistics})
        total += noise_share(contract, noise_seed)
    for u in contract.denoise(list(range(survivors))):  # what the coordinator takes back out
        total -= removable_noise(contract, noise_seeds[u])
    cell, = decode(contract, [int(v) for v in total], [survivors], survivors)
    return cell.log_means[STAT] - float(true_logs.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--out", default="dp_utility.png")
    parser.add_argument("--bounds-ms", default="0.01:10000", help="the fixed contract's public bounds LO:HI")
    parser.add_argument("--dropout", type=float, default=0.2, help="share of a cohort lost after key exchange")
    parser.add_argument("--predictor-error", type=float, default=0.15, help="log σ of the predictor's estimate")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    bounds = tuple(float(x) for x in args.bounds_ms.split(":"))
    base = PrivacyParams(bounds_ms=bounds)
    print(f"contract: {base.mechanism}, δ = {base.delta:g}, {len(base.statistics)} statistics per cell, "
          f"fixed bounds {base.bounds_ms[0]:g}..{base.bounds_ms[1]:g} ms; {args.trials} trials per row; "
          f"secure rounds publish with ⌈2N/3⌉ survivors, {args.dropout:.0%} drop out; auto bounds from a predictor off by σ = "
          f"{args.predictor_error:g} (log)")
    print(f"{'ε':>5} {'N':>5} | {'ldp RMS':>8} {'factor':>9} {'/floor':>6} | {'secure RMS':>10} {'factor':>7} "
          f"{'/floor':>6} {'/central':>8} | {'auto RMS':>8} {'factor':>7} {'/floor':>6} {'/central':>8}")
    curves: dict[str, list[tuple[float, int, float]]] = {"ldp": [], "secure": [], "secure, bounds auto": []}
    pooled: list[float] = []  # the secure column's squared errors over the central floor
    for eps in EPSILONS:
        params = PrivacyParams(epsilon=eps, bounds_ms=bounds)
        ldp_sigma = math.sqrt(params.noise_variance_log(STAT))
        for n in DEVICES:
            contract = SecureContract.for_cohort(params, 1, n)
            alive = max(contract.min_survivors, n - round(args.dropout * n))
            own = math.sqrt(contract.noise_variance_log(STAT, alive)) / alive
            central = math.sqrt(contract.sigma2) * params.step_log(STAT) / alive
            ldp = float(np.sqrt(np.mean([ldp_trial(params, n, rng) ** 2 for _ in range(args.trials)])))
            sec_errors = np.array([secure_trial(params, n, alive, rng, None) for _ in range(args.trials)])
            auto_errors = np.array([secure_trial(params, n, alive, rng, args.predictor_error)
                                    for _ in range(args.trials)])
            sec, auto = float(np.sqrt(np.mean(sec_errors ** 2))), float(np.sqrt(np.mean(auto_errors ** 2)))
            # the auto contract's floor varies with its bounds; its typical width is that of a centred interval
            half = max(1.2816 * args.predictor_error, math.log(1.25))
            auto_params = PrivacyParams(epsilon=eps, bounds_ms=(math.exp(-2 * half), math.exp(2 * half)))
            auto_contract = SecureContract.for_cohort(auto_params, 1, n)
            auto_own = math.sqrt(auto_contract.noise_variance_log(STAT, alive)) / alive
            auto_central = math.sqrt(auto_contract.sigma2) * auto_params.step_log(STAT) / alive
            for name, rms in (("ldp", ldp), ("secure", sec), ("secure, bounds auto", auto)):
                curves[name].append((eps, n, rms))
            pooled += list((sec_errors / central) ** 2)
            print(f"{eps:5g} {n:5d} | {ldp:8.3f} {factor(ldp):>9} {ldp / (ldp_sigma / math.sqrt(n)):6.2f} | "
                  f"{sec:10.3f} {factor(sec):>7} {sec / own:6.2f} {sec / central:8.2f} | "
                  f"{auto:8.3f} {factor(auto):>7} {auto / auto_own:6.2f} {auto / auto_central:8.2f}")
    ratio = math.sqrt(float(np.mean(pooled)))
    print(f"secure: RMS error / central floor over all {len(pooled)} trials = {ratio:.3f} "
          f"(±{ratio / math.sqrt(2 * len(pooled)):.3f} sampling error; target ≤ 1.2)")
    auto = {n: rms for eps, n, rms in curves["secure, bounds auto"] if eps == 1.0}
    for n, target in ((100, 1.16), (1000, 1.05)):
        if n in auto:
            print(f"secure, bounds auto, ε = 1, N = {n}: {factor(auto[n])} (target ≤ ×{target:g})")
    plot(curves, args.out)


def factor(rms: float) -> str:
    return f"×{math.exp(rms):.3g}" if rms < 700 else "overflow"


def plot(curves: dict[str, list[tuple[float, int, float]]], out: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"ldp": ":", "secure": "--", "secure, bounds auto": "-"}
    colours = {}
    for name, points in curves.items():
        for eps in EPSILONS:
            ns = [n for e, n, _ in points if e == eps]
            rms = [r for e, _, r in points if e == eps]
            line, = ax.plot(ns, rms, styles[name], marker="o", ms=3, color=colours.get(eps),
                            label=f"{name}, ε = {eps:g}")
            colours.setdefault(eps, line.get_color())
    ax.set(xscale="log", yscale="log", xlabel="devices per cell (N)", ylabel="RMS error of log geometric mean",
           title="Private heat-map cell: local DP (:) vs secure aggregation (--, — bounds auto)")
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
