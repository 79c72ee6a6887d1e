"""Spec sheet + setting → the processor's peaks and a feature vector. Missing fields stay missing.

A CPU's peak is Σ over the cores in use of clock × FP32 FLOPs per cycle, and FLOPs per cycle come from
the core's microarchitecture (its vector units and FMA pipes), or else from `simd` × `fma_units`. Two
phones with the same clocks differ by their core designs, so each core also carries a relative
per-clock performance figure from the table below. A value the sheet does not give is NaN here; the
models see it as 0 with a "missing" flag beside it, never as a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.spec import DEVICE_CLASSES, SpecSheet, slug

# core → (FP32 FLOPs per cycle per core, per-clock performance relative to a Cortex-A53).
# FLOPs per cycle: vector width × FMA pipes × 2. Per-clock figures: public SPECint2006/2017-per-GHz
# ratios, rounded; they order core designs, they are not benchmarks of their own.
CORES: dict[str, tuple[float, float]] = {
    "cortex-a7": (2, 0.6), "cortex-a9": (4, 0.9), "cortex-a15": (8, 1.6), "cortex-a17": (8, 1.6),
    "cortex-a53": (4, 1.0), "cortex-a55": (8, 1.15), "cortex-a510": (8, 1.4), "cortex-a520": (8, 1.5),
    "cortex-a57": (8, 1.8), "cortex-a72": (8, 2.1), "cortex-a73": (8, 2.2), "cortex-a75": (8, 2.6),
    "cortex-a76": (16, 3.3), "cortex-a77": (16, 3.8), "cortex-a78": (16, 4.2), "cortex-a710": (16, 4.4),
    "cortex-a715": (16, 4.6), "cortex-a720": (16, 4.8), "cortex-a725": (16, 5.0),
    "cortex-x1": (32, 5.0), "cortex-x2": (32, 5.5), "cortex-x3": (32, 6.0), "cortex-x4": (32, 6.8),
    "cortex-x925": (32, 7.5),
    "krait": (8, 1.2), "scorpion": (4, 0.8), "kryo": (8, 2.4),
    "kryo-280-gold": (8, 2.2), "kryo-280-silver": (4, 1.0), "kryo-385-gold": (8, 2.6),
    "kryo-385-silver": (8, 1.15), "kryo-485-gold": (16, 3.3), "kryo-485-silver": (8, 1.15),
    "mongoose-m1": (8, 2.2), "mongoose-m2": (8, 2.6), "mongoose-m3": (16, 3.2), "mongoose-m4": (16, 3.5),
    "mongoose-m5": (16, 4.0),
    "neoverse-n1": (16, 3.3), "neoverse-n2": (16, 4.4), "neoverse-v1": (32, 5.0), "neoverse-v2": (32, 5.5),
    "carmel": (16, 3.0), "denver2": (8, 2.5),
    "firestorm": (32, 7.0), "icestorm": (16, 2.2), "avalanche": (32, 7.5), "blizzard": (16, 2.4),
    "everest": (32, 8.0), "sawtooth": (16, 2.6),
    "silvermont": (8, 1.5), "airmont": (8, 1.5), "goldmont": (8, 2.0), "tremont": (8, 2.6),
    "gracemont": (16, 3.3),
    "haswell": (32, 3.8), "broadwell": (32, 4.0), "skylake": (32, 4.5), "kaby_lake": (32, 4.5),
    "coffee_lake": (32, 4.5), "cascade_lake": (32, 4.6), "ice_lake": (32, 5.2), "tiger_lake": (32, 5.4),
    "alder_lake": (32, 6.0), "raptor_lake": (32, 6.2), "sapphire_rapids": (64, 5.6),
    "zen": (16, 3.9), "zen2": (32, 4.5), "zen3": (32, 5.2), "zen4": (32, 5.8), "zen5": (64, 6.5),
    # the names the agent's probe gives (pytorch/cpuinfo's) where they differ from the ones above
    "cortex-a55r0": (8, 1.15), "saltwell": (4, 0.9), "goldmont-plus": (8, 2.2), "sky-lake": (32, 4.5),
    "sandy-bridge": (16, 3.2), "ivy-bridge": (16, 3.3), "sunny-cove": (32, 5.2), "willow-cove": (32, 5.4),
    "golden-cove": (32, 6.0), "denver": (8, 2.3),
    "meerkat-m3": (16, 3.2), "meerkat-m4": (16, 3.5), "exynos-m5": (16, 4.0), "pj4": (4, 0.9),
    "cortex-a5": (2, 0.5), "cortex-a8": (4, 0.7), "cortex-a12": (8, 1.4), "arm11": (1, 0.4),
}
# FP32 lanes of one vector register.
SIMD_LANES = {"sse": 4, "sse2": 4, "sse4": 4, "avx": 8, "avx2": 8, "avx512": 16, "neon": 4, "asimd": 4,
              "sve": 4, "sve2": 4, "vfp": 1, "none": 1}
# GPU generations, in order, so that an unseen one sits between its neighbours.
GPU_GENERATIONS = {"kepler": 3.0, "maxwell": 5.0, "pascal": 6.0, "volta": 7.0, "turing": 7.5, "ampere": 8.0,
                   "ada": 8.9, "ada_lovelace": 8.9, "hopper": 9.0, "blackwell": 10.0}
RUNTIMES = ("pytorch", "tflite", "onnxruntime", "llama.cpp")
# How far above its base clock a core may run, where a sheet gives no maximum (`Processor.boost`): among x86
# server and desktop parts up to about twice (Xeon Platinum 8480+: 3.8 GHz over a 2.0 base; Core
# i9-13900K: 5.8 over 3.0; EPYC 9654: 3.7 over 2.4). This project's VM states 2.596 GHz, the host's nominal
# clock, and a chain of dependent adds ran at 3.5 GHz on it (its fingerprint: ×1.28 its sheet's peak).
BASE_CLOCK_BOOST = 2.0
# int8 multiply-adds per FP32 one, where a sheet gives no int8 peak: an int8 dot-product instruction (x86
# VNNI, Arm SDOT, a GPU's DP4A) does four per 32-bit lane where an FMA does one. Processors without one
# reach less; as the bound of a floor, the most any reaches.
INT8_PER_FP32 = 4.0

# The feature vector's names, in order; each numeric one has a `<name>_missing` flag after it.
NUMERIC = ("log_peak_gflops", "log_bandwidth_gbs", "log_ridge", "log_cache_kb", "log_units",
           "log_clock_ghz", "cpu_log_single_core_gflops", "cpu_perf_per_clock", "cpu_log_perf_clock_sum",
           "cpu_big_share", "gpu_generation", "gpu_log_memory_gb", "log_tdp_w", "log_batch", "log_threads")
CATEGORICAL = (tuple(f"target_{t}" for t in ("cpu", "gpu", "other"))
               + tuple(f"class_{c}" for c in DEVICE_CLASSES)
               + ("cpu_x86", "cpu_arm") + tuple(f"runtime_{r}" for r in RUNTIMES))
FEATURES = tuple(n for name in NUMERIC for n in (name, name + "_missing")) + CATEGORICAL


@dataclass(frozen=True)
class Processor:
    """The processor a setting runs on, as far as its spec sheet tells."""

    target: str
    peak_flops: float  # FLOP/s, NaN when the sheet does not give enough
    bandwidth: float  # bytes/s, NaN when unknown
    values: dict[str, float]  # NUMERIC name → value (NaN = missing)
    flags: dict[str, float]  # CATEGORICAL name → 0/1
    int8_peak: float = math.nan  # int8 ops/s: the sheet's int8_tops, else INT8_PER_FP32 × peak_flops
    lanes: int = 1  # FP32 lanes of a CPU's vector unit (the sheet's simd); 1: not a CPU, or not told
    cache_bytes: float = math.nan  # its last-level cache (`last_level_cache`), NaN when the sheet does not tell
    boost: float = 1.0  # how far above peak_flops it may compute: BASE_CLOCK_BOOST where that is a base clock's


def core_key(name: str) -> str:
    return slug(name).replace("_", "-")


def _core(name: str | None) -> tuple[float, float] | None:
    if not name:
        return None
    key = core_key(name)
    return CORES.get(key) or CORES.get(key.replace("-", "_")) or CORES.get(key.replace("arm-", ""))


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _log(value: float) -> float:
    return math.log(value) if value > 0 else math.nan


def processor(spec: SpecSheet, target: str = "cpu", batch: int = 1, threads: int = 0,
              runtime: str = "") -> Processor:
    """The processor of `target` on this sheet, its peaks and features. Refuses a target the sheet lacks."""
    values = dict.fromkeys(NUMERIC, math.nan)
    flags = dict.fromkeys(CATEGORICAL, 0.0)
    flags[f"target_{target if target in ('cpu', 'gpu') else 'other'}"] = 1.0
    if spec.device_class in DEVICE_CLASSES:
        flags[f"class_{spec.device_class}"] = 1.0
    runtime_key = (runtime or "").lower()
    if f"runtime_{runtime_key}" in flags:
        flags[f"runtime_{runtime_key}"] = 1.0
    values["log_batch"] = math.log(batch) if batch and batch > 0 else math.nan
    values["log_threads"] = math.log(threads) if threads and threads > 0 else math.nan
    values["log_tdp_w"] = _log(_num(spec.get("tdp_w")))
    int8 = math.nan
    if target == "cpu":
        peak, bandwidth = _cpu(spec, threads, values, flags)
    else:
        peak, bandwidth = _accelerator(spec, target, values)
        int8 = _num((spec.get("accelerator") or {}).get("int8_tops")) * 1e12
    if not int8 > 0:  # NaN compares False
        int8 = INT8_PER_FP32 * peak
    values["log_peak_gflops"] = _log(peak / 1e9)
    values["log_bandwidth_gbs"] = _log(bandwidth / 1e9)
    values["log_ridge"] = _log(peak / bandwidth) if peak > 0 and bandwidth > 0 else math.nan
    cpu = spec.get("cpu") if target == "cpu" else None
    lanes = SIMD_LANES.get(str(cpu.get("simd") or "").lower(), 1) if isinstance(cpu, dict) else 1
    return Processor(target=target, peak_flops=peak, bandwidth=bandwidth, values=values, flags=flags,
                     int8_peak=max(int8, peak) if peak > 0 else int8, lanes=lanes,
                     cache_bytes=last_level_cache(spec, target),
                     boost=BASE_CLOCK_BOOST if target == "cpu" and base_clock_only(spec) else 1.0)


def last_level_cache(spec: SpecSheet, target: str = "cpu") -> float:
    """Bytes of the last cache level before memory the sheet names for `target`: a CPU's L3, else its L2;
    an accelerator's L2. NaN where it names none."""
    part = spec.get("cpu") if target == "cpu" else spec.get("accelerator")
    if not isinstance(part, dict):
        return math.nan
    sizes = [_num(part.get(k)) for k in (("l3_kb", "l2_kb") if target == "cpu" else ("l2_kb",))]
    return next((kb * 1024 for kb in sizes if kb > 0), math.nan)


def _cpu(spec: SpecSheet, threads: int, values: dict, flags: dict) -> tuple[float, float]:
    cpu = spec.get("cpu")
    if not isinstance(cpu, dict) or not cpu:
        raise InvalidInput(f"target 'cpu': the spec sheet {spec.name or ''} has no field cpu".replace("  ", " "))
    arch = str(cpu.get("arch") or "").lower()
    flags["cpu_x86"] = float(arch in ("x86_64", "amd64", "x86", "i686"))
    flags["cpu_arm"] = float(arch.startswith("arm") or arch == "aarch64")
    lanes = SIMD_LANES.get(str(cpu.get("simd") or "").lower())
    fma = _num(cpu.get("fma_units"))
    # Per core: (clock GHz, FLOPs per cycle, per-clock performance); NaN where the sheet does not tell.
    cores: list[tuple[float, float, float]] = []
    clusters = cpu.get("clusters") or []
    default_core = _core(cpu.get("microarchitecture")) or _core(cpu.get("model"))
    if clusters:
        for cluster in clusters:
            known = _core(cluster.get("core")) or default_core
            ghz = _num(cluster.get("max_ghz"))
            ghz = ghz if not math.isnan(ghz) else _cpu_clock(cpu)
            per_cycle = known[0] if known else math.nan
            cores += [(ghz, per_cycle, known[1] if known else math.nan)] * int(cluster.get("cores") or 1)
    elif cpu.get("cores"):
        known = default_core
        per_cycle = known[0] if known else math.nan
        if lanes and not math.isnan(fma):  # the sheet's own vector units win over the table
            per_cycle = lanes * 2 * max(fma, 0.5)
        cores = [(_cpu_clock(cpu), per_cycle, known[1] if known else math.nan)] * int(cpu["cores"])
    if not cores:
        peak = math.nan
    else:
        # Threads use the fastest cores first; 0 = the runtime's default, all cores.
        cores.sort(key=lambda c: -(c[0] * c[1]) if not math.isnan(c[0] * c[1]) else 0)
        used = cores[: threads] if threads and threads > 0 else cores
        peak = sum(g * f for g, f, _ in used) * 1e9
        best = cores[0]
        values["cpu_log_single_core_gflops"] = _log(best[0] * best[1])
        values["cpu_perf_per_clock"] = best[2]
        values["cpu_log_perf_clock_sum"] = _log(sum(g * p for g, _, p in used))
        values["cpu_big_share"] = sum(1 for c in used if c[2] == best[2]) / len(used)
        values["log_units"] = math.log(len(used))
        values["log_clock_ghz"] = _log(best[0])
    cache = sum(v for v in (_num(cpu.get("l2_kb")), _num(cpu.get("l3_kb"))) if not math.isnan(v))
    values["log_cache_kb"] = _log(cache)
    return peak, _num(spec.get("memory.bandwidth_gbs")) * 1e9


def _cpu_clock(cpu: dict) -> float:
    """GHz a core of the sheet runs at: its max_ghz, else its base_ghz (`base_clock_only`), else NaN."""
    ghz = _num(cpu.get("max_ghz"))
    return ghz if not math.isnan(ghz) else _num(cpu.get("base_ghz"))


def base_clock_only(spec: SpecSheet) -> bool:
    """Whether the sheet's CPU clock is a base clock: base_ghz with no max_ghz, for the CPU or any cluster.
    A core runs above its base clock when its power and thermal budget allow (`BASE_CLOCK_BOOST`)."""
    cpu = spec.get("cpu")
    if not isinstance(cpu, dict) or math.isnan(_num(cpu.get("base_ghz"))):
        return False
    return math.isnan(_num(cpu.get("max_ghz"))) and \
        all(math.isnan(_num(c.get("max_ghz"))) for c in cpu.get("clusters") or [] if isinstance(c, dict))


def _accelerator(spec: SpecSheet, target: str, values: dict) -> tuple[float, float]:
    accel = spec.get("accelerator")
    if not isinstance(accel, dict) or accel.get("kind") not in (None, target):
        raise InvalidInput(f"target {target!r}: the spec sheet has no {target} in field accelerator")
    # The fastest arithmetic the sheet names, in the order a model is usually run: FP32, else FP16, else
    # INT8 (an ASIC or NPU that publishes only TOPS runs models quantised).
    tflops = next((v for v in (_num(accel.get(k)) for k in ("fp32_tflops", "fp16_tflops", "int8_tops"))
                   if not math.isnan(v)), math.nan)
    values["log_units"] = _log(_num(accel.get("compute_units")))
    values["log_clock_ghz"] = _log(_num(accel.get("clock_ghz")))
    values["log_cache_kb"] = _log(_num(accel.get("l2_kb")))
    values["gpu_generation"] = GPU_GENERATIONS.get(str(accel.get("architecture") or "").lower(), math.nan)
    values["gpu_log_memory_gb"] = _log(_num(accel.get("memory_gb")))
    return tflops * 1e12, _num(accel.get("bandwidth_gbs")) * 1e9


def feature_vector(proc: Processor) -> np.ndarray:
    """FEATURES as float32: each numeric value (0 where missing) then its missing flag; then the flags."""
    out = []
    for name in NUMERIC:
        v = proc.values[name]
        out += [0.0, 1.0] if math.isnan(v) else [v, 0.0]
    out += [proc.flags[name] for name in CATEGORICAL]
    return np.array(out, dtype=np.float32)
