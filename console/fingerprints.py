"""`edgeatlas agent fingerprint` and `agent predict`: the device measures the reference set, and its own
predictor answers for its own setting with it. The exact values stay in the agent's state directory.

The reference networks are the predictor's (`predictor/fingerprint.py`); they run through the agent's
own ONNX Runtime runner, under the same rules as any task (warm-up, then iterations and a minimum time).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import RunParams, Setting

FILE = "fingerprint.json"
# Per network: the iterations LoadGen's early stopping needs for a valid single-stream run (about 100),
# at least half a second; the set stays under a minute on a phone CPU (its largest, `gemm`, is about
# 1 GFLOP: some 50 ms at 20 GFLOP/s, 5 s for 100 iterations). An int8 network that cannot run within them
# (`conv3x3_int8`, 0.7 GOP of ConvInteger at 6-10x a float Conv's time, may not fit 100 iterations in
# max_duration_s on a slow board) is left out: it calibrates int8 networks of its kind only.
if TYPE_CHECKING:
    from edgeatlas.predictor.fingerprint import Fingerprint

PARAMS = RunParams(warmup_iterations=5, min_iterations=100, min_duration_s=0.5, max_duration_s=10.0)
CPU = "CPUExecutionProvider"
# A run whose p90 is this far above its p50 shared its core with something else (the demo's dashboard and
# coordinator, another agent): it is run again, up to RERUNS times, and the steadiest run is kept. In the
# demo here, one gemv run at p90/p50 1.35 (its mean ×1.37 a quiet run's) took the calibrated error over the
# 8 models measured alone from 15 to 28 %; quiet runs here are within 1.1. On a device whose every run is
# that spread, the set takes up to three times as long.
NOISY_SPREAD = 1.2
RERUNS = 2


def setting_for(provider: str, threads: int) -> Setting:
    """A fingerprint's setting: ONNX Runtime at batch 1, on the processor the provider drives."""
    from edgeatlas.agent.runners.onnxruntime import provider_target

    return Setting(target=provider_target(provider), runtime="onnxruntime", execution_provider=provider, batch=1,
                   threads=threads, scenario="single-stream")


def measure(state_dir: Path, threads: int, provider: str, say=lambda _: None) -> "Fingerprint":
    """Runs the reference set here and returns the fingerprint (mean latency per network)."""
    from edgeatlas.agent.runners import ModelFacts, make_runner
    from edgeatlas.predictor.fingerprint import INT8_NAMES, REFERENCE_SET, Fingerprint, write_reference_set

    if threads < 0:
        raise InvalidInput(f"--threads must not be negative, got {threads}")
    paths = write_reference_set(state_dir / "reference")
    latency, spread, ran = {}, {}, Setting()
    start = time.monotonic()
    for name, path in paths.items():
        runner = make_runner(str(path), setting_for(provider, threads), None, ModelFacts())
        result = runner.run(PARAMS)
        for _ in range(RERUNS):
            if not result.valid or _spread(result) <= NOISY_SPREAD:
                break
            say(f"  {name:12s} ran unsteadily (p90/p50 {_spread(result):.2f}): again")
            again = runner.run(PARAMS)
            if again.valid and _spread(again) < _spread(result):
                result = again
        if not result.valid and name in INT8_NAMES:  # it answers int8 networks only: the rest stands without it
            say(f"  {name:12s} left out ({result.invalid_reason}): int8 networks are answered from the others")
            continue
        if not result.valid:
            raise InvalidInput(f"reference network {name}: {result.invalid_reason}")
        latency[name] = float(f"{result.stats.mean_ms:.6g}")
        spread[name] = float(f"{_spread(result):.4g}")
        ran = result.setting
        say(f"  {name:12s} {result.stats.mean_ms:9.3f} ms  ({result.stats.iterations} iterations)")
    say(f"measured {REFERENCE_SET} in {time.monotonic() - start:.0f} s")
    return Fingerprint(latency_ms=latency, runtime="onnxruntime", runtime_version=ran.runtime_version,
                       execution_provider=ran.execution_provider, threads=threads, batch=1, target=ran.target,
                       measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), spread=spread)


def bracketed(before: "Fingerprint", after: "Fingerprint", say=lambda _: None) -> "Fingerprint":
    """The fingerprint whose latencies are the geometric means of two passes, one measured before what it is
    to answer for and one after (those measurements sit between them in time), with the drift said: on a
    shared machine a run's later measurements came out ×1.2 slower than its fingerprint said, and every
    calibrated answer ×0.82 of measured. Networks only one pass measured are left out."""
    import dataclasses
    import math

    names = [n for n in before.latency_ms if n in after.latency_ms]
    ratios = [after.latency_ms[n] / before.latency_ms[n] for n in names]
    drift = math.exp(sum(map(math.log, ratios)) / len(ratios))
    say(f"the reference set ran ×{drift:.3f} the time of its first pass (×{min(ratios):.3f}–{max(ratios):.3f} "
        f"per network)" + ("; the answers carry this machine's drift" if abs(math.log(drift)) > 0.1 else ""))
    return dataclasses.replace(before, latency_ms={
        n: float(f"{math.sqrt(before.latency_ms[n] * after.latency_ms[n]):.6g}") for n in names},
        spread={n: max(before.spread.get(n, 1.0), after.spread.get(n, 1.0)) for n in names})


def _spread(result) -> float:
    """p90 / p50 of a run's iterations."""
    return result.stats.p90_ms / max(result.stats.p50_ms, 1e-9)


SLOW_LIMIT_S = 120.0  # the longest `time_alone` runs a slow model for


def time_alone(model_path: Path, threads: int, request=None, provider: str = CPU) -> float:
    """One model's mean latency (ms) here, in the fingerprint's setting (ONNX Runtime on `provider`, batch 1,
    `threads`): what a fingerprint's answer is to be compared with. `request`: its input request, if any.
    The zoo family's rules (`console/zoo.py`): the 64 queries LoadGen's early stopping needs, within 15 s,
    so that a 200 ms model is timed too; a slower one (Microsoft's DNSMOS takes 390 ms a query here) is run
    again with time for its 64 queries, as long as that is under SLOW_LIMIT_S."""
    from edgeatlas.agent.runners import ModelFacts, make_runner
    from edgeatlas.console.zoo import MEASURE_PARAMS

    runner = make_runner(str(model_path), setting_for(provider, threads), None, ModelFacts(inputs=request))
    params = RunParams(**MEASURE_PARAMS)
    result = runner.run(params)
    needs = 1.5 * params.min_iterations * result.stats.mean_ms / 1e3  # seconds for its queries, with room
    if not result.valid and params.max_duration_s < needs <= SLOW_LIMIT_S:
        result = runner.run(replace(params, max_duration_s=needs))
    if not result.valid:
        raise InvalidInput(f"{Path(model_path).name}: {result.invalid_reason}")
    return result.stats.mean_ms


def state_fingerprint(state_dir: Path) -> Path:
    return state_dir / FILE
