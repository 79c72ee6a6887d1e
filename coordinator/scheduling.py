"""Scheduling rules: which agents a campaign's selectors match, per-class quotas, runs per task, the setting a
model's task asks for."""

from __future__ import annotations

import dataclasses
import json

from edgeatlas.coordinator.tables import AgentRow
from edgeatlas.protos import scenarios
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import Setting, split_selector
from edgeatlas.protos.spec import SpecSheet

OFFLINE_AFTER_MS = 90_000  # an agent unheard of this long is offline: its pending tasks are up for adoption


def runs_per_task(setting: Setting) -> int:
    """LoadGen runs in one task: a server task without a target rate searches, one run per step."""
    if setting.scenario == "server" and "target_qps" not in setting.scenario_params:
        return int(scenarios.check("server", setting.scenario_params)["search_steps"])
    return 1


def setting_for(setting: Setting, model_format: str) -> Setting:
    """A campaign's setting as one model's task asks it: a GGUF model runs on llama.cpp."""
    if model_format == "gguf":
        return dataclasses.replace(setting, runtime="llama.cpp", execution_provider="")
    return setting


def check_selectors(selectors: dict[str, str]) -> None:
    for key, want in selectors.items():
        op, operand = split_selector(want)
        if not key or len(key) > 128 or len(want) > 256:
            raise InvalidInput(f"selector {key!r}: keys up to 128 characters, values up to 256")
        if op in (">=", "<=", ">", "<"):
            try:
                float(operand)
            except ValueError:
                raise InvalidInput(f"selector {key}{want}: {op} needs a number") from None


def task_privacy(privacy_json: str, model_sha256: str, hardware_class: str) -> PrivacyParams:
    """The contract a task's report is released under: the campaign's, with the bounds `--bounds auto` set
    for its model on its hardware class (privacy_json's "auto_bounds", "SHA|CLASS" → [lo, hi] ms)."""
    stored = json.loads(privacy_json or "{}")
    contract = PrivacyParams.from_dict(stored) if stored else PrivacyParams()
    bounds = stored.get("auto_bounds", {}).get(f"{model_sha256}|{hardware_class}")
    return dataclasses.replace(contract, bounds_ms=(float(bounds[0]), float(bounds[1]))) if bounds else contract


def matches(agent: AgentRow, selectors: dict[str, str]) -> bool:
    """Selector keys: agent fields (name, agent_id, hardware_class, device_class), label.KEY,
    or a spec sheet path such as cpu.arch; values are equal to, or `>=8`, `<=`, `>`, `<`, `!=` a value."""
    if not selectors:
        return True
    spec = None
    labels = json.loads(agent.labels_json or "{}")
    for key, want in selectors.items():
        if key in ("name", "agent_id", "hardware_class", "device_class"):
            have = getattr(agent, key)
        elif key.startswith("label."):
            have = labels.get(key[len("label."):])
        else:
            spec = spec or SpecSheet.from_json(agent.spec_json)
            have = spec.get(key)
        op, operand = split_selector(want)
        if op == "!=":
            if have is not None and str(have) == operand:
                return False
            continue
        if have is None:
            return False
        if op == "=":
            if str(have) != operand:
                return False
            continue
        try:
            have_f, want_f = float(have), float(operand)
        except (TypeError, ValueError):
            return False
        if not {">=": have_f >= want_f, "<=": have_f <= want_f, ">": have_f > want_f, "<": have_f < want_f}[op]:
            return False
    return True


def within_quota(agents: list[AgentRow], quota: int, t: int) -> list[AgentRow]:
    """At most `quota` agents per hardware class (0: all), online ones first, then the most recently seen."""
    if not quota:
        return agents
    by_class: dict[str, list[AgentRow]] = {}
    for agent in sorted(agents, key=lambda a: (t - a.last_seen_ms >= OFFLINE_AFTER_MS, -a.last_seen_ms)):
        by_class.setdefault(agent.hardware_class, []).append(agent)
    return [a for group in by_class.values() for a in group[:quota]]
