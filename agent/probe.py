"""Hardware probe: this device's spec sheet (edgeatlas.spec/v1) from /proc, /sys and the runtimes.

Fields the probe cannot know are None, never guessed. `root` points the file reads at a recorded tree.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeatlas.protos.spec import SCHEMA, SpecSheet

# ARM (implementer, part) → core name as pytorch/cpuinfo names it.
ARM_PARTS: dict[tuple[int, int], str] = {
    (0x41, 0xC05): "cortex-a5", (0x41, 0xC07): "cortex-a7", (0x41, 0xC08): "cortex-a8",
    (0x41, 0xC09): "cortex-a9", (0x41, 0xC0F): "cortex-a15", (0x41, 0xC0E): "cortex-a17",
    (0x41, 0xD01): "cortex-a32", (0x41, 0xD04): "cortex-a35", (0x41, 0xD03): "cortex-a53",
    (0x41, 0xD05): "cortex-a55", (0x41, 0xD07): "cortex-a57", (0x41, 0xD08): "cortex-a72",
    (0x41, 0xD09): "cortex-a73", (0x41, 0xD0A): "cortex-a75", (0x41, 0xD0B): "cortex-a76",
    (0x41, 0xD0D): "cortex-a77", (0x41, 0xD41): "cortex-a78", (0x41, 0xD44): "cortex-x1",
    (0x41, 0xD46): "cortex-a510", (0x41, 0xD47): "cortex-a710", (0x41, 0xD48): "cortex-x2",
    (0x41, 0xD0C): "neoverse-n1", (0x41, 0xD40): "neoverse-v1", (0x41, 0xD49): "neoverse-n2",
    (0x41, 0xD4F): "neoverse-v2",
    (0x51, 0x201): "kryo", (0x51, 0x205): "kryo", (0x51, 0x211): "kryo",
    (0x51, 0x800): "cortex-a73", (0x51, 0x801): "cortex-a53", (0x51, 0x802): "cortex-a75",
    (0x51, 0x803): "cortex-a55", (0x51, 0x804): "cortex-a76", (0x51, 0x805): "cortex-a55",
    (0x53, 0x001): "mongoose-m1", (0x53, 0x002): "mongoose-m3", (0x53, 0x003): "meerkat-m4",
    (0x61, 0x022): "firestorm", (0x61, 0x023): "firestorm",
}
ARM_VENDORS = {0x41: "arm", 0x42: "broadcom", 0x43: "cavium", 0x48: "huawei", 0x4E: "nvidia",
               0x51: "qualcomm", 0x53: "samsung", 0x61: "apple", 0xC0: "ampere"}
X86_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon"}
# Widest SIMD ISA first.
X86_SIMD = [("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"), ("sse4_2", "sse4.2"), ("sse2", "sse2")]


@dataclass
class Probe:
    """Reads a device's files under `root` ("/" for this device)."""

    root: Path = Path("/")

    def read(self, rel: str) -> str | None:
        try:
            return (self.root / rel.lstrip("/")).read_text(errors="replace")
        except OSError:
            return None

    def read_int(self, rel: str) -> int | None:
        text = self.read(rel)
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    def processors(self) -> list[dict[str, str]]:
        """One dict per `processor` block of /proc/cpuinfo, plus the file's global lines under -1."""
        text = self.read("proc/cpuinfo") or ""
        blocks: list[dict[str, str]] = []
        current: dict[str, str] = {}
        for line in text.splitlines() + [""]:
            if not line.strip():
                if current:
                    blocks.append(current)
                    current = {}
                continue
            key, _, value = line.partition(":")
            current[key.strip()] = value.strip()
        return blocks

    def cpu_ids(self) -> list[int]:
        present = self.read("sys/devices/system/cpu/present") or self.read("sys/devices/system/cpu/possible")
        if present:
            return parse_cpu_list(present)
        return [int(b["processor"]) for b in self.processors() if b.get("processor", "").isdigit()]

    def max_khz(self, cpu: int) -> int | None:
        return self.read_int(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq")


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,6' → [0, 1, 2, 3, 6]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _arm_core(block: dict[str, str]) -> tuple[int, int] | None:
    try:
        return int(block["CPU implementer"], 16), int(block["CPU part"], 16)
    except (KeyError, ValueError):
        return None


def probe_cpu(p: Probe) -> dict[str, Any]:
    blocks = p.processors()
    procs = [b for b in blocks if "processor" in b and b["processor"].isdigit()]
    header = {k: v for b in blocks for k, v in b.items()}
    threads = len(p.cpu_ids()) or len(procs) or None
    cpu: dict[str, Any] = {"vendor": None, "model": None, "arch": None, "cores": None, "threads": threads,
                           "clusters": None, "base_ghz": None, "max_ghz": None, "simd": None,
                           "fma_units": None, "l1d_kb": None, "l2_kb": None, "l3_kb": None}
    if any("vendor_id" in b for b in procs) or "flags" in header:
        cpu["arch"] = "x86_64"
        cpu["vendor"] = X86_VENDORS.get(header.get("vendor_id", ""), header.get("vendor_id"))
        cpu["model"] = _clean_model(header.get("model name"))
        flags = set(header.get("flags", "").split())
        cpu["simd"] = next((name for flag, name in X86_SIMD if flag in flags), None)
        pairs = {(b.get("physical id"), b.get("core id")) for b in procs if "core id" in b}
        cpu["cores"] = len(pairs) if pairs else _sys_cores(p)
    else:
        cores = [_arm_core(b) for b in procs]
        known = [c for c in cores if c]
        if known or "CPU architecture" in header or "Features" in header:
            cpu["arch"] = "arm64" if header.get("CPU architecture", "8").strip() in ("8", "AArch64") else "arm"
            features = set(header.get("Features", "").split())
            cpu["simd"] = "sve2" if "sve2" in features else "sve" if "sve" in features else (
                "neon" if {"asimd", "neon"} & features else None)
            if known:
                cpu["vendor"] = ARM_VENDORS.get(known[0][0])
                if len(set(known)) == 1:  # one core type: its name is the model; big.LITTLE has none
                    cpu["model"] = ARM_PARTS.get(known[0])
        cpu["cores"] = _sys_cores(p) or threads
        cpu["clusters"] = _clusters(p, procs)
    freqs = [f for f in (p.max_khz(c) for c in p.cpu_ids()) if f]
    if freqs:
        cpu["max_ghz"] = round(max(freqs) / 1e6, 3)
    base = p.read_int("sys/devices/system/cpu/cpu0/cpufreq/base_frequency")
    if base:
        cpu["base_ghz"] = round(base / 1e6, 3)
    cpu.update(_caches(p))
    return cpu


def _clean_model(name: str | None) -> str | None:
    if not name:
        return None
    return re.sub(r"\s+", " ", name).strip()


def _sys_cores(p: Probe) -> int | None:
    pairs = set()
    for cpu in p.cpu_ids():
        core = p.read_int(f"sys/devices/system/cpu/cpu{cpu}/topology/core_id")
        pkg = p.read_int(f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id")
        if core is None:
            return None
        pairs.add((pkg, core))
    return len(pairs) or None


def _clusters(p: Probe, procs: list[dict[str, str]]) -> list[dict[str, Any]] | None:
    """big.LITTLE clusters: CPUs grouped by core type and max frequency, fastest first."""
    by_cpu = {int(b["processor"]): _arm_core(b) for b in procs}
    groups: dict[tuple[Any, int | None], int] = {}
    for cpu in p.cpu_ids() or sorted(by_cpu):
        key = (by_cpu.get(cpu), p.max_khz(cpu))
        groups[key] = groups.get(key, 0) + 1
    if not groups or all(k[0] is None for k in groups):
        return None
    clusters = [{"cores": n, "core": ARM_PARTS.get(core) if core else None,
                 "max_ghz": round(khz / 1e6, 3) if khz else None}
                for (core, khz), n in groups.items()]
    return sorted(clusters, key=lambda c: -(c["max_ghz"] or 0))


def _caches(p: Probe) -> dict[str, Any]:
    found: dict[str, Any] = {}
    base = "sys/devices/system/cpu/cpu0/cache"
    for index in range(8):
        level = p.read_int(f"{base}/index{index}/level")
        if level is None:
            continue
        kind = (p.read(f"{base}/index{index}/type") or "").strip()
        size = _size_kb(p.read(f"{base}/index{index}/size"))
        if level == 1 and kind == "Data":
            found["l1d_kb"] = size
        elif level in (2, 3) and kind == "Unified":
            found[f"l{level}_kb"] = size
    return found


def _size_kb(text: str | None) -> float | None:
    if not text:
        return None
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip())
    if not m:
        return None
    return int(m.group(1)) * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2)]


def probe_memory(p: Probe, measure_bandwidth: bool) -> dict[str, Any]:
    memory: dict[str, Any] = {"type": None, "size_gb": None, "bandwidth_gbs": None}
    m = re.search(r"MemTotal:\s+(\d+) kB", p.read("proc/meminfo") or "")
    if m:
        memory["size_gb"] = round(int(m.group(1)) / 1024 / 1024, 2)
    if measure_bandwidth:
        memory["bandwidth_gbs"] = round(copy_bandwidth_gbs(), 2)
        memory["bandwidth_method"] = "measured: numpy copy of 64 MiB, best of 5"
    return memory


def copy_bandwidth_gbs(size_mib: int = 64, repeats: int = 5) -> float:
    """Best sustained copy bandwidth (read + write bytes / s) in GB/s."""
    src = np.ones(size_mib * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def probe_gpu() -> dict[str, Any] | None:
    """The first NVIDIA GPU through NVML, where the library and a driver are present."""
    try:
        import pynvml  # from nvidia-ml-py, optional
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no device: NVML raises its own error types
        return None
    try:
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        clock = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        return {"kind": "gpu", "vendor": "nvidia", "name": name if isinstance(name, str) else name.decode(),
                "memory_gb": round(mem.total / 1024**3, 2), "clock_ghz": round(clock / 1000, 3),
                "count": pynvml.nvmlDeviceGetCount()}
    finally:
        pynvml.nvmlShutdown()


def probe_runtimes() -> dict[str, Any]:
    runtimes: dict[str, Any] = {}
    try:
        import onnxruntime as ort
        runtimes["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        pass
    return runtimes


def probe(root: str | Path = "/", measure_bandwidth: bool = True, name: str | None = None) -> SpecSheet:
    """This device's spec sheet (or the recorded device's under `root`)."""
    p = Probe(Path(root))
    live = Path(root) == Path("/")
    soc = (p.read("sys/devices/soc0/machine") or "").strip() or None
    hardware = next((b["Hardware"] for b in p.processors() if "Hardware" in b), None)
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name or (platform.node() if live else None),
        "device_class": None,
        "soc": soc or hardware,
        "cpu": probe_cpu(p),
        "memory": probe_memory(p, measure_bandwidth and live),
        "accelerator": probe_gpu() if live else None,
        "tdp_w": None,
    }
    if live:
        data["os"] = {"system": platform.system(), "release": platform.release(), "machine": platform.machine()}
        data["runtimes"] = probe_runtimes()
        if data["cpu"]["arch"] is None:
            data["cpu"]["arch"] = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
                platform.machine(), platform.machine() or None)
        data["cpu"]["threads"] = data["cpu"]["threads"] or os.cpu_count()
    return SpecSheet.from_dict(data, "probed spec sheet")
