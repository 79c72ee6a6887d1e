"""Hardware probe: this device's spec sheet (edgeatlas.spec/v1) from /proc, /sys and the runtimes.

Fields the probe cannot know are None, never guessed. `root` points the file reads at a recorded tree.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeatlas.agent import arm_linux, platforms, socs
from edgeatlas.agent.cpus import ARM_VENDORS, x86_core
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
    """'0-3,6' → [0, 1, 2, 3, 6]; ValueError for anything else, or for processors past the most any
    kernel numbers (a recorded tree is someone's input: '0-99999999' must not fill the memory)."""
    cpus: list[int] = []
    for part in text.strip().replace("\n", ",").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if not 0 <= first <= last < arm_linux.MAX_PROCESSORS:
            raise ValueError(f"processor list {part[:40]!r} out of range")
        cpus.extend(range(first, last + 1))
    return sorted(set(cpus))


def probe_cpu(p: Probe, properties: dict[str, str] | None = None,
              sources: dict[str, str] | None = None) -> tuple[dict[str, Any], str | None]:
    """(the spec sheet's cpu section, the SoC's name or None); `sources` collects which file decided what."""
    sources = {} if sources is None else sources
    properties = properties or {}
    per, common = p.cpuinfo()
    merged = {k: v for fields in [common, *per.values()] for k, v in fields.items()}
    cpu: dict[str, Any] = {"vendor": None, "model": None, "arch": None, "cores": None, "threads": None,
                           "clusters": None, "base_ghz": None, "max_ghz": None, "simd": None,
                           "fma_units": None, "l1d_kb": None, "l2_kb": None, "l3_kb": None}
    # x86 by /proc/cpuinfo's own fields, or (without it) by Android's ABI property
    x86 = "vendor_id" in merged or "flags" in merged or properties.get("ro.product.cpu.abi", "").startswith("x86")
    model_name = _clean_model(merged.get("model name"))
    if x86:
        ids = p.cpu_ids()
        soc = _soc(p, merged, properties, len(ids) or None, model_name, sources)
        _x86_cpu(p, cpu, per, merged, ids, model_name, sources)
    else:
        @functools.cache  # decode asks for it at most twice, with one count: the SoC is decoded once
        def layout(count: int):
            return socs.layout(_soc(p, merged, properties, count or None, None, {}))

        decoded = arm_linux.decode(p.read, p.read_int, p.cpu_list, layout)
        if "clusters" in decoded.sources:
            sources["cpu.clusters"] = decoded.sources["clusters"]
        if "cores" in decoded.sources:  # which design each cluster has
            sources["cpu.clusters[].core"] = decoded.sources["cores"]
        # Android takes idle cores offline and /proc/cpuinfo lists only the online ones: without /sys to
        # count the others, the processors seen are a lower bound, and only the SoC's layout can say more.
        partial = bool(properties) and p.cpu_list("sys/devices/system/cpu/present") is None and p.cpu_list(
            "sys/devices/system/cpu/possible") is None
        soc = _soc(p, merged, properties, len(decoded.processors) or None, None, sources, exact=not partial)
        if decoded.processors:
            _arm_cpu(cpu, decoded, merged, sources)
        if (partial or not decoded.processors) and socs.layout(soc):
            known = socs.layout(soc)
            cpu["arch"] = cpu["arch"] or "arm64"
            cpu["clusters"] = [{"core": core, "cores": n, "max_ghz": None} for core, n in known]
            cpu["threads"] = cpu["cores"] = sum(n for _, n in known)
            cpu["model"] = known[0][0] if len({core for core, _ in known}) == 1 else None
            for key in ("cpu.threads", "cpu.cores", "cpu.clusters"):
                sources[key] = f"the known core layout of the {soc} (no /sys to count offline cores)"
        elif partial:
            cpu["threads"] = cpu["cores"] = cpu["clusters"] = cpu["model"] = None
            for key in ("cpu.threads", "cpu.cores", "cpu.clusters"):
                sources.pop(key, None)
    freqs = [f for f in (p.max_khz(c) for c in p.cpu_ids()) if f]
    if freqs:
        cpu["max_ghz"] = round(max(freqs) / 1e6, 3)
        sources["cpu.max_ghz"] = "cpufreq/cpuinfo_max_freq"
    base = p.read_int("sys/devices/system/cpu/cpu0/cpufreq/base_frequency")
    if base:
        cpu["base_ghz"] = round(base / 1e6, 3)
        sources["cpu.base_ghz"] = "cpufreq/base_frequency"
    if x86:
        _x86_clock(cpu, per, model_name, sources)
    cpu.update(_caches(p))
    return cpu, soc


def _soc(p: Probe, merged: dict[str, str], properties: dict[str, str], cores: int | None,
         model_name: str | None, sources: dict[str, str], exact: bool = True) -> str | None:
    name, source = socs.soc_name(merged.get("Hardware"), properties,
                                 [("sys/devices/soc0/machine", p.read("sys/devices/soc0/machine")),
                                  ("device-tree model", p.read("proc/device-tree/model")),
                                  ("device-tree compatible",
                                   (p.read("proc/device-tree/compatible") or "").replace("\0", " ")),
                                  ("/proc/cpuinfo model name", model_name)], cores, exact)
    if name:
        sources["soc"] = source
    return name


def _arm_cpu(cpu: dict[str, Any], decoded: arm_linux.Decoded, merged: dict[str, str],
             sources: dict[str, str]) -> None:
    versions = {p.midr["architecture"] for p in decoded.processors if "architecture" in p.midr}
    cpu["arch"] = "arm" if versions and max(versions) < 8 else "arm64"
    features = decoded.features
    cpu["simd"] = "sve2" if "sve2" in features else "sve" if "sve" in features else (
        "neon" if {"asimd", "neon"} & features else None)
    vendors = {_arm_vendor(p) for p in decoded.processors} - {None}
    if len(vendors) == 1:
        cpu["vendor"] = vendors.pop()
    if decoded.processors:
        cpu["threads"] = cpu["cores"] = len(decoded.processors)
        sources["cpu.threads"] = sources["cpu.cores"] = decoded.sources.get("processors", "")
    cpu["clusters"] = decoded.clusters
    names = {c["core"] for c in cpu["clusters"] or []}
    if len(names) == 1 and None not in names:  # one core design: its name is the model; big.LITTLE has none
        cpu["model"] = names.pop()


def _arm_vendor(p: arm_linux.Processor) -> str | None:
    return ARM_VENDORS.get(p.midr["implementer"]) if "implementer" in p.midr else None


def _clean_model(name: str | None) -> str | None:
    if not name:
        return None
    return re.sub(r"\s+", " ", name).strip()


def _x86_cpu(p: Probe, cpu: dict[str, Any], per: dict[int, dict[str, str]], merged: dict[str, str],
             ids: list[int], model_name: str | None, sources: dict[str, str]) -> None:
    cpu["arch"] = "x86_64"
    cpu["vendor"] = X86_VENDORS.get(merged.get("vendor_id", ""), merged.get("vendor_id"))
    cpu["model"] = model_name
    flags = set(merged.get("flags", "").split())
    cpu["simd"] = next((name for flag, name in X86_SIMD if flag in flags), None)
    cpu["threads"] = len(ids) or None
    sys_lists = p.cpu_list("sys/devices/system/cpu/present") or p.cpu_list("sys/devices/system/cpu/possible")
    sources["cpu.threads"] = "cpu/present ∩ cpu/possible" if sys_lists else "/proc/cpuinfo processor lines"
    pairs = {(f.get("physical id"), f.get("core id")) for f in per.values() if "core id" in f}
    if pairs and set(ids) <= set(per):  # processors /proc/cpuinfo does not list (offline) hide their cores
        cpu["cores"], sources["cpu.cores"] = len(pairs), "/proc/cpuinfo (physical id, core id) pairs"
    else:
        cpu["cores"] = _sys_cores(p)
        if cpu["cores"]:
            sources["cpu.cores"] = "topology/core_id and physical_package_id"
    cpu["clusters"] = _x86_clusters(p, per, ids, cpu["vendor"], sources)


def _x86_clock(cpu: dict[str, Any], per: dict[int, dict[str, str]], model_name: str | None,
               sources: dict[str, str]) -> None:
    """Where cpufreq is absent: the nominal clock from the brand string ("@ 3.20GHz") is the base clock. In
    a virtual machine (the `hypervisor` flag) the clock /proc/cpuinfo reports is the host's nominal clock
    (the hypervisor's TSC rate), also a base clock where the brand string gave none: the host's cores boost
    above it (this project's VM reports 2.596 GHz; a chain of dependent adds ran at 3.5 GHz on it). On bare
    metal it is only the clock of the moment. The maximum stays unknown either way (the predictor reads a
    base clock as one a core may run above: `predictor.hardware.BASE_CLOCK_BOOST`)."""
    nominal = platforms.nominal_ghz(model_name)
    if nominal and cpu["base_ghz"] is None:
        cpu["base_ghz"] = nominal
        sources["cpu.base_ghz"] = "/proc/cpuinfo model name (nominal clock)"
    virtual = any("hypervisor" in f.get("flags", "").split() for f in per.values())
    mhz = [float(f["cpu MHz"]) for f in per.values() if _is_number(f.get("cpu MHz"))]
    if cpu["base_ghz"] is None and virtual and mhz:
        cpu["base_ghz"] = round(max(mhz) / 1000, 3)
        sources["cpu.base_ghz"] = ("/proc/cpuinfo cpu MHz (a virtual machine without cpufreq: the host's nominal "
                                   "clock, which its cores boost above)")


def _is_number(text: str | None) -> bool:
    try:
        return text is not None and float(text) > 0
    except ValueError:
        return False


def _sys_cores(p: Probe) -> int | None:
    pairs = set()
    for cpu in p.cpu_ids():
        core = p.read_int(f"sys/devices/system/cpu/cpu{cpu}/topology/core_id")
        pkg = p.read_int(f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id")
        if core is None:
            return None
        pairs.add((pkg, core))
    return len(pairs) or None


def _groups(p: Probe, ids: list[int], rel: str) -> list[list[int]] | None:
    """Processors joined whenever one of them lists another in `rel` (union-find); None unless every
    processor has the file."""
    parent = {i: i for i in ids}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in ids:
        listed = p.cpu_list(f"sys/devices/system/cpu/cpu{i}/{rel}")
        if not listed:  # a processor the kernel does not describe (offline): the grouping is unknown
            return None
        for j in listed:
            if j in parent:
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in ids:
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=min)


def _last_level_cache(p: Probe, cpu: int) -> str | None:
    """The cache index of the highest level that holds data (unified or data), e.g. 'cache/index3'."""
    best = None
    for index in range(8):
        rel = f"sys/devices/system/cpu/cpu{cpu}/cache/index{index}"
        level = p.read_int(f"{rel}/level")
        kind = (p.read(f"{rel}/type") or "").strip()
        if level is not None and kind in ("Unified", "Data") and (best is None or level > best[0]):
            best = (level, f"cache/index{index}")
    return best[1] if best else None


def _core_key(p: Probe, per: dict[int, dict[str, str]], cpu: int) -> tuple | None:
    """The physical core a logical processor runs on: /proc/cpuinfo's (physical id, core id), else the
    topology's (package, core)."""
    fields = per.get(cpu, {})
    if "core id" in fields:
        return fields.get("physical id"), fields["core id"]
    core = p.read_int(f"sys/devices/system/cpu/cpu{cpu}/topology/core_id")
    if core is None:
        return None
    return str(p.read_int(f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id")), str(core)


# Cores of these small x86 designs come in modules sharing one L2 (no L3), a property of the design itself.
# (Airmont and Goldmont are left out: their SoCs pair cores differently.)
X86_MODULE_CORES = {"silvermont": 2, "tremont": 4, "gracemont": 4, "saltwell": 1, "bonnell": 1}


def _x86_clusters(p: Probe, per: dict[int, dict[str, str]], ids: list[int], vendor: str | None,
                  sources: dict[str, str]) -> list[dict[str, Any]] | None:
    """Processors sharing the last-level cache (else a clock domain wider than one processor, else the
    core design's module), counted in cores, named by their core design."""
    fields0 = per.get(ids[0], {}) if ids else {}
    try:
        core = x86_core(vendor, int(fields0["cpu family"]), int(fields0["model"]))
    except (KeyError, ValueError):
        core = None
    llc = _last_level_cache(p, ids[0]) if ids else None
    groups = _groups(p, ids, f"{llc}/shared_cpu_list") if llc else None
    if groups:
        sources["cpu.clusters"] = f"processors sharing the last-level cache ({llc}/shared_cpu_list)"
    else:
        groups = _groups(p, ids, "cpufreq/related_cpus")
        if groups and max(map(len, groups)) > 1:
            sources["cpu.clusters"] = "cpufreq/related_cpus (no cache topology in /sys)"
        elif core in X86_MODULE_CORES and ids:
            threads = {i: (per.get(i, {}).get("physical id"), per.get(i, {}).get("core id")) for i in ids}
            if any(v[1] is None for v in threads.values()):
                return None
            cores = sorted(set(threads.values()), key=lambda v: (str(v[0]), int(v[1])))
            n = X86_MODULE_CORES[core]
            modules = [cores[k:k + n] for k in range(0, len(cores), n)]
            groups = [[i for i in ids if threads[i] in set(m)] for m in modules]
            sources["cpu.clusters"] = f"{core} cores come in modules of {n} sharing an L2 (no cache topology in /sys)"
        else:
            return None
    core_of = {i: _core_key(p, per, i) for i in ids}
    if any(key is None for key in core_of.values()):
        return None  # which threads share a core is unknown
    clusters = []
    for g in groups:
        cores = len({core_of[i] for i in g})
        khz = max((p.max_khz(i) or 0 for i in g), default=0)
        clusters.append({"core": core, "cores": cores, "max_ghz": round(khz / 1e6, 3) if khz else None})
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
        memory["bandwidth_method"] = "measured: numpy copy of 64 MiB, median of 15 over 0.5 s"
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


def copy_bandwidth_gbs(size_mib: int = 64, copies: int = 15, gap_s: float = 0.03) -> float:
    """Sustained copy bandwidth (read + write bytes / s) in GB/s: the median of `copies` copies of
    `size_mib` MiB, `gap_s` apart, after one copy that faults the pages in.

    The median over half a second, not the best of a burst: a machine's bandwidth moves with what else runs
    on it, and the best of five back-to-back copies caught its peaks (this machine read 30.3, 23.9 and 22.9
    GB/s on three probes). A sheet read at a peak is one the predictor does not take for the same machine
    (`predictor.models.BANDWIDTH_REMEASURED`); `bench/probe_bandwidth.py` measures both, side by side."""
    src = np.ones(size_mib * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    seconds = []
    for i in range(copies):
        if i:
            time.sleep(gap_s)
        t0 = time.perf_counter()
        np.copyto(dst, src)
        seconds.append(time.perf_counter() - t0)
    return 2 * src.nbytes / float(np.median(seconds)) / 1e9


def probe_gpu() -> dict[str, Any] | None:
    """The first NVIDIA GPU through NVML, where the library and a driver are present: what the predictor
    reads from a GPU's sheet, from the device's own answers by rules that hold for every NVIDIA GPU since
    Fermi, never from a table of models:
    - `fp32_tflops`: CUDA cores × 2 (one FMA per core per clock) × the highest SM clock;
    - `bandwidth_gbs`: the highest memory clock × 2 (GDDR and HBM move data on both edges; NVML gives the
      clock, not the data rate) × the bus width in bytes;
    - `architecture`: NVML's own name for it (NVML_DEVICE_ARCH_*), lower case;
    - `compute_units` (SMs) and `l2_kb`: NVML has neither, so the CUDA driver is asked (`_cuda_attributes`).
    A value the driver cannot give is left out (null on the sheet)."""
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
        gpu: dict[str, Any] = {"kind": "gpu", "vendor": "nvidia", "name": _text(name),
                               "memory_gb": round(mem.total / 1024**3, 2), "clock_ghz": round(clock / 1000, 3),
                               "count": pynvml.nvmlDeviceGetCount()}

        def ask(function: str, *args):
            """An NVML query this driver or GPU may not support (older drivers lack the newer calls)."""
            try:
                return getattr(pynvml, function)(handle, *args)
            except Exception:  # AttributeError (older nvidia-ml-py), NVMLError_NotSupported, ...
                return None

        arch = ask("nvmlDeviceGetArchitecture")
        names = {value: key[len("NVML_DEVICE_ARCH_"):].lower() for key, value in vars(pynvml).items()
                 if key.startswith("NVML_DEVICE_ARCH_") and isinstance(value, int)}
        if names.get(arch, "unknown") != "unknown":
            gpu["architecture"] = names[arch]
        cores = ask("nvmlDeviceGetNumGpuCores")
        if cores and clock:
            gpu["fp32_tflops"] = round(cores * 2 * clock / 1e6, 2)
        memory_mhz = ask("nvmlDeviceGetMaxClockInfo", getattr(pynvml, "NVML_CLOCK_MEM", 2))
        bus_bits = ask("nvmlDeviceGetMemoryBusWidth")
        if memory_mhz and bus_bits:
            gpu["bandwidth_gbs"] = round(memory_mhz * 1e6 * 2 * bus_bits / 8 / 1e9, 1)
        pci = ask("nvmlDeviceGetPciInfo")
        cuda = _cuda_attributes(_text(pci.busId)) if pci is not None else {}
        if cuda.get("sms"):
            gpu["compute_units"] = cuda["sms"]
        if cuda.get("l2_bytes"):
            gpu["l2_kb"] = cuda["l2_bytes"] // 1024
        return gpu
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode()


# The CUDA driver API through ctypes: NVML does not give a GPU's SM count or L2 size, and the driver library
# is there wherever a driver is (a binding package, cuda-python, would be one more dependency on every agent
# for two numbers). In a child process, as the runtimes: cuInit keeps the driver loaded in the process.
# The device is found by its PCI bus id, since CUDA and NVML number devices differently.
_CUDA_SCRIPT = """
import ctypes, json, sys
out = {}
try:
    lib = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    dev = ctypes.c_int()
    if lib.cuInit(0) == 0 and lib.cuDeviceGetByPCIBusId(ctypes.byref(dev), sys.argv[1].encode()) == 0:
        for key, code in (("sms", 16), ("l2_bytes", 38)):  # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, _L2_CACHE_SIZE
            value = ctypes.c_int()
            if lib.cuDeviceGetAttribute(ctypes.byref(value), code, dev) == 0:
                out[key] = value.value
except OSError:
    pass
print(json.dumps(out))
"""


def _cuda_attributes(bus_id: str) -> dict[str, int]:
    return _child_json(_CUDA_SCRIPT, bus_id)


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
    return _child_json(_RUNTIMES_SCRIPT)


def _child_json(script: str, *args: str) -> dict[str, Any]:
    """What `script` prints (one JSON object) when run in a child interpreter with `args`: {} if it fails."""
    import json
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout) if done.returncode == 0 else {}
    except OSError:  # this interpreter cannot start itself (run by an emulator without binfmt): ask here
        import contextlib
        import io

        out = io.StringIO()
        argv = sys.argv
        try:
            sys.argv = ["-c", *args]
            with contextlib.redirect_stdout(out):
                exec(script, {})
        finally:
            sys.argv = argv
        return json.loads(out.getvalue())
    except (subprocess.TimeoutExpired, ValueError):
        return {}


def probe(root: str | Path = "/", measure_bandwidth: bool = True, name: str | None = None,
          sources: dict[str, str] | None = None) -> SpecSheet:
    """This device's spec sheet (or the recorded device's under `root`); `sources`, when given, is filled
    with the file or rule that decided each CPU field (`agent spec --explain`)."""
    p = Probe(Path(root))
    live = Path(root) == Path("/")
    system = platform.system() if live else ""
    memory = probe_memory(p, measure_bandwidth and live)
    sysctl = None if live else p.read("sysctl.txt")
    if sysctl is not None or system == "Darwin":
        values = platforms.parse_sysctl(sysctl) if sysctl is not None else platforms.live_sysctl()
        cpu, soc, memory["size_gb"] = platforms.macos_cpu(values, sources)
    elif system == "Windows":
        cpu, soc = platforms.windows_cpu(), None
    else:
        cpu, soc = probe_cpu(p, socs.parse_getprop((_live_getprop() if live else p.read("getprop.txt")) or ""),
                             sources)
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
