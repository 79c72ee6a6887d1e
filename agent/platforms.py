"""The CPU of a Mac (from `sysctl`) and of a Windows PC (from the registry and psutil).

Linux and Android are read from /proc and /sys (probe.py); these two systems say it differently. On a
Mac, `agent spec --root DIR` reads DIR/sysctl.txt (what `sysctl -a` prints) instead of the live system.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

# Apple silicon generation → (performance core, efficiency core), as pytorch/cpuinfo names them.
APPLE_CORES = {"M1": ("firestorm", "icestorm"), "M2": ("avalanche", "blizzard"), "M3": ("everest", "sawtooth")}
X86_SIMD_SYSCTL = [("hw.optional.avx512f", "avx512"), ("hw.optional.avx2_0", "avx2"), ("hw.optional.avx1_0", "avx"),
                   ("hw.optional.sse4_2", "sse4.2")]


def parse_sysctl(text: str) -> dict[str, str]:
    """`key: value` lines (macOS's `sysctl -a`)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def live_sysctl() -> dict[str, str]:
    try:
        return parse_sysctl(subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=10).stdout)
    except (OSError, subprocess.TimeoutExpired):
        return {}


def _int(values: dict[str, str], key: str) -> int | None:
    try:
        return int(values[key])
    except (KeyError, ValueError):
        return None


def _kb(values: dict[str, str], key: str) -> float | None:
    size = _int(values, key)
    return size / 1024 if size else None


def nominal_ghz(brand: str | None) -> float | None:
    """The nominal clock an x86 brand string names ("... CPU @ 3.20GHz"): a base clock."""
    nominal = re.search(r"@\s*(\d+(?:\.\d+)?)\s*GHz", brand or "")
    return round(float(nominal.group(1)), 3) if nominal else None


def macos_cpu(values: dict[str, str], sources: dict[str, str] | None = None
              ) -> tuple[dict[str, Any], str | None, float | None]:
    """(the cpu section, the SoC, memory in GB) from sysctl's values; `sources`, where given, says which
    value decided the clock."""
    brand = values.get("machdep.cpu.brand_string")
    apple = bool(brand and brand.startswith("Apple"))
    cpu: dict[str, Any] = {
        "vendor": "apple" if apple else ("intel" if brand and "Intel" in brand else None),
        "model": re.sub(r"\s+", " ", brand).strip() if brand else None,
        "arch": "arm64" if apple or values.get("hw.optional.arm64") == "1" else "x86_64",
        "cores": _int(values, "hw.physicalcpu"), "threads": _int(values, "hw.logicalcpu"),
        "clusters": None, "base_ghz": None, "max_ghz": None, "simd": None, "fma_units": None,
        "l1d_kb": _kb(values, "hw.l1dcachesize"), "l2_kb": _kb(values, "hw.l2cachesize"),
        "l3_kb": _kb(values, "hw.l3cachesize")}
    if apple:
        cpu["simd"] = "neon"
        generation = re.search(r"\bM(\d+)\b", brand or "")
        designs = APPLE_CORES.get(f"M{generation.group(1)}") if generation else None
        clusters = []
        for level in range(_int(values, "hw.nperflevels") or 0):  # 0: performance cores, 1: efficiency
            cores = _int(values, f"hw.perflevel{level}.physicalcpu")
            if cores:
                core = designs[min(level, 1)] if designs else None
                clusters.append({"core": core, "cores": cores, "max_ghz": None})
        cpu["clusters"] = clusters or None
    else:
        cpu["simd"] = next((name for key, name in X86_SIMD_SYSCTL if values.get(key) == "1"), None)
        # An Intel Mac's hw.cpufrequency_max is its nominal clock, the brand string's "@ 2.60GHz" (an
        # i7-9750H's reads 2600000000, an i5-10400's 2900000000), which Turbo Boost runs above (4.5, 4.3
        # GHz): a base clock. macOS does not say how far the cores boost, so the maximum stays unknown.
        key = next((k for k in ("hw.cpufrequency_max", "hw.cpufrequency") if _int(values, k)), None)
        cpu["base_ghz"] = round(_int(values, key) / 1e9, 3) if key else nominal_ghz(brand)
        if sources is not None and cpu["base_ghz"] is not None:
            sources["cpu.base_ghz"] = (f"sysctl {key} (the nominal clock, which Turbo Boost runs above)" if key
                                       else "sysctl machdep.cpu.brand_string (nominal clock)")
    memory = _int(values, "hw.memsize")
    return cpu, (re.sub(r"\s+", " ", brand).strip() if apple else None), (
        round(memory / 1024**3, 2) if memory else None)


def windows_cpu() -> dict[str, Any]:
    """What Windows says: the processor's name and clock from the registry, cores from psutil."""
    import os
    import platform

    name = mhz = None
    try:
        import winreg  # Windows only

        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
        name = winreg.QueryValueEx(key, "ProcessorNameString")[0]
        mhz = winreg.QueryValueEx(key, "~MHz")[0]
    except (ImportError, OSError):
        pass
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    machine = platform.machine().lower()
    return windows_section(name or platform.processor() or None, mhz, cores, os.cpu_count(), machine)


def windows_section(name: str | None, mhz: int | None, cores: int | None, threads: int | None,
                    machine: str) -> dict[str, Any]:
    machine = machine.lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x86_64" if machine in ("amd64", "x86_64") else machine
    vendor = next((v for k, v in (("Intel", "intel"), ("AMD", "amd"), ("Snapdragon", "qualcomm"),
                                  ("Qualcomm", "qualcomm")) if name and k in name), None)
    return {"vendor": vendor, "model": re.sub(r"\s+", " ", name).strip() if name else None, "arch": arch or None,
            "cores": cores, "threads": threads, "clusters": None, "base_ghz": round(mhz / 1000, 3) if mhz else None,
            "max_ghz": None, "simd": None, "fma_units": None, "l1d_kb": None, "l2_kb": None, "l3_kb": None}
