"""From a scenario's run to a RunResult: the stats, and validity judged in one place for every runner."""

from __future__ import annotations

import dataclasses

import numpy as np

from edgeatlas.agent.scenarios import ScenarioRun
from edgeatlas.protos.records import EnergyStats, Fidelity, LatencyStats, LlmStats, RunParams, RunResult, Setting


def stats_of(run: ScenarioRun, batch: int) -> LatencyStats:
    """Raw per-query latencies summarised; LoadGen's own percentiles and throughput where it gave them."""
    lat = np.asarray(run.latencies_ms, np.float64)
    stats = LatencyStats.from_values(lat, batch=1)
    throughput = run.throughput_ips or batch * run.samples * 1000.0 / float(lat.sum())
    stats = dataclasses.replace(stats, throughput_ips=throughput, **run.summary_ms)
    if not stats.min_ms <= stats.mean_ms <= stats.max_ms:  # LoadGen's mean and our raw bounds disagree
        stats = dataclasses.replace(stats, min_ms=min(stats.min_ms, stats.mean_ms),
                                    max_ms=max(stats.max_ms, stats.mean_ms))
    return stats


def judge(setting: Setting, stats: LatencyStats, fidelity: Fidelity, run: ScenarioRun, params: RunParams,
          started_ms: int, energy: EnergyStats | None = None, llm: LlmStats | None = None,
          raw_ms: np.ndarray | None = None) -> RunResult:
    """Valid only when the scenario's rules were met and the outputs matched the reference."""
    reasons, kinds = [], []
    if not run.met_rules:
        kinds.append("loadgen" if run.outcome.driver == "loadgen" else "too-slow")
        reasons.append(f"{run.outcome.driver} verdict {run.outcome.verdict}: "
                       + (run.outcome.reason or f"stopped at max_duration_s={params.max_duration_s} after "
                                                 f"{stats.iterations} of {params.min_iterations} queries"))
    if fidelity.checked and not fidelity.passed:
        kinds.append("fidelity")
        reasons.append("fidelity check failed: " + fidelity.detail)
    return RunResult(setting=setting, stats=stats, fidelity=fidelity, valid=not reasons,
                     invalid_reason="; ".join(reasons), started_ms=started_ms, invalid_kind=",".join(kinds),
                     outcome=run.outcome, llm=llm, energy=energy, raw_ms=raw_ms)
