"""Spec sheets (schema edgeatlas.spec/v1) and the hardware class derived from them."""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeatlas.protos.errors import InvalidInput

SCHEMA = "edgeatlas.spec/v1"
DEVICE_CLASSES = ("phone", "laptop", "desktop", "server", "board", "accelerator", "tablet")
# Processors a sheet can describe: an accelerator of any of these kinds is predicted from its own fields.
TARGETS = ("cpu", "gpu", "npu", "dsp", "tpu", "fpga", "asic")

# Numeric fields with the range a real device can have; None means unbounded above.
_NUMBERS: dict[str, tuple[type, float, float | None]] = {
    "cpu.cores": (int, 1, 4096),
    "cpu.threads": (int, 1, 16384),
    "cpu.base_ghz": (float, 0.01, 10),
    "cpu.max_ghz": (float, 0.01, 10),
    "cpu.fma_units": (int, 0, 16),
    "cpu.l1d_kb": (float, 0, 1e5),
    "cpu.l2_kb": (float, 0, 1e7),
    "cpu.l3_kb": (float, 0, 1e7),
    "memory.size_gb": (float, 0.01, 1e5),
    "memory.bandwidth_gbs": (float, 0.01, 1e5),
    "accelerator.compute_units": (int, 1, 1e6),
    "accelerator.clock_ghz": (float, 0.001, 10),
    "accelerator.fp32_tflops": (float, 1e-6, 1e5),
    "accelerator.fp16_tflops": (float, 1e-6, 1e5),
    "accelerator.int8_tops": (float, 1e-6, 1e6),
    "accelerator.memory_gb": (float, 1e-6, 1e5),  # from an on-chip memory of a kilobyte to a server's HBM
    "accelerator.bandwidth_gbs": (float, 1e-4, 1e6),
    "accelerator.l2_kb": (float, 0, 1e7),
    "tdp_w": (float, 0.01, 1e5),
}
# Text fields: a string (or null) of at most MAX_TEXT characters. Names, classes and slugs are built from them.
_TEXTS = ("name", "soc", "device_class", "emulated", "cpu.vendor", "cpu.model", "cpu.arch", "cpu.simd",
          "memory.type", "accelerator.kind", "accelerator.vendor", "accelerator.name", "accelerator.architecture",
          "os.system", "os.release", "os.machine")
MAX_TEXT = 200
MAX_DEPTH = 8  # mappings and lists within one another, the sheet itself at depth 1
MAX_NODES = 4096  # values in the whole sheet, however nested
MAX_KEY = 100
MAX_CLUSTERS = 64


@dataclass
class SpecSheet:
    """A device's spec sheet. Unknown fields are kept; missing ones are None, never guessed."""

    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, origin: str = "spec sheet") -> "SpecSheet":
        if not isinstance(data, dict):
            raise InvalidInput(f"{origin}: expected a mapping of fields, got {type(data).__name__}")
        _check_shape(data, origin)  # before anything recurses into it
        data = copy.deepcopy(data)
        schema = data.setdefault("schema", SCHEMA)
        if schema != SCHEMA:
            raise InvalidInput(f"{origin}: field schema is {schema!r}, expected {SCHEMA!r}")
        _check(data, origin)
        return cls(data)

    @classmethod
    def from_json(cls, text: str, origin: str = "spec sheet") -> "SpecSheet":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise InvalidInput(f"{origin}: nested deeper than {MAX_DEPTH} levels") from None
        return cls.from_dict(data, origin)

    @classmethod
    def load(cls, path: str | Path) -> "SpecSheet":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read spec sheet {path}: {exc.strerror}") from None
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, origin: str = "spec sheet") -> "SpecSheet":
        """A sheet as YAML or JSON text (what a person pastes)."""
        try:
            data = yaml.safe_load(text)  # JSON is YAML too
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{origin}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
        except RecursionError:
            raise InvalidInput(f"{origin}: nested deeper than {MAX_DEPTH} levels") from None
        return cls.from_dict(data, origin)

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    @property
    def name(self) -> str | None:
        return self.data.get("name")

    @property
    def device_class(self) -> str | None:
        return self.data.get("device_class")

    def to_json(self) -> str:
        return json.dumps(self.data, sort_keys=False, separators=(",", ":"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, default_flow_style=None, width=110)

    def hardware_class(self, target: str = "cpu") -> str:
        return hardware_class(self, target)


def _check_shape(data: dict[str, Any], origin: str) -> None:
    """Plain JSON values only, at most MAX_DEPTH deep and MAX_NODES in all, keys short strings; walked
    without recursion, so a hostile sheet cannot exhaust the stack."""
    todo, nodes = [(data, 1, "")], 0
    while todo:
        value, depth, path = todo.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidInput(f"{origin}: more than {MAX_NODES} values")
        if isinstance(value, (dict, list)) and depth > MAX_DEPTH:
            raise InvalidInput(f"{origin}: field {path} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
                    raise InvalidInput(f"{origin}: field name {str(key)[:40]!r} under {path or 'the sheet'} "
                                       f"is not text of 1..{MAX_KEY} characters")
                todo.append((item, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            todo.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            if len(value) > 4 * MAX_TEXT:
                raise InvalidInput(f"{origin}: field {path} is longer than {4 * MAX_TEXT} characters")
        elif value is not None and not isinstance(value, (bool, int, float)):
            raise InvalidInput(f"{origin}: field {path} is a {type(value).__name__}, not a JSON value")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{origin}: field {path} = {value!r} is not a finite number")


def _check(data: dict[str, Any], origin: str) -> None:
    for dotted in _TEXTS:
        _check_text(origin, dotted, SpecSheet(data).get(dotted))
    for section in ("os", "runtimes"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise InvalidInput(f"{origin}: field {section} must be a mapping, got {type(data[section]).__name__}")
    device_class = data.get("device_class")
    if device_class is not None and device_class not in DEVICE_CLASSES:
        raise InvalidInput(f"{origin}: field device_class is {device_class!r}; "
                           f"expected one of {', '.join(DEVICE_CLASSES)}")
    for section in ("cpu", "memory", "accelerator"):
        value = data.get(section)
        if value is not None and not isinstance(value, dict):
            raise InvalidInput(f"{origin}: field {section} must be a mapping, got {type(value).__name__}")
    for dotted, (kind, low, high) in _NUMBERS.items():
        value = SpecSheet(data).get(dotted)
        if value is None:
            continue
        _check_number(origin, dotted, value, kind, low, high)
    clusters = SpecSheet(data).get("cpu.clusters")
    if clusters is not None:
        if not isinstance(clusters, list) or len(clusters) > MAX_CLUSTERS:
            raise InvalidInput(f"{origin}: field cpu.clusters must be a list of at most {MAX_CLUSTERS}")
        for i, cluster in enumerate(clusters):
            if not isinstance(cluster, dict):
                raise InvalidInput(f"{origin}: field cpu.clusters[{i}] must be a mapping")
            _check_text(origin, f"cpu.clusters[{i}].core", cluster.get("core"))
            if cluster.get("cores") is not None:
                _check_number(origin, f"cpu.clusters[{i}].cores", cluster["cores"], int, 1, 4096)
            if cluster.get("max_ghz") is not None:
                _check_number(origin, f"cpu.clusters[{i}].max_ghz", cluster["max_ghz"], float, 0.01, 10)


def _check_text(origin: str, dotted: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
        raise InvalidInput(f"{origin}: field {dotted} must be text of at most {MAX_TEXT} characters, "
                           f"got {str(value)[:40]!r}" + ("" if isinstance(value, str) else
                                                          f" ({type(value).__name__})"))


def _check_number(origin: str, dotted: str, value: Any, kind: type, low: float, high: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{origin}: field {dotted} must be a number, got {value!r}")
    if kind is int and (isinstance(value, float) and not value.is_integer()):
        raise InvalidInput(f"{origin}: field {dotted} must be a whole number, got {value!r}")
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        raise InvalidInput(f"{origin}: field {dotted} = {value!r} is impossible "
                           f"(expected {low}..{high if high is not None else 'inf'})")


# Marketing words that do not name the part; folded away so aliases meet in one class.
_NOISE = re.compile(r"\((r|tm|c)\)|\b(cpu|processor|geforce|corporation|inc|with radeon graphics)\b|@.*$")
_ALIASES = {
    "nvidia-nvidia": "nvidia",
    "intel-core-tm": "intel-core",
}


def slug(text: str) -> str:
    text = _NOISE.sub(" ", text.lower())
    text = re.sub(r"\b\d+-core\b", " ", text)
    text = re.sub(r"[^a-z0-9.]+", "-", text).strip("-.")
    for alias, canonical in _ALIASES.items():
        text = text.replace(alias, canonical)
    return text or "unknown"


def hardware_class(spec: SpecSheet, target: str = "cpu") -> str:
    """The heat-map's column: processor that ran the task + its model name, aliases folded. A device run
    under an emulator (the sheet's `emulated` field) gets a column of its own: its numbers are the host's."""
    name = _hardware_class(spec, target)
    return f"{name}-emulated" if spec.get("emulated") else name


def _hardware_class(spec: SpecSheet, target: str) -> str:
    if target not in TARGETS:
        raise InvalidInput(f"target {target!r} is not one of {', '.join(TARGETS)}")
    if target == "cpu":
        clusters = spec.get("cpu.clusters") or []
        named = [c for c in clusters if isinstance(c, dict) and c.get("core")]
        x86 = str(spec.get("cpu.arch") or "").lower() in ("x86_64", "amd64", "x86", "i686")
        if named and len(named) == len(clusters) and not x86:  # an x86 part is named by its model
            return "cpu:" + "+".join(f"{slug(c['core'])}x{c.get('cores') or 1}" for c in named)
        model = spec.get("cpu.model")
        vendor = spec.get("cpu.vendor") or ""
        if not model:
            return "cpu:unknown"
        model_slug = slug(model)
        vendor_slug = slug(vendor) if vendor else ""
        if vendor_slug and vendor_slug != "unknown" and not model_slug.startswith(vendor_slug):
            model_slug = f"{vendor_slug}-{model_slug}"
        return f"cpu:{model_slug}"
    accel = spec.get("accelerator") or {}
    if not accel or (accel.get("kind") not in (None, target)):
        raise InvalidInput(f"target {target!r}: the spec sheet has no {target} accelerator")
    name = slug(str(accel.get("name") or "unknown"))
    vendor = slug(str(accel.get("vendor") or ""))
    if vendor and vendor != "unknown" and not name.startswith(vendor):
        name = f"{vendor}-{name}"
    return f"{target}:{name}"
