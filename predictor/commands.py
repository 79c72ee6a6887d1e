"""What `edgeatlas predictor ...` and `edgeatlas predict` do (the CLI only parses arguments)."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeatlas.predictor.data import GraphSet, Samples, SettingInfo, load_dir, merge, runtime_target
from edgeatlas.predictor.fingerprint import INT8_NAMES, Fingerprint
from edgeatlas.predictor.evaluate import KIND_MIN_NETWORKS, SPLITS, evaluate, fit_all, table
from edgeatlas.predictor.graph import load_onnx, runtime_graph
from edgeatlas.predictor.models import Predictor, TrainConfig, cores_used
from edgeatlas.predictor.roofline import node_seconds
from edgeatlas.protos import inputs, onnx_model
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.spec import TARGETS, SpecSheet

QUERY_COLUMNS = ("model_path", "spec_path", "target", "batch", "runtime")
RESULT_COLUMNS = ("latency_ms", "latency_ms_low", "latency_ms_high", "note", "error")


def load_data(dirs: list[str], say) -> Samples:
    parts = []
    for d in dirs:
        if d.startswith("coordinator:"):
            raise InvalidInput(f"--data {d}: a coordinator trains `predictor train` only, not `predictor eval` "
                               f"(each version keeps its own evaluation: `predictor versions`)")
        if not Path(d).is_dir():
            raise InvalidInput(f"--data {d} is not a directory")
        parts.append(load_dir(d, say))
    return merge(parts)


def train(dirs: list[str], out: str, cfg: TrainConfig, say) -> Predictor:
    start = time.monotonic()
    samples = load_data(dirs, say)
    say(f"training on {len(samples):,} measurements: {len(samples.graphs):,} networks × "
        f"{len(samples.settings)} settings on {len(samples.devices())} devices")
    predictor = fit_all(samples, cfg, say=say)
    predictor.info = {**predictor.info, "trained_on": dirs, "devices": samples.devices(), "measurements": len(samples),
                      "networks": len(samples.graphs), "config": asdict(cfg),
                      "seconds": round(time.monotonic() - start, 1)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    predictor.save(out)
    say(f"wrote {out} (trained in {time.monotonic() - start:.0f} s)")
    return predictor


def run_eval(dirs: list[str], split: str, cfg: TrainConfig, devices: list[str] | None, say, shots: int = 0,
             families: list[str] | None = None) -> str:
    if split not in SPLITS:
        raise InvalidInput(f"--split {split!r} is not one of {', '.join(SPLITS)}")
    if shots < 0 or shots > 1000:
        raise InvalidInput(f"--shots must be in 0..1000, got {shots}")
    if families and split != "leave-family-out":
        raise InvalidInput("--family applies to --split leave-family-out")
    if devices and split != "leave-hardware-out":
        raise InvalidInput("--device applies to --split leave-hardware-out")
    samples = load_data(dirs, say)
    return table(evaluate(samples, split, cfg, devices=devices, say=say, shots=shots, families=families))


def load_graph(path: str, name: str = "", request: inputs.InputRequest | None = None, runtime: str = ""):
    """(OpGraph, ONNX model or None) of an ONNX file at the inputs `request` asks for (a dynamic dimension
    it leaves open is refused), a GGUF file or a transformer config.json. An ONNX graph is featurized as
    the runtime will run it (`graph.runtime_graph`)."""
    from edgeatlas.predictor import llm

    suffix = Path(path).suffix.lower()
    if suffix in (".gguf", ".json"):
        if request is not None and not request.empty:
            raise InvalidInput("--input, --dim and --values are for ONNX models")
        return llm.to_graph(llm.from_gguf(path) if suffix == ".gguf" else llm.from_hf_config(path)), None
    proto = load_onnx(path)
    declared, outputs = onnx_model.declared_inputs(proto)
    specs = inputs.resolve(declared, request, outputs, values_needed=False)
    feeds = inputs.feeds(specs, samples=request.samples if request else {})
    return runtime_graph(proto, runtime, name=name or Path(path).stem, specs=specs, feeds=feeds), proto


def _setting(spec: SpecSheet, target: str, batch: int, threads: int, runtime: str) -> SettingInfo:
    if target not in TARGETS:
        raise InvalidInput(f"--target {target!r} is not one of {', '.join(TARGETS)}")
    if batch < 0 or threads < 0:
        raise InvalidInput("--batch and --threads must not be negative")
    info = SettingInfo(key=f"{target}/b{batch}", device=spec.name or "query", spec=spec, target=target,
                       batch=batch, threads=threads, runtime=runtime)
    if not (info.proc.peak_flops > 0 or info.proc.bandwidth > 0):  # NaN compares False
        node_seconds(np.zeros(1), np.zeros(1), info.proc)  # raises: the sheet gives neither, in one line
    return info


_LOADED: dict[tuple[str, int, int], Predictor] = {}


def loaded_predictor(checkpoint: str) -> Predictor:
    """The checkpoint loaded once per process (per file version): a warm query skips the load."""
    st = Path(checkpoint).stat()
    key = (str(Path(checkpoint).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = Predictor.load(checkpoint)
    return _LOADED[key]


def predict(checkpoint: str, spec_path: str, models: list[str], target: str, batch: int, threads: int,
            runtime: str, request: inputs.InputRequest | dict | None = None,
            fingerprint: Fingerprint | None = None) -> list[dict]:
    """One answer per model: latency_ms with its 80 % interval, and the baselines beside it; with a
    fingerprint (the device's latencies on the reference set, in this setting) calibrated on it (`answer`)."""
    predictor = loaded_predictor(checkpoint)
    spec = SpecSheet.load(spec_path)
    if fingerprint is not None:
        fingerprint.check_setting(target, batch, threads, runtime)
    setting = _setting(spec, target, batch, threads, runtime)
    requests = request if isinstance(request, dict) else {m: request for m in models}  # per model, or one for all
    loaded = [load_graph(m, request=requests.get(m), runtime=runtime) for m in models]
    graphs, protos = [g for g, _ in loaded], [p for _, p in loaded]
    samples = Samples(GraphSet.from_graphs(graphs), [setting], np.arange(len(graphs)),
                      np.zeros(len(graphs), dtype=np.int64), np.ones(len(graphs)))
    mean, lo, hi, zero_shot, note = answer(predictor, samples, setting, fingerprint)
    tab = predictor.predict(samples, "tabular")[0]
    roof = predictor.predict(samples, "roofline")[0]
    extra = {"fingerprint" if fingerprint is not None else "runtime_note": note} if note else {}
    out = []
    for i, m in enumerate(models):
        g = graphs[i]
        out.append({"model": m, "spec": spec.name, "target": target, "batch": batch, "threads": threads,
                    "runtime": runtime, "latency_ms": _r(mean[i]), "latency_ms_low": _r(lo[i]),
                    "latency_ms_high": _r(hi[i]), "interval": 0.8, "tabular_latency_ms": _r(tab[i]),
                    "roofline_latency_ms": _r(roof[i]), "gflops": round(float(g.flops.sum()) * max(batch, 1) / 1e9, 4),
                    "parameters": g.params, "predictor": "gnn", **extra})
        if fingerprint is not None:
            out[-1]["zero_shot_latency_ms"] = _r(zero_shot[i])
        if g.uncounted:  # a while loop's body, an operator the counter does not know: their work is not in the answer
            out[-1]["uncounted"] = dict(g.uncounted)
            if g.unobserved:  # the run that reads the shapes inference cannot tell failed: the user can help
                out[-1]["unobserved"] = g.unobserved
        accuracy = _accuracy_tag(protos[i], m) if protos[i] is not None else None
        if accuracy is not None:
            out[-1]["accuracy"] = accuracy
    return out


def answer(predictor: Predictor, samples: Samples, setting: SettingInfo,
           fingerprint: Fingerprint | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(log mean, log low, log high, log zero-shot mean, note) of the GNN for samples in one setting.

    With a fingerprint: calibrated on it, the note says how; an int8 network's answer is corrected by the
    fingerprint's int8 networks where they measure that network's integer kernels, else its interval spans
    the GNN's answer scaled by the fingerprint too (`int8_on_fingerprint`). Where the checkpoint's training
    data has no sample of the setting's runtime, or of int8 networks in it, and the fingerprint did not
    measure them: the interval reaches down to the roofline (lowered by as much as the hardware beat its
    sheet in training) and up by its own half-width again (an unknown runtime's overheads, or its integer
    kernels, can cost more too), and the note says so."""
    mean, lo, hi = predictor.predict(samples, "gnn")
    zero_shot = mean
    no_runtime, no_int8, note = unlearned(predictor, samples)
    unknown = no_runtime | no_int8
    if fingerprint is not None:
        fingerprint.check_setting(setting.target, setting.batch, setting.threads, setting.runtime)
        shots = fingerprint_shots(fingerprint, setting)
        cal = predictor.calibration(shots, designed=True)
        tuned = predictor.predict_calibrated(samples, cal, zero_shot=mean)
        described = cal.describe()
        integer = samples.graphs.integer()[samples.graph]
        measured = np.zeros(len(samples), dtype=bool)
        if integer.any():
            tuned, more, measured = int8_on_fingerprint(predictor, samples, fingerprint, setting, cal, shots,
                                                        (mean, lo, hi), tuned, integer)
            described += "; " + more
        tuned, said = scalar_spread(samples, cal, tuned)
        described += f"; {said}" if said else ""
        unknown = (no_int8 | (no_runtime & integer)) & ~measured  # a calibration answers for the runtime itself
        t_mean, t_lo, t_hi = tuned
        t_lo, t_hi = predictor.widened(samples, t_mean, t_lo, t_hi, unknown)
        return t_mean, t_lo, t_hi, zero_shot, described + (f"; {note}" if unknown.any() else "")
    if unknown.any():
        lo, hi = predictor.widened(samples, mean, lo, hi, unknown)
    new_hardware = unseen_note(predictor, samples, ~no_runtime)
    note = "; ".join(n for n in (note, threads_note(predictor, samples), new_hardware) if n)
    note += "; a fingerprint (edgeatlas agent fingerprint) calibrates it" if no_runtime.any() or new_hardware else ""
    return mean, lo, hi, zero_shot, note


def threads_note(predictor: Predictor, samples: Samples) -> str:
    """What a zero-shot answer at a thread count the training data never ran its runtime with is
    (`Predictor.at_trained_threads`), "" where there is none."""
    at, moved = predictor.at_trained_threads(samples)
    said = []
    for i in np.flatnonzero(moved):
        st, was = samples.settings[i], at.settings[i]
        asked = f"{st.threads} threads" if st.threads > 0 else f"its default, {cores_used(st)} cores"
        said.append(f"the training data ran {st.runtime} on {st.target} at {threads_text(was.threads)}, not "
                    f"{asked}: answered at {threads_text(was.threads)}, its work scaled to the cores in use (the "
                    "GNN's fixed costs kept), the interval spanning no change too")
    return "; ".join(dict.fromkeys(said))


def threads_text(threads: int) -> str:
    return "its default thread count" if threads <= 0 else f"{threads} thread{'s' if threads > 1 else ''}"


def unseen_note(predictor: Predictor, samples: Samples, learned: np.ndarray) -> str:
    """Why a zero-shot answer on hardware the training data never saw is wide (`Predictor.widen`): a sheet
    does not give a device's level (two Xeons with near-equal sheets run the same networks ×1.8 apart), and
    a sheet unlike the training hardware's (ONNX Runtime on an ARM board, timed only on x86) spreads the
    GNN's members apart. "" on hardware it saw, and where the runtime is not `learned` (a runtime is part
    of a setting's hardware key, and its own note says why the interval is wide)."""
    from edgeatlas.predictor.models import LEVEL_MIN_DEVICES

    if not (predictor.unseen(samples)[0] & learned).any():
        return ""
    levels = np.abs(np.asarray(predictor.info.get("level_errors") or [], dtype=np.float64))
    held = (f"how far off the training devices' levels were, each left out (up to ×{np.exp(levels.max()):.3g})"
            if len(levels) >= LEVEL_MIN_DEVICES else "a level unknown to a factor of two either way (too few "
            "training devices to leave one out)")
    return f"hardware the training data never saw: the interval holds {held} and the GNN's spread on this sheet"


def unlearned(predictor: Predictor, samples: Samples) -> tuple[np.ndarray, np.ndarray, str]:
    """(`Predictor.unlearned`'s two masks, and the note that says what the training data lacks)."""
    no_runtime, no_int8 = predictor.unlearned(samples)
    runtime = np.array([(s.runtime or "").lower() for s in samples.settings], dtype=object)[samples.setting]
    notes = []
    if no_runtime.any():
        if predictor.info.get("runtime_targets") is None:
            missing, has = sorted(set(runtime[no_runtime])), predictor.info["runtimes"]
        else:
            missing = [k.replace("/", " on ") for k in sorted({runtime_target(samples.settings[s])
                                                                for s in np.unique(samples.setting[no_runtime])})]
            has = [k.replace("/", " on ") for k in predictor.info["runtime_targets"]]
        notes.append(f"the training data has no sample of {', '.join(missing)} (it has {', '.join(has) or 'none'})")
    if no_int8.any():
        kinds = samples.graphs.int8_kinds()
        for r in sorted(set(runtime[no_int8])):
            if r not in (predictor.info.get("integer_runtimes") or []):
                notes.append(f"the training data has no int8 network in {r} (it answers as for float kernels)")
                continue
            new = sorted({k for g in np.unique(samples.graph[no_int8 & (runtime == r)])
                          for k in predictor.unlearned_kinds(kinds[g], r)})
            notes.append(f"the training data has too few networks (under {KIND_MIN_NETWORKS}) with an int8 kernel "
                         f"of kind {', '.join(new)} (bytes per element read>written) in {r}")
    note = "; ".join(notes) + ": the interval reaches down to the roofline and up as far again" if notes else ""
    return no_runtime, no_int8, note


# Of a network's int8 multiply-adds, the share that must be of kinds the fingerprint measured
# (`fingerprint.INT8_KINDS`) for it to be answered from them: a QDQ ResNet's integer classifier
# (QLinearMatMul, which no reference network has) is a fraction of a per cent of its multiply-adds. A
# depthwise kind the fingerprint did not measure rules a network out at any share: per multiply-add it costs
# many times a dense kernel, so a few per cent of the multiply-adds can be most of the time.
INT8_MEASURED_SHARE = 0.9
# How far ConvInteger's extra cost per multiply-add, over its float twin, ranged at other layer shapes than
# the reference's (64 channels at 56×56, where the integer kernel runs near its best), as measured on one
# x86 machine in ONNX Runtime 1.32 at one thread: ×0.82 at 512 channels, ×1.4 at 32, ×3.3 with 16 channels
# or a 3-channel stem (the 1×1 ones within ×1.4). The interval spans that range of every kind's extra cost.
INT8_SHAPE_RANGE = (0.75, 3.5)


def int8_extras(predictor: Predictor, fingerprint: Fingerprint, setting: SettingInfo, cal) -> dict[str, tuple]:
    """Per int8 kernel kind the fingerprint measured (`GraphSet.int8_macs`): (ms per multiply-add that its int8
    network took beyond the calibrated answer, which may be negative; that network's name). The networks are
    solved in `INT8_KINDS` order: what one network's kinds measured earlier account for (depthwise_qdq's 1×1
    convolutions, by conv3x3_qdq) is taken off before the rest is laid on its own kinds. A network holding a
    kind that no earlier one measured (its twin left out) measures nothing."""
    from edgeatlas.predictor.fingerprint import INT8_KINDS

    refs = int8_references(fingerprint, setting)
    if refs is None:
        return {}
    called = np.exp(predictor.predict_calibrated(refs, cal)[0])
    macs = refs.graphs.int8_macs()
    extras: dict[str, tuple] = {}
    for i, g in enumerate(refs.graph):
        name = refs.graphs.names[g]
        mine = {kind: float(m[g]) for kind, m in macs.items() if m[g] > 0}
        new = [kind for kind in INT8_KINDS[name] if kind in mine]
        if not new or set(mine) - set(new) - set(extras):
            continue
        known = sum(extras[kind][0] * m for kind, m in mine.items() if kind in extras)
        extra = (float(refs.latency_ms[i]) - float(called[i]) - known) / sum(mine[kind] for kind in new)
        extras.update({kind: (extra, name) for kind in new})
    return extras


# How far an int8 kernel of an operand pair no reference network measured (`models.unpaired_int8`) ranged
# about its float kernel's time, per multiply-add: ×0.43-3.7 on one x86 machine (ONNX Runtime 1.32, one
# thread: MatMulInteger, QLinearConv and ConvInteger, u8×u8, s8×u8 and s8×s8, against MatMul and Conv).
UNPAIRED_RANGE = (0.4, 4.0)


def unpaired_kind(kind: str) -> bool:
    """Whether an int8 kernel kind (`GraphSet.int8_kinds`) names an operand pair other than the quantizers'
    default, which no reference network runs."""
    from edgeatlas.predictor.graph import OPERAND_PAIRS

    return kind.rsplit(" ", 1)[-1] in OPERAND_PAIRS[1:]


def as_float_macs(predictor: Predictor, samples: Samples, cal, answer) -> tuple[tuple, str]:
    """((mean, low, high), note): the calibrated answer with the int8 multiply-adds of operand pairs no
    reference network measured (`models.unpaired_int8`) charged as float ones, at the calibration's compute
    efficiency; the interval spans `UNPAIRED_RANGE` of that float cost. The answer as given, and no note,
    where a network has none of them or the calibration has no physical part (no compute efficiency)."""
    from edgeatlas.predictor.models import unpaired_int8

    theta = cal.compute_efficiency
    at_int8 = unpaired_int8(samples)
    if theta is None or not (at_int8 > 0).any():
        return answer, ""
    procs = [st.proc for st in samples.settings]
    ratio = np.array([p.int8_peak / p.peak_flops if p.peak_flops > 0 else 1.0 for p in procs])[samples.setting]
    charged = theta * at_int8  # ms the calibrated answer gives them, at the int8 peak
    lo_range, hi_range = UNPAIRED_RANGE
    pairs = sorted({kind for kinds in samples.graphs.int8_kinds() for kind in kinds if unpaired_kind(kind)})
    note = (f"int8 kernels of operand pairs no reference network measured ({', '.join(pairs)}) charged as float "
            f"multiply-adds, the interval spanning ×{lo_range:g}–{hi_range:g} of that cost")
    return recharged(answer, charged, charged * ratio, UNPAIRED_RANGE), note


# How far a scalar loop's rate may lie from the half of one lane's peak it is charged (`graph.SCALAR_COLUMNS`):
# from the whole lane, every operation a fused multiply-add (×0.5), to one FLOP a cycle (×2). ONNX Runtime's
# STFTs of 400 and 512 points took ×1.06-1.27 of their charge on one x86 core; the C library's routines
# (`graph.SCALAR_ELEMENTWISE`) are counted in that core's cycles, which another core's library and clock move.
SCALAR_RANGE = (0.5, 2.0)


def scalar_spread(samples: Samples, cal, answer) -> tuple[tuple, str]:
    """((mean, low, high), note): the calibrated answer, its interval spanning `SCALAR_RANGE` of what it
    charges for kernels written as scalar loops (`models.scalar_loops`), which no reference network runs.
    The answer as given, and no note, where a network has none or the calibration has no compute efficiency."""
    from edgeatlas.predictor.models import scalar_loops

    theta = cal.compute_efficiency
    ms = scalar_loops(samples)
    if theta is None or not (ms > 0).any():
        return answer, ""
    note = ("kernels written as scalar loops (ONNX Runtime's DFT and STFT, its element-wise ops that call the C "
            "library per element, its reductions that add element by element, its transposes that walk a tensor by "
            "index, its tree ensembles and RBF support vector machines, its non-maximum suppression and RoiAlign, "
            "its int8 table lookups and average pools), "
            "which no reference network runs: "
            f"charged at half of one vector lane's peak, the interval spanning ×{SCALAR_RANGE[0]:g}–"
            f"{SCALAR_RANGE[1]:g} of that")
    return recharged(answer, theta * ms, theta * ms, SCALAR_RANGE), note


def recharged(answer: tuple, charged: np.ndarray, cost: np.ndarray, spread: tuple[float, float]) -> tuple:
    """(log mean, low, high): `answer` with work it charged `charged` ms for costing `cost` ms instead, and
    its interval reaching `spread` × that cost at either end (never narrower than it was)."""
    def plus(log_t, ms):
        return np.log(np.maximum(np.exp(log_t) + ms, 1e-9))

    mean, lo, hi = answer
    return (plus(mean, cost - charged), np.minimum(lo, plus(lo, spread[0] * cost - charged)),
            np.maximum(hi, plus(hi, spread[1] * cost - charged)))


def int8_on_fingerprint(predictor: Predictor, samples: Samples, fingerprint: Fingerprint, setting: SettingInfo,
                        cal, shots: Samples, zero, tuned, integer: np.ndarray):
    """((mean, low, high), note, measured) where `integer` marks int8 networks, `measured` those the
    fingerprint's int8 networks answer for.

    The fingerprint's int8 networks are float ones of its set through ONNX Runtime's quantizers, one per kind
    of integer kernel (`fingerprint.INT8_KINDS`). On each, the calibrated answer falls short of the measured
    time (or overshoots it) by what this device's integer kernels of that kind cost beyond what the float
    calibration charges for their multiply-adds: ConvInteger 6-10x a float Conv's on an x86 CPU, a
    depthwise QLinearConv several times a dense one, which a GNN that saw few int8 networks does not know
    (`int8_extras`). A network whose int8 multiply-adds are of measured kinds (`INT8_MEASURED_SHARE`) is
    answered the calibrated answer plus each kind's extra cost per multiply-add times its own, no lower than
    its floor; the interval spans `INT8_SHAPE_RANGE` of that extra.

    Those of an operand pair that no reference network runs (`unpaired_kind`: uint8 weights, int8
    activations) count as measured, charged as float multiply-adds and the interval spanning
    `UNPAIRED_RANGE` of that (`as_float_macs`): the kinds of one operation with other operands ran ×0.26 to
    ×6.2 of its float kernel's time on one x86 machine, so a measured kind of another pair says nothing of
    them. A dynamically quantized OCR model with uint8 weights (ddddocr's, 9.4 ms measured) was answered 34
    ms when its ConvIntegers were taken for the measured int8-weight kind (×3.6, which its interval missed),
    and 11.4 ms as float.

    Other int8 networks (and every one, without the int8 networks measured): the reference networks compute
    in float, so they say how fast this device is, not how its integer kernels compare with its float ones.
    They are answered calibrated as float networks are, and the interval also spans the GNN's own answer
    scaled by how far off it was on the shots (`offset`). Before the fingerprint measured their kinds, the
    calibrated answer was the nearer on every such network timed here (a MatMulInteger BERT-mini and
    QLinearConv ResNet-18 and MobileNetV2, on three checkpoints: ×0.48-0.84 of the measured time where the
    offset's was ×0.45-1.28, against ×0.67-0.85 for their float twins); measured, the same three networks
    were answered at ×0.76-0.97 (three checkpoints, two timings), against ×0.55-0.82 calibrated as float."""
    floor = predictor.floor(samples)
    offset = float(np.mean(np.log(shots.latency_ms) - predictor.predict(shots, "gnn")[0]))
    (_, z_lo, z_hi), (c_mean, c_lo, c_hi) = zero, tuned
    mean = c_mean
    lo = np.where(integer, np.minimum(z_lo + offset, c_lo), c_lo)
    hi = np.where(integer, np.maximum(z_hi + offset, c_hi), c_hi)
    other = (f"int8 networks: calibrated as float networks are, the interval spanning the GNN's answer "
             f"×{math.exp(offset):.3g} too (the reference networks compute in float)")
    extras = int8_extras(predictor, fingerprint, setting, cal)
    macs = samples.graphs.int8_macs()

    def of(kinds) -> np.ndarray:  # per sample, its multiply-adds of these kinds
        return sum((macs[kind] for kind in kinds if kind in macs), np.zeros(len(samples.graphs)))[samples.graph]

    depthwise = [kind for kind in macs if kind.startswith("depthwise") and kind not in extras]
    unpaired = [kind for kind in macs if unpaired_kind(kind)]  # charged as float multiply-adds (`done`)
    measured = integer & (of(macs) > 0) & (of(list(extras) + unpaired) >= INT8_MEASURED_SHARE * of(macs)) & \
        (of(depthwise) == 0)

    def done(answer, note: str):  # and the kernels of pairs no reference measured, charged as float ones
        (mean, lo, hi), said = as_float_macs(predictor, samples, cal, answer)
        note = "; ".join(n for n in (note, said) if n)
        return (mean, np.minimum(lo, mean), np.maximum(hi, mean)), note, measured

    if not measured.any():
        return done((mean, lo, hi), other)
    more = [extras[kind][0] * of([kind]) for kind in extras if kind in macs]  # ms each kind adds, per sample
    low = sum((np.minimum(*(r * m for r in INT8_SHAPE_RANGE)) for m in more), np.zeros(len(samples)))
    high = sum((np.maximum(*(r * m for r in INT8_SHAPE_RANGE)) for m in more), np.zeros(len(samples)))
    add = sum(more, np.zeros(len(samples)))
    tiny = 1e-9
    got = (np.maximum(np.log(np.maximum(np.exp(c_mean) + add, tiny)), floor),
           np.maximum(np.log(np.maximum(np.exp(c_lo) + low, tiny)), floor),
           np.log(np.maximum(np.exp(c_hi) + high, tiny)))
    mean, lo, hi = (np.where(measured, new, old) for new, old in zip(got, (mean, lo, hi)))
    by_network: dict[str, list[str]] = {}
    for kind, (extra, name) in extras.items():
        by_network.setdefault(name, []).append(kind)
    said = "; ".join(f"{', '.join(kinds)}: {extras[kinds[0]][0] * 1e9:+.3g} ps per multiply-add (its {name})"
                     for name, kinds in by_network.items())
    note = (f"int8 kernels the fingerprint measured, beyond the calibrated answer ({said}; the interval spans "
            f"×{INT8_SHAPE_RANGE[0]:g}–{INT8_SHAPE_RANGE[1]:g} of that cost: other layer shapes)")
    if (integer & ~measured).any():
        note += "; other " + other
    return done((mean, lo, hi), note)


def fingerprint_shots(fingerprint: Fingerprint, setting: SettingInfo) -> Samples:
    """The fingerprint's float measurements as samples of the reference networks in the query's setting
    (its int8 one calibrates int8 networks only: `int8_on_fingerprint`)."""
    from edgeatlas.predictor.fingerprint import NAMES

    return _reference_samples(fingerprint, setting, [n for n in NAMES if n in fingerprint.latency_ms
                                                     and n not in INT8_NAMES])


def int8_references(fingerprint: Fingerprint, setting: SettingInfo) -> Samples | None:
    """The fingerprint's int8 networks that it measured, as samples (`INT8_NAMES` order), or None where it
    measured none (a v1 fingerprint, or a device too slow to run them within the rules)."""
    names = [n for n in INT8_NAMES if n in fingerprint.latency_ms]
    return _reference_samples(fingerprint, setting, names) if names else None


def _reference_samples(fingerprint: Fingerprint, setting: SettingInfo, names: list[str]) -> Samples:
    from edgeatlas.predictor.fingerprint import NAMES, reference_graphs

    index = np.array([NAMES.index(n) for n in names], dtype=np.int64)
    return Samples(reference_graphs(setting.runtime or fingerprint.runtime), [setting], index,
                   np.zeros(len(index), dtype=np.int64),
                   np.array([fingerprint.latency_ms[n] for n in names], dtype=np.float64))


def _accuracy_tag(model, path: str) -> float | None:
    """An ONNX metadata property `accuracy` (e.g. top-1, 0..1 or %), as the Pareto plot's other axis."""
    for prop in model.metadata_props:
        if prop.key == "accuracy":
            try:
                return float(prop.value)
            except ValueError:
                raise InvalidInput(f"model {path}: metadata accuracy {prop.value!r} is not a number") from None
    return None


def _r(log_ms: float) -> float:
    return float(f"{math.exp(log_ms):.4g}")


def predict_batch(checkpoint: str, queries: str, out: str, say) -> int:
    """Q.csv → P.csv: the queries with latency_ms, latency_ms_low, latency_ms_high and error appended.

    A row that cannot be answered (its model, sheet, target or batch) keeps its reason in `error` and
    the others are answered; only a file that is not a query table, or one with no answerable row, fails."""
    qpath = Path(queries)
    try:
        with open(qpath, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            rows = list(reader)
    except OSError as exc:
        raise InvalidInput(f"--queries {queries}: {exc.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--queries {queries}: not a CSV table ({exc})") from None
    missing = [c for c in QUERY_COLUMNS if c not in fields]
    if missing:
        raise InvalidInput(f"--queries {queries}: missing columns {', '.join(missing)}")
    if not rows:
        raise InvalidInput(f"--queries {queries}: no query rows")
    predictor = Predictor.load(checkpoint)
    base = qpath.parent
    graph_index: dict[tuple, int | InvalidInput] = {}
    spec_index: dict[str, SpecSheet | InvalidInput] = {}
    setting_index: dict[tuple, int | InvalidInput] = {}
    graphs, settings = [], []
    g_idx, s_idx, errors = [], [], {}

    def cached(table: dict, key, make):
        if key not in table:
            try:
                table[key] = make()
            except InvalidInput as exc:
                table[key] = exc
        if isinstance(table[key], InvalidInput):
            raise table[key]
        return table[key]

    def add_graph(model_path: str, runtime: str) -> int:
        graphs.append(load_graph(str(base / model_path), model_path, runtime=runtime)[0])
        return len(graphs) - 1

    def add_setting(spec: SpecSheet, target: str, batch: int, runtime: str) -> int:
        settings.append(_setting(spec, target, batch, 0, runtime))
        return len(settings) - 1

    for i, row in enumerate(rows):
        try:
            model_path = (row.get("model_path") or "").strip()
            spec_path = (row.get("spec_path") or "").strip()
            if not model_path or not spec_path:
                raise InvalidInput("model_path and spec_path must not be empty")
            batch_text = (row.get("batch") or "").strip()
            if batch_text and not batch_text.isdigit():
                raise InvalidInput(f"batch {batch_text[:20]!r} is not a whole number")
            target = (row.get("target") or "cpu").strip() or "cpu"
            runtime = (row.get("runtime") or "").strip()
            spec = cached(spec_index, spec_path, lambda: SpecSheet.load(str(base / spec_path)))
            s = cached(setting_index, (spec_path, target, batch_text, runtime),
                       lambda: add_setting(spec, target, int(batch_text or 0), runtime))
            view = runtime if runtime.lower() == "onnxruntime" else ""  # the one runtime whose view differs
            g = cached(graph_index, (model_path, view), lambda: add_graph(model_path, view))
        except InvalidInput as exc:
            errors[i] = f"line {i + 2}: {str(exc).splitlines()[0][:300]}"
            continue
        g_idx.append(g)
        s_idx.append(s)
    answered = [i for i in range(len(rows)) if i not in errors]
    if not answered:
        raise InvalidInput(f"--queries {queries}: no row could be answered ({errors[0]})")
    samples = Samples(GraphSet.from_graphs(graphs), settings, np.array(g_idx), np.array(s_idx),
                      np.ones(len(answered)))
    mean, lo, hi = predictor.predict(samples, "gnn")
    no_runtime, no_int8 = predictor.unlearned(samples)
    moved = predictor.at_trained_threads(samples)[1][samples.setting]
    notes = ["trained at other thread counts: answered at the nearest, its work scaled to the cores in use"
             if m else "" for m in moved]
    unknown = no_runtime | no_int8
    if unknown.any():  # as `answer` does for one query: said, and the interval widened
        lo, hi = predictor.widened(samples, mean, lo, hi, unknown)
        notes = [f"no training sample of {'int8 networks in ' if i else ''}this runtime: the interval reaches "
                 f"down to the roofline" if r or i else n for r, i, n in zip(no_runtime, no_int8, notes)]
    position = {row: k for k, row in enumerate(answered)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        columns = [c for c in fields if c not in RESULT_COLUMNS] + list(RESULT_COLUMNS)
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for i, row in enumerate(rows):
            if i in errors:
                writer.writerow({**row, "latency_ms": "", "latency_ms_low": "", "latency_ms_high": "", "note": "",
                                 "error": errors[i]})
            else:
                k = position[i]
                writer.writerow({**row, "latency_ms": _r(mean[k]), "latency_ms_low": _r(lo[k]),
                                 "latency_ms_high": _r(hi[k]), "note": notes[k], "error": ""})
    say(f"wrote {out}: {len(answered)} predictions ({len(graphs)} models × {len(settings)} settings)"
        + (f"; {len(errors)} rows not answered, each with its reason in the error column (first: {errors[min(errors)]})"
           if errors else ""))
    return len(answered)


def pareto_plot(answers: list[dict], out: str) -> list[str]:
    """Latency vs the other axis (accuracy where the models carry one, else GFLOPs as the cost proxy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [a["latency_ms"] for a in answers]
    acc = [a.get("accuracy") for a in answers]
    use_acc = all(v is not None for v in acc)
    ys = acc if use_acc else [a["gflops"] for a in answers]
    # Pareto front: lower latency and (higher accuracy | lower GFLOPs)
    better = (lambda a, b: a >= b) if use_acc else (lambda a, b: a <= b)
    front = [i for i in range(len(xs)) if not any(
        xs[j] <= xs[i] and better(ys[j], ys[i]) and (xs[j] < xs[i] or ys[j] != ys[i]) for j in range(len(xs)))]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lo = [a["latency_ms"] - a["latency_ms_low"] for a in answers]
    hi = [a["latency_ms_high"] - a["latency_ms"] for a in answers]
    ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", color="tab:blue", ecolor="lightgray", capsize=3)
    for a, x, y in zip(answers, xs, ys):
        ax.annotate(Path(a["model"]).stem, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    fx = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in fx], [ys[i] for i in fx], "--", color="tab:red", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(f"predicted latency (ms, 80 % interval) on {answers[0]['spec']} {answers[0]['target']}")
    ax.set_ylabel("accuracy" if use_acc else "GFLOPs per call")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return [answers[i]["model"] for i in fx]


def print_json(answers: list[dict]) -> str:
    return json.dumps(answers[0] if len(answers) == 1 else answers, indent=None)
