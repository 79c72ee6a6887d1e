"""The metric catalogue: every number a heat-map cell holds, defined once (unit, direction, the range a
report may carry, where it comes from, whether and how it can be released privately). Every room reads it.

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
    """One number a heat-map cell can hold."""

    unit: str
    lo: float  # the range a report may carry: outside it, the report is refused
    hi: float
    help: str
    label: str = ""  # short name for a chart's axis ("" : the key)
    lower_is_better: bool = True
    stats: str = ""  # taken from this LatencyStats attribute; "": a figure a report carries by name
    released_as: str = ""  # the private statistic (protos/privacy.py) that releases it, if any
    release_bounds: tuple[float, float] | None = None  # its fixed public bounds; None: the campaign's bounds_ms
    always: bool = True  # False: released only where the run has it (an LLM figure, a meter's energy)
    derived_from: str = ""  # in a private release, a rate computed from this latency (post-processing, no budget)
    per_batch: bool = False  # the derived rate counts samples × batch


HOUR_MS = 3_600_000.0
METRICS: dict[str, Metric] = {
    # from every run's latency stats (protos/records.LatencyStats)
    "latency_p50_ms": Metric("ms", 1e-4, HOUR_MS, "median latency of a query", "latency p50", stats="p50_ms",
                             released_as="log_p50_ms"),
    "latency_p90_ms": Metric("ms", 1e-4, HOUR_MS, "90th percentile latency of a query", "latency p90",
                             stats="p90_ms", released_as="log_p90_ms"),
    "latency_p99_ms": Metric("ms", 1e-4, HOUR_MS, "99th percentile latency of a query", "latency p99",
                             stats="p99_ms", released_as="log_p99_ms"),
    "latency_mean_ms": Metric("ms", 1e-4, HOUR_MS, "mean latency of a query", "latency mean", stats="mean_ms",
                              released_as="log_mean_ms"),
    "throughput_ips": Metric("inferences/s", 1e-3, 1e9, "samples × batch per second", "throughput",
                             lower_is_better=False, stats="throughput_ips", derived_from="latency_mean_ms",
                             per_batch=True),
    # LLM (llama.cpp), medians over the task's requests
    "ttft_ms": Metric("ms", 1e-3, HOUR_MS, "time to first token: request start → first output token, "
                                           "prefill of prompt_tokens included", "time to first token",
                      released_as="log_ttft_ms", always=False),
    "ttft_p90_ms": Metric("ms", 1e-3, HOUR_MS, "90th percentile of TTFT over the requests", "TTFT p90"),
    "e2e_ms": Metric("ms", 1e-3, HOUR_MS, "end-to-end latency of one request: start → last output token",
                     "LLM request end-to-end"),
    "prefill_tps": Metric("tokens/s", 1e-3, 1e8, "prompt processing: prompt_tokens / TTFT (llama-bench's pp)",
                          "prefill tokens/s", lower_is_better=False),
    "tpot_ms": Metric("ms", 1e-3, HOUR_MS, "time per output token, per request: (e2e − TTFT) / "
                                           "(output_tokens − 1)", "time per output token",
                      released_as="log_tpot_ms", always=False),
    "decode_tps": Metric("tokens/s", 1e-3, 1e8, "decode tokens per second: 1000 / TPOT (llama-bench's tg)",
                         "decode tokens/s", lower_is_better=False, derived_from="tpot_ms"),
    "itl_p50_ms": Metric("ms", 1e-3, HOUR_MS, "inter-token latency, median over every gap of every request",
                         "inter-token latency p50"),
    "itl_p90_ms": Metric("ms", 1e-3, HOUR_MS, "inter-token latency, 90th percentile over every gap",
                         "inter-token latency p90"),
    "itl_p99_ms": Metric("ms", 1e-3, HOUR_MS, "inter-token latency, 99th percentile over every gap",
                         "inter-token latency p99", released_as="log_itl_p99_ms", always=False),
    # energy, from a meter (agent/meters/)
    "energy_mj": Metric("mJ", 1e-6, 1e9, "energy per inference (ONNX: per sample; LLM: per request)",
                        "energy per inference", released_as="log_energy_mj", release_bounds=(1e-3, 1e7),
                        always=False),
    "energy_mj_per_token": Metric("mJ", 1e-6, 1e9, "LLM: energy per output token", "energy per token"),
    "power_w": Metric("W", 1e-4, 1e5, "average power over the timed run", "average power"),
    # LoadGen's own figures
    "early_stopping_p90_ms": Metric("ms", 1e-4, HOUR_MS, "single-stream: LoadGen's early-stopping estimate "
                                                         "of the p90 latency", "LoadGen early-stopping p90"),
    "early_stopping_p99_ms": Metric("ms", 1e-4, HOUR_MS, "multi-stream: LoadGen's early-stopping estimate "
                                                         "of the p99 query latency", "LoadGen early-stopping p99"),
    "server_qps": Metric("queries/s", 1e-3, 1e7, "server: the scheduled rate of the run (the highest "
                                                 "that met the bound, when searched)",
                         "server QPS under the p99 bound", lower_is_better=False, released_as="log_server_qps",
                         release_bounds=(1e-2, 1e6), always=False),
    "offline_ips": Metric("samples/s", 1e-3, 1e9, "offline: samples completed per second × batch",
                          "offline throughput", lower_is_better=False),
}
# What a report carries by name, beside its latency stats.
FIGURES: dict[str, Metric] = {name: m for name, m in METRICS.items() if not m.stats}
# A private release's statistic → the metric it estimates.
RELEASED: dict[str, str] = {m.released_as: name for name, m in METRICS.items() if m.released_as}


def derived_log(name: str, latency_log_ms: float, batch: int) -> float:
    """ln of a derived rate per second from the ln of its source latency in ms: 1000 (× batch) / latency."""
    return math.log(1000.0 * (batch if METRICS[name].per_batch else 1)) - latency_log_ms


def label(name: str) -> str:
    """'throughput (inferences/s)': a metric's short name and unit; an unknown key as it is."""
    metric = METRICS.get(name)
    if metric is None:
        return name
    return f"{metric.label or name} ({metric.unit})"


def check_figures(figures: dict[str, float]) -> None:
    """One InvalidInput line for an unknown name or an impossible value."""
    for name, value in figures.items():
        metric = FIGURES.get(name)
        if metric is None:
            raise InvalidInput(f"metric {name!r} is not one EdgeAtlas defines (protos/metrics.py)")
        if not math.isfinite(value) or not metric.lo <= value <= metric.hi:
            raise InvalidInput(f"metric {name} = {value!r} is not in [{metric.lo:g}, {metric.hi:g}] {metric.unit}")
