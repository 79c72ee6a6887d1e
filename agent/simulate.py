"""Virtual agents for load tests and a populated heat-map, speaking the real protocol.

Each virtual device takes a spec sheet from a catalog of real products, enrolls as simulated, leases
tasks and reports synthetic numbers (a plain throughput-plus-overhead model with noise). The
coordinator marks every such number simulated, in storage, heat-map and views; it never mixes with
measured data.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

from edgeatlas import __version__
from edgeatlas.agent.privacy.release import statistic_logs
from edgeatlas.agent.report import completed, new_report
from edgeatlas.agent.secagg import drive_async, participant_for, stages
from edgeatlas.protos import PROTOCOL_VERSION, convert
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import Fidelity, LatencyStats, RunResult, ScenarioOutcome, Setting
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.protos.wire import CHANNEL_OPTIONS, bearer
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

CATALOG = Path(__file__).with_name("catalog.yaml")
FLOPS_PER_CYCLE = {"neon": 8, "sve": 16, "sve2": 16, "sse4.2": 8, "avx": 16, "avx2": 32, "avx512": 64}


def load_catalog(path: str | Path | None = None) -> list[SpecSheet]:
    path = Path(path or CATALOG)
    try:
        entries = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"catalog {path}: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise InvalidInput(f"catalog {path} must be a non-empty list of spec sheets")
    return [SpecSheet.from_dict(e, f"{path}[{i}]") for i, e in enumerate(entries)]


def synthetic_latency_ms(spec: SpecSheet, summary: dict, batch: int, rng: random.Random) -> tuple[str, float]:
    """(target, latency): roofline-like compute time at a modest efficiency plus per-operator overhead."""
    flops = float(summary.get("flops") or 1e6) * batch
    ops = sum((summary.get("ops") or {"op": 50}).values())
    accel = spec.get("accelerator") or {}
    if accel.get("kind") == "gpu" and accel.get("fp32_tflops"):
        target, peak_gflops, overhead_ms = "gpu", accel["fp32_tflops"] * 1000 * 0.05, 0.02 * ops
    else:
        cores = spec.get("cpu.cores") or 1
        ghz = spec.get("cpu.max_ghz") or spec.get("cpu.base_ghz") or 1.5
        target = "cpu"
        peak_gflops = cores * ghz * FLOPS_PER_CYCLE.get(spec.get("cpu.simd") or "", 4) * 0.15
        overhead_ms = 0.004 * ops
    return target, (overhead_ms + flops / (peak_gflops * 1e6)) * rng.lognormvariate(0, 0.1)


def synthetic_llm(spec: SpecSheet, model: agent_pb2.ModelRef, params: dict[str, str],
                  rng: random.Random) -> tuple[str, float, dict[str, float]]:
    """(target, e2e ms, LLM figures): decode reads every weight once per token (memory-bound), prefill
    is compute-bound over the prompt."""
    summary = json.loads(model.summary_json or "{}")
    n_prompt, n_out = int(params.get("prompt_tokens", 128)), int(params.get("output_tokens", 32))
    target, per_token_ms = synthetic_latency_ms(spec, {"flops": summary.get("flops"), "ops": {"op": 1}}, 1, rng)
    accel = spec.get("accelerator") or {}
    bandwidth_gbs = (accel.get("bandwidth_gbs") if target == "gpu" else None) or spec.get("memory.bandwidth_gbs") or 10
    # a small model's decode is dominated by the runtime's per-token work, a large one's by reading weights
    tpot = 0.3 + model.size_bytes / (bandwidth_gbs * 1e9 * 0.5) * 1000 * rng.lognormvariate(0, 0.05)
    ttft = 0.5 + per_token_ms * n_prompt
    e2e = ttft + (n_out - 1) * tpot
    figures = {"ttft_ms": ttft, "ttft_p90_ms": ttft * 1.05, "e2e_ms": e2e, "prefill_tps": n_prompt * 1000 / ttft,
               "tpot_ms": tpot, "decode_tps": 1000 / tpot, "itl_p50_ms": tpot * 0.98, "itl_p90_ms": tpot * 1.1,
               "itl_p99_ms": tpot * 1.4}
    return target, e2e, figures


def synthetic_stats(p50_ms: float, batch: int, rng: random.Random) -> LatencyStats:
    spread = rng.uniform(1.02, 1.3)
    mean = p50_ms * rng.uniform(1.0, 1.05)
    return LatencyStats(p50_ms=p50_ms, p90_ms=p50_ms * spread, p99_ms=p50_ms * spread ** 2, mean_ms=mean,
                        stdev_ms=p50_ms * 0.05, min_ms=p50_ms * 0.9, max_ms=p50_ms * spread ** 3,
                        throughput_ips=batch * 1000.0 / mean, iterations=100, duration_s=mean / 10)


@dataclass
class FleetStats:
    enrolled: int = 0
    reports: int = 0
    errors: int = 0
    rounds: int = 0  # secure rounds taken part in
    truth: dict[str, list[float]] = field(default_factory=dict)  # model → p50s held for secure rounds


async def virtual_agent(index: int, spec: SpecSheet, stub, token: str, once: bool, stop: asyncio.Event,
                        stats: FleetStats, seed: int, labels: dict[str, str] | None = None) -> None:
    rng = random.Random(seed * 1_000_003 + index)
    data = dict(spec.data, name=f"sim-{index:05d} ({spec.name})", simulated=True)
    resp = await stub.Enroll(agent_pb2.EnrollRequest(
        protocol_version=PROTOCOL_VERSION, enrollment_token=token, spec_json=json.dumps(data),
        agent_version=__version__, name=f"sim-{index:05d}", labels={**(labels or {}), "simulated": "true"},
        simulated=True), timeout=60)
    stats.enrolled += 1
    md = bearer(resp.credential)
    held: dict[tuple[str, str], dict[str, float]] = {}  # secure mode: values waiting for the round
    while not stop.is_set():
        try:
            lease = await stub.LeaseTask(agent_pb2.LeaseTaskRequest(protocol_version=PROTOCOL_VERSION,
                                                                    wait_s=2 if once else 10),
                                         metadata=md, timeout=60)
        except grpc.aio.AioRpcError:
            stats.errors += 1
            await asyncio.sleep(rng.uniform(0.5, 2))
            continue
        if not lease.has_task:
            if once:
                return
            continue
        task = lease.task
        if task.HasField("secure_round"):  # the same protocol code as a real device; no ledger (virtual)
            await secure_round(task.secure_round, held, stub, md, stats)
            continue
        setting = convert.setting_from_pb(task.setting, defaults=True)
        figures: dict[str, float] = {}
        if task.model.format == "gguf":
            target, p50, figures = synthetic_llm(spec, task.model, dict(setting.scenario_params), rng)
        else:
            target, p50 = synthetic_latency_ms(spec, json.loads(task.model.summary_json or "{}"), setting.batch, rng)
        ran = Setting(target=target, runtime="simulated", runtime_version=__version__,
                      execution_provider="simulated", batch=setting.batch, threads=setting.threads,
                      precision="fp32", scenario=setting.scenario, scenario_params=dict(setting.scenario_params))
        result = RunResult(setting=ran, stats=synthetic_stats(p50, setting.batch, rng), fidelity=Fidelity(), valid=True,
                           started_ms=int(time.time() * 1000),
                           outcome=ScenarioOutcome(driver="native", verdict="VALID", figures=figures),
                           energy_absent="simulated device: no meter")
        if task.privacy.mode == "secure":  # the numbers are synthetic; the aggregation is real
            privacy = convert.privacy_from_pb(task.privacy).check()
            report = completed(new_report(task, trusted=False), result, privacy)
            held[(task.model.sha256, ran.key())] = statistic_logs(result.stats, privacy, result.figures())
            stats.truth.setdefault(task.model.name, []).append(result.stats.p50_ms)
        else:
            report = completed(new_report(task, trusted=True), result, privacy=None)
        for attempt in range(5):  # a report is retried with the same id, so it never counts twice
            try:
                await stub.Report(report, metadata=md, timeout=60)
                stats.reports += 1
                break
            except grpc.aio.AioRpcError as exc:
                stats.errors += 1
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                      grpc.StatusCode.DEADLINE_EXCEEDED):
                    break
                await asyncio.sleep(min(30.0, 0.5 * 2 ** attempt) * rng.random())


async def secure_round(invite, held: dict, stub, md, stats: "FleetStats") -> None:
    """A virtual device's part in a secure round, through the agent's own protocol code (agent/secagg.py)."""
    try:
        participant = participant_for(invite, held)
        if participant is None:
            return
    except InvalidInput:
        stats.errors += 1
        return

    async def call(request):
        return await stub.SecureRound(request, metadata=md, timeout=request.wait_s + 30)

    try:
        await drive_async(stages(participant, invite, lambda: None), call)
        stats.rounds += 1
    except (grpc.aio.AioRpcError, InvalidInput):
        stats.errors += 1
    for c in invite.cells:
        held.pop((c.model_sha256, c.setting_key), None)


async def simulate(address: str, token: str, agents: int, catalog: list[SpecSheet], once: bool,
                   duration_s: float | None, seed: int = 0, say=print, labels: dict[str, str] | None = None,
                   truth_file: str | None = None) -> FleetStats:
    stats = FleetStats()
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        tasks = [asyncio.create_task(virtual_agent(i, catalog[i % len(catalog)], stub, token, once, stop, stats,
                                                   seed, labels)) for i in range(agents)]
        started = time.monotonic()
        while not all(t.done() for t in tasks):
            await asyncio.sleep(1.0)
            if truth_file:
                write_truth(truth_file, stats.truth)
            if duration_s is not None and time.monotonic() - started >= duration_s:
                stop.set()
                break
        stop.set()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in done if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    if failures:
        first = failures[0]
        details = first.details() if isinstance(first, grpc.aio.AioRpcError) else str(first)
        raise InvalidInput(f"{len(failures)} of {agents} simulated agents failed; first: {details}")
    say(f"{stats.enrolled} simulated agents, {stats.reports} reports, {stats.errors} retried calls "
        f"(every number marked simulated)")
    return stats


def write_truth(path: str, truth: dict[str, list[float]]) -> None:
    """model → (devices, geometric mean of their p50 ms): synthetic, so nothing private."""
    import math
    out = {m: (len(v), math.exp(sum(math.log(x) for x in v) / len(v))) for m, v in truth.items() if v}
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)


def run(address: str, token: str, agents: int, catalog_path: str | None, once: bool,
        duration_s: float | None, seed: int, labels: dict[str, str] | None = None,
        truth_file: str | None = None) -> FleetStats:
    if agents < 1:
        raise InvalidInput(f"--agents must be at least 1, got {agents}")
    return asyncio.run(simulate(address, token, agents, load_catalog(catalog_path), once, duration_s, seed,
                                labels=labels, truth_file=truth_file))


