"""Typed records every room speaks; protos/convert.py translates them to and from the wire."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from edgeatlas.protos.errors import InvalidInput


def flat_dict(record) -> dict[str, Any]:
    """A record of plain fields as a dict, its dict fields copied: what dataclasses.asdict gives for these
    records, at a tenth of the cost (the coordinator writes several per report)."""
    return {name: dict(v) if isinstance(v := getattr(record, name), dict) else v for name in _names(type(record))}


@functools.cache
def _names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


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
        """The heat-map cell's setting key (runtime version is recorded, not keyed); scenario
        parameters (an LLM's prompt and output lengths, a server's bound) are part of it."""
        params = ",".join(f"{k}={v}" for k, v in sorted(self.scenario_params.items()))
        return (f"{self.target}/{self.runtime}/{self.execution_provider or '?'}/b{self.batch or '?'}"
                f"/t{self.threads}/{self.precision}/{self.scenario}" + (f"[{params}]" if params else ""))

    def to_dict(self) -> dict[str, Any]:
        return flat_dict(self)


@dataclass(frozen=True)
class RunParams:
    """The rules of a valid run: warm-up, then at least min_iterations and min_duration_s."""

    warmup_iterations: int = 10
    min_iterations: int = 100
    min_duration_s: float = 1.0
    max_duration_s: float = 60.0


SELECTOR_FORMS = "KEY=VALUE, KEY>=N, KEY<=N, KEY>N, KEY<N or KEY!=VALUE"


SELECTOR_OPS = (">=", "<=", "!=", ">", "<")  # longest first: a value's operator is its longest match


def parse_selector(text: str) -> tuple[str, str]:
    """`cpu.arch=arm64`, `memory.size_gb>=8`, `device_class!=phone` → (key, value) as the wire carries it:
    an equality keeps the bare value, a comparison keeps its operator in front (`>=8`)."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(>=|<=|!=|=|>|<)\s*(.*?)\s*", text)
    if not match or not match.group(3):
        raise InvalidInput(f"selector {text.strip()!r} is not {SELECTOR_FORMS}")
    key, op, value = match.groups()
    return key, value if op == "=" else op + value


def split_selector(value: str) -> tuple[str, str]:
    """A selector's value as the wire carries it → (operator, operand); a bare value means equality."""
    for op in SELECTOR_OPS:
        if value.startswith(op):
            return op, value[len(op):].strip()
    return "=", value


@dataclass(frozen=True)
class Schedule:
    """How a campaign shares the fleet: higher priority is leased first; past its deadline (epoch ms)
    its open tasks are cancelled; `quota` devices per hardware class at most (0: every matching one)."""

    priority: int = 0
    deadline_ms: int = 0
    quota: int = 0

    def check(self, now_ms: int) -> "Schedule":
        if not -1000 <= self.priority <= 1000:
            raise InvalidInput(f"priority {self.priority} is not in -1000..1000")
        if self.deadline_ms and self.deadline_ms <= now_ms:
            raise InvalidInput("the deadline has already passed")
        if not 0 <= self.quota <= 100_000:
            raise InvalidInput(f"quota {self.quota} is not in 0..100000 devices per hardware class")
        return self


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
        return flat_dict(self)


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
    inputs_json: str = ""  # the input spec (protos/inputs.py): shapes and value sources; empty: static model


@dataclass(frozen=True)
class ScenarioOutcome:
    """Who drove the run and its verdict: LoadGen's VALID/INVALID and the figures of its summary."""

    driver: str = "native"  # loadgen | native (the agent's own timed loop)
    verdict: str = ""  # VALID | INVALID (LoadGen's), or the native loop's own
    reason: str = ""  # why INVALID, in LoadGen's words
    figures: dict[str, float] = field(default_factory=dict)  # metric name (protos/metrics.py) → value


@dataclass(frozen=True)
class LlmStats:
    """One LLM task: `requests` requests of prompt_tokens in and output_tokens out (protos/metrics.py
    defines each figure)."""

    prompt_tokens: int
    output_tokens: int
    requests: int
    ttft_ms: np.ndarray  # [requests]
    e2e_ms: np.ndarray  # [requests]
    itl_ms: np.ndarray  # [requests × (output_tokens - 1)] gaps between consecutive output tokens

    def figures(self) -> dict[str, float]:
        """The named LLM metrics; medians over requests (a request's TPOT is its mean decode gap)."""
        ttft, e2e = np.asarray(self.ttft_ms, np.float64), np.asarray(self.e2e_ms, np.float64)
        decode_ms = e2e - ttft
        out = {"ttft_ms": float(np.median(ttft)),
               "ttft_p90_ms": float(np.percentile(ttft, 90)),
               "e2e_ms": float(np.median(e2e)),
               "prefill_tps": float(np.median(self.prompt_tokens * 1000.0 / ttft))}
        if self.output_tokens > 1:
            tpot = decode_ms / (self.output_tokens - 1)
            itl = np.asarray(self.itl_ms, np.float64)
            p50, p90, p99 = np.percentile(itl, [50, 90, 99])
            out.update(tpot_ms=float(np.median(tpot)), decode_tps=float(np.median(1000.0 / tpot)),
                       itl_p50_ms=float(p50), itl_p90_ms=float(p90), itl_p99_ms=float(p99))
        return out


@dataclass(frozen=True)
class EnergyStats:
    """What a meter measured over the timed part of a run."""

    meter: str  # rapl | nvml | battery
    energy_j: float
    duration_s: float
    inferences: int  # samples (ONNX) or requests (LLM) the energy covers
    tokens: int = 0  # LLM: output tokens the energy covers

    def figures(self) -> dict[str, float]:
        out = {"energy_mj": self.energy_j * 1000.0 / max(1, self.inferences),
               "power_w": self.energy_j / self.duration_s if self.duration_s > 0 else 0.0}
        if self.tokens:
            out["energy_mj_per_token"] = self.energy_j * 1000.0 / self.tokens
        return out


@dataclass(frozen=True)
class RunResult:
    """What a runner returns: the setting that actually ran, the stats, validity as data."""

    setting: Setting
    stats: LatencyStats
    fidelity: Fidelity
    valid: bool
    invalid_reason: str = ""
    started_ms: int = 0
    invalid_kind: str = ""  # the reason's category alone (fidelity | too-slow | loadgen), for private reports
    outcome: ScenarioOutcome = field(default_factory=ScenarioOutcome)
    llm: LlmStats | None = None
    energy: EnergyStats | None = None
    energy_absent: str = ""  # why there is no energy: which meters were looked for
    raw_ms: np.ndarray | None = field(default=None, repr=False, compare=False)  # per query; stays on the device

    def figures(self) -> dict[str, float]:
        """Every named metric beyond the latency stats (protos/metrics.py), flat, for the wire."""
        out = dict(self.outcome.figures)
        if self.llm is not None:
            out.update(self.llm.figures())
        if self.energy is not None:
            out.update(self.energy.figures())
        return out
