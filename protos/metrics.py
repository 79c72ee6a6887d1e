"""Every named figure beyond the latency stats, defined once: unit, meaning and the range a report may carry.

docs/metrics.md explains them at length. TPOT and ITL differ on purpose (vLLM's convention):
TPOT is per request, the mean gap after the first token, (e2e − TTFT) / (output_tokens − 1);
ITL is per gap, every single interval between consecutive output tokens, pooled over requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeatlas.protos.errors import InvalidInput


@dataclass(frozen=True)
class Metric:
    unit: str
    lo: float  # the range a report may carry: outside it, the report is refused
    hi: float
    help: str


HOUR_MS = 3_600_000.0
FIGURES: dict[str, Metric] = {
    # LLM (llama.cpp), medians over the task's requests
    "ttft_ms": Metric("ms", 1e-3, HOUR_MS, "time to first token: request start → first output token, "
                                           "prefill of prompt_tokens included"),
    "ttft_p90_ms": Metric("ms", 1e-3, HOUR_MS, "90th percentile of TTFT over the requests"),
    "e2e_ms": Metric("ms", 1e-3, HOUR_MS, "end-to-end latency of one request: start → last output token"),
    "prefill_tps": Metric("tokens/s", 1e-3, 1e8, "prompt processing: prompt_tokens / TTFT (llama-bench's pp)"),
    "tpot_ms": Metric("ms", 1e-3, HOUR_MS, "time per output token, per request: (e2e − TTFT) / "
                                           "(output_tokens − 1)"),
    "decode_tps": Metric("tokens/s", 1e-3, 1e8, "decode tokens per second: 1000 / TPOT (llama-bench's tg)"),
    "itl_p50_ms": Metric("ms", 1e-3, HOUR_MS, "inter-token latency, median over every gap of every request"),
    "itl_p90_ms": Metric("ms", 1e-3, HOUR_MS, "inter-token latency, 90th percentile over every gap"),
    "itl_p99_ms": Metric("ms", 1e-3, HOUR_MS, "inter-token latency, 99th percentile over every gap"),
    # energy, from a meter (agent/meters/)
    "energy_mj": Metric("mJ", 1e-6, 1e9, "energy per inference (ONNX: per sample; LLM: per request)"),
    "energy_mj_per_token": Metric("mJ", 1e-6, 1e9, "LLM: energy per output token"),
    "power_w": Metric("W", 1e-4, 1e5, "average power over the timed run"),
    # LoadGen's own figures
    "early_stopping_p90_ms": Metric("ms", 1e-4, HOUR_MS, "single-stream: LoadGen's early-stopping estimate "
                                                         "of the p90 latency"),
    "early_stopping_p99_ms": Metric("ms", 1e-4, HOUR_MS, "multi-stream: LoadGen's early-stopping estimate "
                                                         "of the p99 query latency"),
    "server_qps": Metric("queries/s", 1e-3, 1e7, "server: the scheduled rate of the run (the highest "
                                                 "that met the bound, when searched)"),
    "offline_ips": Metric("samples/s", 1e-3, 1e9, "offline: samples completed per second × batch"),
}


def check_figures(figures: dict[str, float]) -> None:
    """One InvalidInput line for an unknown name or an impossible value."""
    for name, value in figures.items():
        metric = FIGURES.get(name)
        if metric is None:
            raise InvalidInput(f"metric {name!r} is not one EdgeAtlas defines (protos/metrics.py)")
        if not math.isfinite(value) or not metric.lo <= value <= metric.hi:
            raise InvalidInput(f"metric {name} = {value!r} is not in [{metric.lo:g}, {metric.hi:g}] {metric.unit}")
