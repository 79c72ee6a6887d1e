"""Typed records every room speaks; protos/convert.py translates them to and from the wire."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Setting:
    """How a number was measured; it travels beside every number."""

    target: str = "cpu"
    runtime: str = "onnxruntime"
    runtime_version: str = ""
    execution_provider: str = "CPUExecutionProvider"
    batch: int = 1
    threads: int = 0  # 0 = the runtime's default
    precision: str = "fp32"
    scenario: str = "single-stream"
    scenario_params: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        """The heat-map cell's setting key (runtime version is recorded, not keyed)."""
        return (f"{self.target}/{self.runtime}/{self.execution_provider or '?'}/b{self.batch or '?'}"
                f"/t{self.threads}/{self.precision}/{self.scenario}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunParams:
    """The rules of a valid run: warm-up, then at least min_iterations and min_duration_s."""

    warmup_iterations: int = 10
    min_iterations: int = 100
    min_duration_s: float = 1.0
    max_duration_s: float = 60.0


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed iterations of one run; milliseconds and inferences per second."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float
    iterations: int
    duration_s: float

    @classmethod
    def from_values(cls, latencies_ms: np.ndarray, batch: int = 1) -> "LatencyStats":
        """latencies_ms: [iterations] wall time of each call; batch samples per call."""
        lat = np.asarray(latencies_ms, dtype=np.float64)
        if lat.size == 0:
            raise ValueError("no latencies to summarise")
        p50, p90, p99 = np.percentile(lat, [50, 90, 99], method="linear")
        total_s = float(lat.sum()) / 1000.0
        return cls(
            p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
            mean_ms=float(lat.mean()), stdev_ms=float(lat.std(ddof=1)) if lat.size > 1 else 0.0,
            min_ms=float(lat.min()), max_ms=float(lat.max()),
            throughput_ips=batch * lat.size / total_s if total_s > 0 else math.inf,
            iterations=int(lat.size), duration_s=total_s,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fidelity:
    """Did the run compute the right thing? Outputs against the model's reference outputs."""

    checked: bool = False
    passed: bool = False
    max_abs_error: float = 0.0
    tolerance: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class ModelRef:
    """A model by content address, with its reference data's address."""

    sha256: str
    name: str
    format: str = "onnx"
    size_bytes: int = 0
    reference_sha256: str = ""
    reference_size_bytes: int = 0
    summary_json: str = "{}"


@dataclass(frozen=True)
class RunResult:
    """What a runner returns: the setting that actually ran, the stats, validity as data."""

    setting: Setting
    stats: LatencyStats
    fidelity: Fidelity
    valid: bool
    invalid_reason: str = ""
    started_ms: int = 0
    invalid_kind: str = ""  # the reason's category alone (fidelity | too-slow), for private reports
