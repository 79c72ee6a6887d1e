"""The roofline baseline: per operator max(FLOPs / peak, bytes / bandwidth), summed over the graph."""

from __future__ import annotations

import math

import numpy as np

from edgeatlas.predictor.graph import OpGraph
from edgeatlas.predictor.hardware import Processor
from edgeatlas.protos.errors import InvalidInput


def node_seconds(flops: np.ndarray, nbytes: np.ndarray, proc: Processor,
                 int8: np.ndarray | None = None) -> np.ndarray:
    """Per-node roofline time; with only one of peak and bandwidth known, that one bounds alone. int8: the
    nodes whose multiply-adds are on int8 (`GraphSet.int8_work`), at the processor's int8 peak."""
    peak, bandwidth = proc.peak_flops, proc.bandwidth
    have_peak, have_bw = peak > 0, bandwidth > 0  # NaN compares False
    if not have_peak and not have_bw:
        raise InvalidInput(f"target {proc.target!r}: the spec sheet gives neither a peak (cpu.clusters or "
                           f"cpu.cores with max_ghz or base_ghz; accelerator.fp32_tflops) nor a bandwidth "
                           f"(memory.bandwidth_gbs; accelerator.bandwidth_gbs)")
    if have_peak and int8 is not None:
        peak = np.where(int8, proc.int8_peak, peak)
    compute = flops / peak if have_peak else np.zeros_like(flops)
    memory = nbytes / bandwidth if have_bw else np.zeros_like(nbytes)
    return np.maximum(compute, memory)


def latency_ms(graph: OpGraph, proc: Processor, batch: int) -> float:
    flops, nbytes = graph.at_batch(max(batch, 1))
    return float(node_seconds(flops, nbytes, proc, graph.int8_work()).sum() * 1e3)


def log_latency_ms(graph: OpGraph, proc: Processor, batch: int) -> float:
    return math.log(max(latency_ms(graph, proc, batch), 1e-9))
