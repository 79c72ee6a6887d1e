"""Checks a report before anything is stored; each failure is one InvalidInput line naming the field."""

from __future__ import annotations

import math
import re

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.records import LatencyStats, Setting

MAX_LATENCY_MS = 3_600_000.0  # an hour per call is absurd for a benchmark task
MAX_THROUGHPUT_IPS = 1e9
REPORT_ID = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")
PRIVACY_MODES = ("ldp", "secure", "trusted")


def check_report_id(report_id: str) -> None:
    if not REPORT_ID.match(report_id or ""):
        raise InvalidInput("report_id must be 8-64 characters of letters, digits, '_', '.', ':' or '-'")


def check_stats(stats: LatencyStats) -> None:
    for name in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"):
        value = getattr(stats, name)
        if not math.isfinite(value) or value <= 0 or value > MAX_LATENCY_MS:
            raise InvalidInput(f"stats.{name} = {value!r} is not a latency in (0, {MAX_LATENCY_MS:g}] ms")
    if not math.isfinite(stats.stdev_ms) or stats.stdev_ms < 0 or stats.stdev_ms > MAX_LATENCY_MS:
        raise InvalidInput(f"stats.stdev_ms = {stats.stdev_ms!r} is not a valid spread")
    if not (stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms):
        raise InvalidInput("stats are not ordered: min ≤ p50 ≤ p90 ≤ p99 ≤ max must hold")
    if not stats.min_ms <= stats.mean_ms <= stats.max_ms:
        raise InvalidInput("stats.mean_ms lies outside [min_ms, max_ms]")
    tput = stats.throughput_ips
    if not math.isfinite(tput) or tput <= 0 or tput > MAX_THROUGHPUT_IPS:
        raise InvalidInput(f"stats.throughput_ips = {tput!r} is not in (0, {MAX_THROUGHPUT_IPS:g}]")
    if stats.iterations < 1:
        raise InvalidInput("stats.iterations must be at least 1")
    if not math.isfinite(stats.duration_s) or stats.duration_s <= 0:
        raise InvalidInput(f"stats.duration_s = {stats.duration_s!r} must be positive")


def check_setting(setting: Setting) -> None:
    if not 1 <= setting.batch <= 65536:
        raise InvalidInput(f"setting.batch = {setting.batch} is not in 1..65536")
    if not 0 <= setting.threads <= 4096:
        raise InvalidInput(f"setting.threads = {setting.threads} is not in 0..4096")
    if not setting.runtime_version:
        raise InvalidInput("setting.runtime_version is missing")
    for name in ("target", "runtime", "execution_provider", "precision", "scenario"):
        value = getattr(setting, name)
        if not value or len(value) > 64:
            raise InvalidInput(f"setting.{name} is missing or longer than 64 characters")


def check_setting_matches(asked: Setting, ran: Setting, simulated: bool = False) -> None:
    """A report's setting is its task's: the same runtime, target, batch, threads, scenario and scenario
    parameters, and the execution provider those imply. The agent fills in only what the task leaves to the
    device (runtime version, precision, a thread count or scenario parameter the task left at its default),
    so a report cannot place its numbers in a cell, or on a hardware class, its task never asked for.
    A simulated device (its cells are marked simulated, never fleet) names its own runtime and target."""
    from edgeatlas.protos import scenarios

    def refuse(field: str, got, want) -> None:
        raise InvalidInput(f"setting.{field} = {str(got)[:64]!r} is not the task's ({str(want)[:64]!r})")

    for name in ("batch", "scenario") if simulated else ("runtime", "batch", "scenario"):
        if getattr(ran, name) != getattr(asked, name):
            refuse(name, getattr(ran, name), getattr(asked, name))
    if asked.threads and ran.threads != asked.threads:
        refuse("threads", ran.threads, asked.threads)
    for key, value in asked.scenario_params.items():
        if ran.scenario_params.get(key) != value:
            refuse(f"scenario_params[{key}]", ran.scenario_params.get(key), value)
    scenarios.check(ran.scenario, ran.scenario_params)  # what the agent added: known names, in range
    if simulated:
        return
    if asked.runtime == "llama.cpp":
        # llama.cpp offloads to a GPU only where the task asks for layers on it and the device has one
        layers = int(float(asked.scenario_params.get("gpu_layers", "0")))
        allowed = {("cpu", "cpu")} | ({("gpu", f"gpu:{layers}-layers")} if layers > 0 else set())
        if (ran.target, ran.execution_provider) not in allowed:
            refuse("target", f"{ran.target} ({ran.execution_provider})", asked.target if layers == 0 else
                   f"cpu, or gpu with {layers} layers")
        return
    if ran.target != asked.target:
        refuse("target", ran.target, asked.target)
    if ran.execution_provider != asked.execution_provider:
        refuse("execution_provider", ran.execution_provider, asked.execution_provider)


def check_privacy_mode(mode: str) -> None:
    if mode not in PRIVACY_MODES:
        raise InvalidInput(f"privacy_mode {mode!r} is not one of {', '.join(PRIVACY_MODES)}")
