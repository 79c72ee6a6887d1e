"""The agent's timings against a bare `InferenceSession.run` loop timed with perf_counter_ns.

Same session, threads and input. Three arms alternate in rounds within one run so that the machine's
noise falls on all: the native single-stream loop (devices without LoadGen), MLPerf LoadGen's
SingleStream scenario (its own reported p90, as the agent reports it), and the bare loop. Prints each
arm's p50/p90 and the ratios to the bare loop (target: within 3 %).

    python bench/runner_overhead.py [--rounds 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeatlas.agent.runners import make_runner
from edgeatlas.agent.scenarios import loadgen, native
from edgeatlas.console.models import prepare
from edgeatlas.console.zoo import build_zoo
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
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_zoo(tmp, list(MODELS))
        print(f"agent arms vs a bare InferenceSession.run loop; {args.rounds} interleaved rounds, "
              f"threads={args.threads}, batch=1")
        print(f"{'model':9} {'calls/arm':>9} {'bare p50':>9} {'bare p90':>9} {'native p50':>10} {'ratio':>6} "
              f"{'native p90':>10} {'ratio':>6} {'LoadGen p50':>11} {'ratio':>6} {'LoadGen p90':>11} {'ratio':>6}")
        for path in paths:
            n = MODELS[path.stem]
            ref = Path(tmp) / f"{path.stem}.npz"
            ref.write_bytes(prepare(path).reference_npz)
            runner = make_runner(str(path), Setting(threads=args.threads), str(ref))
            work = runner.workload()
            params = RunParams(warmup_iterations=0, min_iterations=n, min_duration_s=1e-6, max_duration_s=600)
            bare_loop(runner.session, runner.feeds, 50)  # shared warm-up
            arms = {"bare": [], "native": [], "loadgen p50": [], "loadgen p90": []}
            for r in range(args.rounds):
                order = ["bare", "native", "loadgen"]
                for name in order[r % 3:] + order[:r % 3]:  # rotate which goes first
                    if name == "bare":
                        arms["bare"].append(bare_loop(runner.session, runner.feeds, n))
                    elif name == "native":
                        arms["native"].append(native.timed_loop(work, params)[0])
                    else:
                        run = loadgen.run("single-stream", {}, work, params)
                        arms["loadgen p50"].append(run.summary_ms["p50_ms"])
                        arms["loadgen p90"].append(run.summary_ms["p90_ms"])
            bare, nat = np.concatenate(arms["bare"]), np.concatenate(arms["native"])
            b50, b90 = np.percentile(bare, [50, 90])
            n50, n90 = np.percentile(nat, [50, 90])
            l50, l90 = np.median(arms["loadgen p50"]), np.median(arms["loadgen p90"])  # median over rounds
            print(f"{path.stem:9} {n * args.rounds:9d} {b50:7.4f}ms {b90:7.4f}ms {n50:8.4f}ms {n50 / b50:6.3f} "
                  f"{n90:8.4f}ms {n90 / b90:6.3f} {l50:9.4f}ms {l50 / b50:6.3f} {l90:9.4f}ms {l90 / b90:6.3f}")


if __name__ == "__main__":
    main()
