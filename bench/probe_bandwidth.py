"""How steady the probe's memory bandwidth is, probed again and again on one machine: the sheet's
`memory.bandwidth_gbs` as the agent reads it now (`agent.probe.copy_bandwidth_gbs`: the median of 15
copies over half a second) beside how it read it before stop 48 (the best of 5 copies back to back),
interleaved, so both see the same load.

A re-probe the predictor takes for the same machine must land within `BANDWIDTH_REMEASURED` of the sheet it
was trained on; the figure that matters is the spread (largest / smallest) over the rounds, and how many
pairs of probes are farther apart than that.

    .venv/bin/python bench/probe_bandwidth.py [--rounds 20] [--pause 1.0]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np

from edgeatlas.agent.probe import copy_bandwidth_gbs
from edgeatlas.predictor.models import BANDWIDTH_REMEASURED


def best_of_five(size_mib: int = 64) -> float:
    """The probe before stop 48: the fastest of 5 copies back to back (the first one faults pages in)."""
    src = np.ones(size_mib * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def summary(name: str, values: list[float]) -> str:
    pairs = list(itertools.combinations(values, 2))
    apart = sum(abs(math.log(a / b)) > BANDWIDTH_REMEASURED for a, b in pairs)
    return (f"{name:<28} median {np.median(values):6.2f} GB/s   spread ×{max(values) / min(values):.2f}   "
            f"cv {np.std(values) / np.mean(values):5.1%}   pairs beyond ×{math.exp(BANDWIDTH_REMEASURED):.2f}: "
            f"{apart}/{len(pairs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between rounds")
    args = ap.parse_args()
    old, new = [], []
    for r in range(args.rounds):
        first, second = (best_of_five, copy_bandwidth_gbs) if r % 2 == 0 else (copy_bandwidth_gbs, best_of_five)
        a, b = first(), second()
        o, n = (a, b) if first is best_of_five else (b, a)
        old.append(o)
        new.append(n)
        print(f"round {r + 1:2d}: best of 5 {o:6.2f}   median of 15 {n:6.2f} GB/s", flush=True)
        time.sleep(args.pause)
    print(summary("best of 5, back to back", old))
    print(summary("median of 15 over 0.5 s", new))
    print(f"spread ratio (old / new): {(max(old) / min(old)) / (max(new) / min(new)):.2f}")


if __name__ == "__main__":
    main()
