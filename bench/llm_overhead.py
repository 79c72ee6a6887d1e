"""The llama.cpp runner's decode tokens/s against a bare llama-cpp-python token loop.

Same Llama object (model, context, threads), same prompt and output length. The bare arm is the
shortest loop a user would write: evaluate the prompt, then evaluate one greedy token at a time, and
time the decode part with perf_counter_ns. Arms alternate in rounds within one run; prints each arm's
median decode tokens/s and TTFT, and the ratios runner / bare (target: within 3 %).

    python bench/llm_overhead.py [--rounds 10] [--requests 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from edgeatlas.agent.runners import make_runner
from edgeatlas.console.gguf_zoo import build_gguf_zoo
from edgeatlas.protos.records import RunParams, Setting

PROMPT, OUTPUT = 64, 64


def bare_requests(runner, requests: int) -> tuple[list[float], list[float]]:
    """(decode tokens/s, TTFT ms) of each request, the bare way."""
    llm, prompt, n_out = runner.llm, runner.prompt, runner.n_out
    import llama_cpp
    n_vocab = llm.n_vocab()
    tps, ttft = [], []
    for _ in range(requests):
        t0 = time.perf_counter_ns()
        llm.reset()
        llm.eval(prompt)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        token = int(logits.argmax())
        first = time.perf_counter_ns()
        for _ in range(n_out - 1):
            llm.eval([token])
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            token = int(logits.argmax())
        last = time.perf_counter_ns()
        tps.append((n_out - 1) * 1e9 / (last - first))
        ttft.append((first - t0) / 1e6)
    return tps, ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=5, help="requests per arm per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"llama.cpp runner vs a bare llama-cpp-python loop; {args.rounds} interleaved rounds of "
              f"{args.requests} requests per arm, {PROMPT} prompt + {OUTPUT} output tokens, threads={args.threads}")
        print(f"{'model':8} {'bare tok/s':>10} {'runner tok/s':>12} {'ratio':>6} {'bare TTFT':>10} "
              f"{'runner TTFT':>11} {'ratio':>6}")
        for path in build_gguf_zoo(tmp):
            setting = Setting(runtime="llama.cpp", threads=args.threads,
                              scenario_params={"prompt_tokens": str(PROMPT), "output_tokens": str(OUTPUT)})
            runner = make_runner(str(path), setting)
            params = RunParams(warmup_iterations=0, min_iterations=args.requests, min_duration_s=1e-6,
                               max_duration_s=600)
            bare_requests(runner, 2)  # shared warm-up
            bare_tps, bare_ttft, run_tps, run_ttft = [], [], [], []
            for r in range(args.rounds):
                for arm in (("bare", "runner") if r % 2 == 0 else ("runner", "bare")):
                    if arm == "bare":
                        tps, ttft = bare_requests(runner, args.requests)
                        bare_tps += tps
                        bare_ttft += ttft
                    else:
                        llm = runner.run(params).llm
                        tpot = (llm.e2e_ms - llm.ttft_ms) / (llm.output_tokens - 1)
                        run_tps += list(1000.0 / tpot)
                        run_ttft += list(llm.ttft_ms)
            b, r_ = np.median(bare_tps), np.median(run_tps)
            bt, rt = np.median(bare_ttft), np.median(run_ttft)
            print(f"{path.stem:8} {b:10,.0f} {r_:12,.0f} {r_ / b:6.3f} {bt:8.3f}ms {rt:9.3f}ms {rt / bt:6.3f}")


if __name__ == "__main__":
    main()
