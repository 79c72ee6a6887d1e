"""The agent runner's p50 against a bare `InferenceSession.run` loop timed with perf_counter_ns.

Same session, threads and input; the two arms alternate in rounds within one run so that the
machine's noise falls on both. Prints p50/p90 of each arm and the ratio runner / bare (target: within 2 %).

    python bench/runner_overhead.py [--rounds 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeatlas.agent.runners import make_runner
from edgeatlas.coordinator.models import prepare
from edgeatlas.coordinator.zoo import build_zoo
from edgeatlas.protos.records import RunParams, Setting

MODELS = {"mlp-s": 400, "resnet-m": 40}  # model → timed calls per arm per round


def bare_loop(session, feeds, n: int) -> np.ndarray:
    run, clock = session.run, time.perf_counter_ns
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = clock()
        run(None, feeds)
        out[i] = clock() - t0
    return out / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_zoo(tmp, list(MODELS))
        print(f"runner vs bare InferenceSession.run loop; {args.rounds} interleaved rounds, "
              f"threads={args.threads}, batch=1")
        print(f"{'model':10} {'calls/arm':>9} {'runner p50':>11} {'bare p50':>9} {'ratio p50':>9} "
              f"{'runner p90':>11} {'bare p90':>9} {'ratio p90':>9}")
        for path in paths:
            n = MODELS[path.stem]
            prepared = prepare(path)
            ref = Path(tmp) / f"{path.stem}.npz"
            ref.write_bytes(prepared.reference_npz)
            runner = make_runner(str(path), Setting(threads=args.threads), str(ref))
            params = RunParams(warmup_iterations=0, min_iterations=n, min_duration_s=1e-6, max_duration_s=600)
            bare_loop(runner.session, runner.feeds, 50)  # shared warm-up
            runner_ms, bare_ms = [], []
            for r in range(args.rounds):
                arms = [("runner", lambda: runner.timed_loop(params)[0]),
                        ("bare", lambda: bare_loop(runner.session, runner.feeds, n))]
                for name, arm in (arms if r % 2 == 0 else arms[::-1]):  # alternate which goes first
                    (runner_ms if name == "runner" else bare_ms).append(arm())
            a, b = np.concatenate(runner_ms), np.concatenate(bare_ms)
            pa, pb = np.percentile(a, [50, 90]), np.percentile(b, [50, 90])
            print(f"{path.stem:10} {n * args.rounds:9d} {pa[0]:9.4f}ms {pb[0]:7.4f}ms {pa[0] / pb[0]:9.4f} "
                  f"{pa[1]:9.4f}ms {pb[1]:7.4f}ms {pa[1] / pb[1]:9.4f}")


if __name__ == "__main__":
    main()
