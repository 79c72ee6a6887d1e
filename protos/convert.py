"""The one translation point between protobuf messages and the typed records."""

from __future__ import annotations

from edgeatlas.protos.privacy import DEFAULT_COHORT_MIN, PURE_MECHANISMS, PrivacyParams, delta_for
from edgeatlas.protos.records import Fidelity, LatencyStats, ModelRef, RunParams, ScenarioOutcome, Setting
from edgeatlas.v1 import agent_pb2, common_pb2


def setting_to_pb(s: Setting) -> common_pb2.Setting:
    return common_pb2.Setting(
        target=s.target, runtime=s.runtime, runtime_version=s.runtime_version,
        execution_provider=s.execution_provider, batch=s.batch, threads=s.threads,
        precision=s.precision, scenario=s.scenario, scenario_params=dict(s.scenario_params))


def setting_from_pb(m: common_pb2.Setting, defaults: bool = False) -> Setting:
    """Exact translation; with `defaults`, empty fields take Setting's defaults (a campaign's request)."""
    base = Setting() if defaults else Setting(target="", runtime="", execution_provider="", batch=0,
                                              precision="", scenario="")
    return Setting(
        target=m.target or base.target, runtime=m.runtime or base.runtime, runtime_version=m.runtime_version,
        execution_provider=m.execution_provider or base.execution_provider, batch=m.batch or base.batch,
        threads=m.threads, precision=m.precision or base.precision, scenario=m.scenario or base.scenario,
        scenario_params=dict(m.scenario_params))


def params_to_pb(p: RunParams) -> agent_pb2.RunParams:
    return agent_pb2.RunParams(warmup_iterations=p.warmup_iterations, min_iterations=p.min_iterations,
                               min_duration_s=p.min_duration_s, max_duration_s=p.max_duration_s)


def params_from_pb(m: agent_pb2.RunParams) -> RunParams:
    default = RunParams()
    return RunParams(
        warmup_iterations=m.warmup_iterations or default.warmup_iterations,
        min_iterations=m.min_iterations or default.min_iterations,
        min_duration_s=m.min_duration_s or default.min_duration_s,
        max_duration_s=m.max_duration_s or default.max_duration_s)


def stats_to_pb(s: LatencyStats) -> common_pb2.LatencyStats:
    return common_pb2.LatencyStats(**s.to_dict())


def stats_from_pb(m: common_pb2.LatencyStats) -> LatencyStats:
    return LatencyStats(
        p50_ms=m.p50_ms, p90_ms=m.p90_ms, p99_ms=m.p99_ms, mean_ms=m.mean_ms, stdev_ms=m.stdev_ms,
        min_ms=m.min_ms, max_ms=m.max_ms, throughput_ips=m.throughput_ips, iterations=m.iterations,
        duration_s=m.duration_s)


def fidelity_to_pb(f: Fidelity) -> agent_pb2.Fidelity:
    return agent_pb2.Fidelity(checked=f.checked, passed=f.passed, max_abs_error=f.max_abs_error,
                              tolerance=f.tolerance, detail=f.detail)


def fidelity_from_pb(m: agent_pb2.Fidelity) -> Fidelity:
    return Fidelity(checked=m.checked, passed=m.passed, max_abs_error=m.max_abs_error,
                    tolerance=m.tolerance, detail=m.detail)


def model_to_pb(r: ModelRef) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(
        sha256=r.sha256, name=r.name, format=r.format, size_bytes=r.size_bytes,
        reference_sha256=r.reference_sha256, reference_size_bytes=r.reference_size_bytes,
        summary_json=r.summary_json, inputs_json=r.inputs_json)


def model_from_pb(m: common_pb2.ModelRef) -> ModelRef:
    return ModelRef(sha256=m.sha256, name=m.name, format=m.format, size_bytes=m.size_bytes,
                    reference_sha256=m.reference_sha256, reference_size_bytes=m.reference_size_bytes,
                    summary_json=m.summary_json, inputs_json=m.inputs_json)


def privacy_to_pb(p: PrivacyParams) -> common_pb2.Privacy:
    return common_pb2.Privacy(mechanism=p.mechanism, epsilon=p.epsilon, delta=p.delta,
                              statistics=list(p.statistics), bound_lo_ms=p.bounds_ms[0],
                              bound_hi_ms=p.bounds_ms[1], bits=p.bits, mode=p.mode, cohort_min=p.cohort_min)


def privacy_from_pb(m: common_pb2.Privacy, defaults: bool = False) -> PrivacyParams:
    """Exact translation; with `defaults`, empty fields take the default contract (a campaign's request)."""
    base = PrivacyParams()
    if not defaults:
        return PrivacyParams(mechanism=m.mechanism, epsilon=m.epsilon, delta=m.delta,
                             statistics=tuple(m.statistics), bounds_ms=(m.bound_lo_ms, m.bound_hi_ms), bits=m.bits,
                             mode=m.mode or "ldp", cohort_min=m.cohort_min or DEFAULT_COHORT_MIN)
    mechanism = m.mechanism or base.mechanism
    return PrivacyParams(
        mechanism=mechanism, epsilon=m.epsilon or base.epsilon,
        # a δ given to a pure mechanism is kept, so that its check refuses it rather than it vanishing here
        delta=m.delta if mechanism in PURE_MECHANISMS else delta_for(mechanism, m.delta),
        statistics=tuple(m.statistics) or base.statistics,
        bounds_ms=(m.bound_lo_ms or base.bounds_ms[0], m.bound_hi_ms or base.bounds_ms[1]), bits=m.bits or base.bits,
        mode=m.mode or base.mode, cohort_min=m.cohort_min or base.cohort_min)


def outcome_to_pb(o: ScenarioOutcome, exact: bool) -> agent_pb2.ScenarioOutcome:
    """`exact` (trusted mode) keeps LoadGen's reason; a private report says only who ran it and the verdict."""
    return agent_pb2.ScenarioOutcome(driver=o.driver, verdict=o.verdict, reason=o.reason if exact else "")


def outcome_from_pb(m: agent_pb2.ScenarioOutcome) -> ScenarioOutcome:
    return ScenarioOutcome(driver=m.driver, verdict=m.verdict, reason=m.reason)


CONDITIONS = ("on_battery", "battery_percent", "temp_c", "busy_percent", "clock_percent")


def conditions_to_pb(c: dict) -> agent_pb2.Conditions:
    return agent_pb2.Conditions(**{k: c[k] for k in CONDITIONS if c.get(k) is not None})


def conditions_from_pb(m: agent_pb2.Conditions) -> dict:
    return {k: getattr(m, k) if m.HasField(k) else None for k in CONDITIONS}
