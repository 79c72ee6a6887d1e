"""Scenarios and their parameters, the shared contract: what a campaign may ask and what an agent accepts.

The names are MLPerf LoadGen's: single-stream (one query at a time, p90 latency), multi-stream (queries
of several samples back to back, p99), server (Poisson arrivals at a target QPS under a p99 latency
bound; without a target, the agent searches the highest QPS that meets the bound) and offline (all
samples at once, throughput). A sample is one inference call at the task's batch. LLM tasks
(runtime llama.cpp) run single-stream: one request of `prompt_tokens` in and `output_tokens` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeatlas.protos.errors import InvalidInput

SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
LLM_SCENARIOS = ("single-stream",)


@dataclass(frozen=True)
class Param:
    """One scenario parameter: a number in [lo, hi], its default, what it means."""

    lo: float
    hi: float
    default: float | None
    integer: bool
    help: str


PARAMS: dict[str, dict[str, Param]] = {
    "single-stream": {
        "prompt_tokens": Param(1, 8192, 128, True, "LLM: tokens of the prompt (llama-bench's pp)"),
        "output_tokens": Param(1, 4096, 32, True, "LLM: tokens generated (llama-bench's tg)"),
        "gpu_layers": Param(0, 999, 0, True, "LLM: layers offloaded to the GPU, where one exists"),
    },
    "multi-stream": {
        "samples_per_query": Param(1, 64, 8, True, "samples issued together as one query"),
    },
    "server": {
        "target_qps": Param(0.01, 100_000, None, False, "Poisson arrival rate; absent: search the highest "
                                                        "rate that meets the bound"),
        "latency_bound_ms": Param(0.1, 60_000, 100, False, "the p99 latency every valid run must meet"),
        "search_steps": Param(1, 12, 5, True, "runs of the QPS search (bisection)"),
    },
    "offline": {},
}

# Minimum queries per scenario when the campaign does not say: LoadGen's early-stopping estimate
# at p90 needs 64 queries and at p99 662; a fleet task must stay short on a phone.
MIN_QUERIES = {"single-stream": 64, "multi-stream": 662, "server": 662, "offline": 1}
# An LLM request takes 0.1 s on a server and 10 s on a phone: llama-bench repeats 5 times; ten requests
# give a median and a p90 and fit a phone's time (agent/runners/llamacpp.py stretches the cap to fit them).
LLM_REQUESTS = 10


def check(scenario: str, params: dict[str, str]) -> dict[str, float]:
    """The scenario's parameters as numbers with defaults filled in, or one InvalidInput line."""
    if scenario not in SCENARIOS:
        raise InvalidInput(f"scenario {scenario!r} is not one of {', '.join(SCENARIOS)}")
    known = PARAMS[scenario]
    values: dict[str, float] = {}
    for name, text in params.items():
        spec = known.get(name)
        if spec is None:
            raise InvalidInput(f"scenario {scenario} has no parameter {name!r}"
                               + (f" (it has {', '.join(known)})" if known else " (it takes none)"))
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise InvalidInput(f"scenario parameter {name}={text!r} is not a number") from None
        if not math.isfinite(value) or not spec.lo <= value <= spec.hi or (spec.integer and value != int(value)):
            kind = "an integer" if spec.integer else "a number"
            raise InvalidInput(f"scenario parameter {name}={text} is not {kind} in {spec.lo:g}..{spec.hi:g}")
        values[name] = value
    for name, spec in known.items():
        if name not in values and spec.default is not None:
            values[name] = float(spec.default)
    return values


def check_for_format(scenario: str, model_format: str, model_name: str) -> None:
    if model_format == "gguf" and scenario not in LLM_SCENARIOS:
        raise InvalidInput(f"model {model_name} is an LLM (GGUF): LLM tasks run {', '.join(LLM_SCENARIOS)}, "
                           f"not {scenario}; put it in a campaign of its own")
