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

from edgeatlas.agent import platforms, socs
from edgeatlas.agent.cpus import ARM_VENDORS, Midr, arm_core, score, x86_core
from edgeatlas.protos.spec import SCHEMA, SpecSheet

X86_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon"}
# More L2 groups than this (a server part) are folded into one cluster per kind.
MAX_LISTED_CLUSTERS = 8
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

    def cpuinfo(self) -> tuple[dict[int, dict[str, str]], dict[str, str]]:
        """/proc/cpuinfo as (processor → its fields, the fields outside any processor's scope).

        A field belongs to the processor whose `processor` line came last, until a blank line; older
        kernels print every `processor` line first and one set of fields after them (for the CPU that
        read the file), which then belong to the last processor, as pytorch/cpuinfo reads them too."""
        per: dict[int, dict[str, str]] = {}
        common: dict[str, str] = {}
        current: dict[str, str] | None = None
        for line in (self.read("proc/cpuinfo") or "").splitlines():
            if not line.strip():
                current = None
                continue
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "processor" and value.isdigit():
                current = per.setdefault(int(value), {})
                continue
            (current if current is not None else common)[key] = value
        return per, common

    def cpu_list(self, rel: str) -> list[int] | None:
        text = self.read(rel)
        try:
            return parse_cpu_list(text.replace(" ", ",")) if text and text.strip() else None
        except ValueError:
            return None

    def cpu_ids(self) -> list[int]:
        """The processors the system has: present ∩ possible in /sys, else those /proc/cpuinfo lists."""
        present = self.cpu_list("sys/devices/system/cpu/present")
        possible = self.cpu_list("sys/devices/system/cpu/possible")
        if present or possible:
            return sorted(set(present or possible) & set(possible or present))
        return sorted(self.cpuinfo()[0])

    def max_khz(self, cpu: int) -> int | None:
        return self.read_int(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq")


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,6' → [0, 1, 2, 3, 6]."""
    cpus: list[int] = []
    for part in text.strip().replace("\n", ",").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _midr(fields: dict[str, str]) -> Midr | None:
    try:
        return Midr(int(fields["CPU implementer"], 16), int(fields.get("CPU variant", "0"), 16),
                    int(fields["CPU part"], 16), int(fields.get("CPU revision", "0"), 0))
    except (KeyError, ValueError):
        return None


def probe_cpu(p: Probe, properties: dict[str, str] | None = None) -> tuple[dict[str, Any], str | None]:
    """(the spec sheet's cpu section, the SoC's name or None)."""
    per, common = p.cpuinfo()
    merged = {k: v for fields in [common, *per.values()] for k, v in fields.items()}
    ids = p.cpu_ids()
    cpu: dict[str, Any] = {"vendor": None, "model": None, "arch": None, "cores": None, "threads": len(ids) or None,
                           "clusters": None, "base_ghz": None, "max_ghz": None, "simd": None,
                           "fma_units": None, "l1d_kb": None, "l2_kb": None, "l3_kb": None}
    x86 = "vendor_id" in merged or "flags" in merged
    model_name = _clean_model(merged.get("model name"))
    soc = socs.soc_name(merged.get("Hardware"), properties or {},
                        [p.read("sys/devices/soc0/machine"), p.read("proc/device-tree/model"),
                         (p.read("proc/device-tree/compatible") or "").replace("\0", " "),
                         model_name if x86 else None], len(ids) or None)
    if x86:
        cpu["arch"] = "x86_64"
        cpu["vendor"] = X86_VENDORS.get(merged.get("vendor_id", ""), merged.get("vendor_id"))
        cpu["model"] = model_name
        flags = set(merged.get("flags", "").split())
        cpu["simd"] = next((name for flag, name in X86_SIMD if flag in flags), None)
        pairs = {(f.get("physical id"), f.get("core id")) for f in per.values() if "core id" in f}
        cpu["cores"] = len(pairs) if pairs else _sys_cores(p)
        cpu["clusters"] = _x86_clusters(p, per, ids, cpu["vendor"])
    elif per or common or soc:
        midrs = {cpu_id: _midr(fields) for cpu_id, fields in per.items()}
        shared = _midr(common)
        midrs = {i: m or shared for i, m in midrs.items()}
        known = [m for m in midrs.values() if m] or ([shared] if shared else [])
        cpu["arch"] = "arm64" if merged.get("CPU architecture", "8").strip() in ("8", "AArch64") else "arm"
        features = set(merged.get("Features", "").split())
        cpu["simd"] = "sve2" if "sve2" in features else "sve" if "sve" in features else (
            "neon" if {"asimd", "neon"} & features else None)
        if known:
            cpu["vendor"] = ARM_VENDORS.get(known[0].implementer)
        cpu["clusters"] = _arm_clusters(p, ids, midrs, socs.layout(soc))
        if cpu["clusters"]:
            cpu["threads"] = cpu["threads"] or sum(c["cores"] for c in cpu["clusters"])
            names = {c["core"] for c in cpu["clusters"]}
            if len(names) == 1:  # one core design: its name is the model; big.LITTLE has none
                cpu["model"] = names.pop()
        cpu["cores"] = cpu["threads"]
    freqs = [f for f in (p.max_khz(c) for c in ids) if f]
    if freqs:
        cpu["max_ghz"] = round(max(freqs) / 1e6, 3)
    base = p.read_int("sys/devices/system/cpu/cpu0/cpufreq/base_frequency")
    if base:
        cpu["base_ghz"] = round(base / 1e6, 3)
    cpu.update(_caches(p))
    return cpu, soc


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


def _groups(p: Probe, ids: list[int], sources: tuple[str, ...]) -> list[list[int]]:
    """Processors joined whenever one of them lists another in the first of `sources` it has (union-find);
    a processor nobody lists stands alone."""
    parent = {i: i for i in ids}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in ids:
        listed = next((found for rel in sources
                       if (found := p.cpu_list(f"sys/devices/system/cpu/cpu{i}/{rel}"))), None)
        for j in listed or []:
            if j in parent:
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in ids:
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _arm_clusters(p: Probe, ids: list[int], midrs: dict[int, Midr | None],
                  layout: list[tuple[str, int]] | None) -> list[dict[str, Any]] | None:
    """big.LITTLE clusters, big cores first: processors that share a clock (cpufreq related_cpus, else the
    topology's core siblings), each named by its core design. Where the system shows only part of its
    processors (offline cores are missing from /proc/cpuinfo, often from /sys too), the SoC's known layout
    wins when it accounts for every processor."""
    groups = _groups(p, ids, ("cpufreq/related_cpus", "topology/core_siblings_list")) if ids else []
    # Processors no file groups: one group per (core design, max frequency) among them.
    alone = [g[0] for g in groups if len(g) == 1]
    groups = [g for g in groups if len(g) > 1]
    by_kind: dict[tuple[Any, Any], list[int]] = {}
    for i in alone:
        by_kind.setdefault((arm_core(midrs[i]) if midrs.get(i) else None, p.max_khz(i)), []).append(i)
    groups += list(by_kind.values())
    clusters = []
    for g in groups:
        names = {arm_core(midrs[i]) for i in g if midrs.get(i)}
        khz = max((p.max_khz(i) or 0 for i in g), default=0)
        clusters.append({"core": names.pop() if len(names) == 1 else None, "cores": len(g),
                         "max_ghz": round(khz / 1e6, 3) if khz else None})
    known = {c["core"] for c in clusters if c["core"]}
    complete = clusters and all(c["core"] for c in clusters)
    if layout and (not ids or sum(n for _, n in layout) == len(ids)) and not (
            complete and sorted(c["cores"] for c in clusters) == sorted(n for _, n in layout)):
        # The layout lists big cores first, and big cores run the faster clock: match clocks by speed.
        ordered = sorted(clusters, key=lambda c: -(c["max_ghz"] or 0))
        same_shape = [c["cores"] for c in ordered] == [n for _, n in layout]
        return [{"core": core, "cores": n, "max_ghz": ordered[k]["max_ghz"] if same_shape else None}
                for k, (core, n) in enumerate(layout)]
    if not clusters:
        return None
    if len(known) == 1:  # one core design seen: processors whose design the system hid share it
        for c in clusters:
            c["core"] = c["core"] or next(iter(known))
    return _ordered(clusters)


def _ordered(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Big cores first, then the faster clock."""
    return sorted(clusters, key=lambda c: (-score(c["core"]), -(c["max_ghz"] or 0)))


def _x86_clusters(p: Probe, per: dict[int, dict[str, str]], ids: list[int],
                  vendor: str | None) -> list[dict[str, Any]] | None:
    """Processors sharing an L2 cache (else a clock), counted in cores, named by their core design."""
    sources = ("cache/index2/shared_cpu_list", "cpufreq/related_cpus")
    if not any(p.cpu_list(f"sys/devices/system/cpu/cpu{i}/{rel}") for i in ids for rel in sources):
        return None  # no file says which processors belong together
    groups = _groups(p, ids, sources)
    clusters = []
    for g in sorted(groups, key=min):
        fields = [per.get(i, {}) for i in g]
        try:
            family, model = int(fields[0]["cpu family"]), int(fields[0]["model"])
        except (KeyError, ValueError):
            family = model = None
        cores = len({(f.get("physical id"), f.get("core id")) for f in fields if "core id" in f}) or len(g)
        khz = max((p.max_khz(i) or 0 for i in g), default=0)
        clusters.append({"core": x86_core(vendor, family, model), "cores": cores,
                         "max_ghz": round(khz / 1e6, 3) if khz else None})
    if len(clusters) > MAX_LISTED_CLUSTERS:  # a many-core part: one entry per kind of cluster
        folded: dict[tuple[Any, Any], dict[str, Any]] = {}
        for c in clusters:
            key = (c["core"], c["max_ghz"])
            folded.setdefault(key, {**c, "cores": 0})["cores"] += c["cores"]
        clusters = list(folded.values())
    return clusters


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


def _live_getprop() -> str | None:
    """Android's properties (Termux has `getprop`); None elsewhere."""
    import shutil
    import subprocess

    if not shutil.which("getprop"):
        return None
    try:
        return subprocess.run(["getprop"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None


def _psutil_memory_gb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.virtual_memory().total / 1024**3, 2)


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


# Asked in a child process: loading the runtimes would keep ~25 MB resident in an agent that waits.
_RUNTIMES_SCRIPT = """
import json
out = {}
try:
    import onnxruntime as ort
    out["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
except ImportError:
    pass
try:
    import llama_cpp
    out["llama.cpp"] = {"version": llama_cpp.__version__, "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())}
except ImportError:
    pass
try:
    import mlperf_loadgen
    out["mlperf_loadgen"] = {"installed": True}
except ImportError:
    pass
print(json.dumps(out))
"""


def probe_runtimes() -> dict[str, Any]:
    """The inference runtimes installed beside the agent, with their versions and execution providers."""
    import json
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", _RUNTIMES_SCRIPT], capture_output=True, text=True,
                              timeout=60)
        return json.loads(done.stdout) if done.returncode == 0 else {}
    except OSError:  # this interpreter cannot start itself (run by an emulator without binfmt): ask here
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(_RUNTIMES_SCRIPT, {})
        return json.loads(out.getvalue())
    except (subprocess.TimeoutExpired, ValueError):
        return {}


def probe(root: str | Path = "/", measure_bandwidth: bool = True, name: str | None = None) -> SpecSheet:
    """This device's spec sheet (or the recorded device's under `root`)."""
    p = Probe(Path(root))
    live = Path(root) == Path("/")
    system = platform.system() if live else ""
    memory = probe_memory(p, measure_bandwidth and live)
    sysctl = None if live else p.read("sysctl.txt")
    if sysctl is not None or system == "Darwin":
        values = platforms.parse_sysctl(sysctl) if sysctl is not None else platforms.live_sysctl()
        cpu, soc, memory["size_gb"] = platforms.macos_cpu(values)
    elif system == "Windows":
        cpu, soc = platforms.windows_cpu(), None
    else:
        cpu, soc = probe_cpu(p, socs.parse_getprop((_live_getprop() if live else p.read("getprop.txt")) or ""))
    if live and memory["size_gb"] is None:
        memory["size_gb"] = _psutil_memory_gb()
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name or (platform.node() if live else None),
        "device_class": None,
        "soc": soc,
        "cpu": cpu,
        "memory": memory,
        "accelerator": probe_gpu() if live else None,
        "tdp_w": None,
    }
    if live and os.environ.get("EDGEATLAS_EMULATED"):
        # Set by whoever runs this agent under an emulator (e.g. qemu-user): its timings are the host's.
        data["emulated"] = os.environ["EDGEATLAS_EMULATED"]
    if live:
        data["os"] = {"system": platform.system(), "release": platform.release(), "machine": platform.machine()}
        data["runtimes"] = probe_runtimes()
        if data["cpu"]["arch"] is None:
            data["cpu"]["arch"] = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
                platform.machine(), platform.machine() or None)
        data["cpu"]["threads"] = data["cpu"]["threads"] or os.cpu_count()
    return SpecSheet.from_dict(data, "probed spec sheet")
