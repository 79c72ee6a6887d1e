"""The predictor on this machine, in ONNX Runtime, on networks nobody trained it on: zero-shot beside
calibrated on this device's fingerprint, side by side in one run.

1. The fingerprint: the reference set (`predictor/fingerprint.py`), measured here by the agent's runner,
   once before the held-out networks and once after (the two passes averaged, their drift printed).
2. The held-out networks: the demo's zoo (MLP, ResNet-style, MobileNet-style, transformer, two sizes each)
   and the real architectures of `console/real_zoo.py` (ResNet-18, MobileNetV2, EfficientNet-B0,
   ViT-Tiny, BERT-mini, int8 ResNet-18 and BERT-mini from ONNX Runtime's dynamic quantizer, and int8
   ResNet-18 and MobileNetV2 from its static one) at their published shapes, measured here the same way.
   None of them is in the reference set or in the training data.
3. For each network: measured, the GNN zero-shot (80 % interval), the GNN calibrated on the fingerprint
   (80 % interval), the roofline and the trees; then MAPE, share within ±25 % and interval coverage.

4. With --zoo-data DIR (a directory of `edgeatlas predictor measure-zoo`: other networks of the same
   family, timed here in ONNX Runtime) or --measure-zoo N (measured first): a second checkpoint trained as
   the demo trains, on the bundled samples plus those measurements, answers the same held-out networks,
   side by side with the first (the runtime and this machine seen in training, the networks not).

    python bench/predict_here.py [--checkpoint CKPT] [--threads 1] [--no-real] [--measure-zoo 48] [--against CKPT2]
                                 [--third-party]   # and 21 ONNX models from PyPI packages, as their packages run them
    python bench/predict_here.py --provider CUDAExecutionProvider    # on a machine with an NVIDIA GPU
    python bench/predict_here.py --timings T.json ...   # keeps this run's timings in T.json; a later run given
                                                        # it answers them again (a change to the predictor's
                                                        # code compared on the same timings)

The checkpoint defaults to the one `edgeatlas demo` trains; `edgeatlas predictor train --data
../shared/datasets/nasbench201 --data ../shared/datasets/fbnet --out CKPT` trains the full one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REAL = ["resnet-18", "mobilenet-v2", "efficientnet-b0", "vit-tiny", "bert-mini", "resnet-18-int8", "bert-mini-int8",
        "resnet-18-qdq", "mobilenet-v2-qdq"]


def summary(label: str, measured: list[float], mean: list[float], lo: list[float] | None,
            hi: list[float] | None) -> str:
    ape = [abs(p - m) / m for p, m in zip(mean, measured)]
    within = sum(a <= 0.25 for a in ape) / len(ape)
    held = None if lo is None else sum(a <= m <= b for a, m, b in zip(lo, measured, hi)) / len(measured)
    cov = "" if held is None else f", 80 % interval covers {held:.0%}"
    worst = max(max(p / m, m / p) for p, m in zip(mean, measured))
    return f"  {label:28s} MAPE {100 * sum(ape) / len(ape):7.1f} %, within ±25 % {within:4.0%}, worst ×{worst:.1f}{cov}"


def report(checkpoint: str, sheet: Path, models: dict, measured: dict, fingerprint, threads: int,
           target: str = "cpu", groups: dict | None = None) -> None:
    """The held-out networks' answers from one checkpoint, zero-shot and on the fingerprint, and their
    summary over the networks (and over each of `groups`: a label → its networks' names)."""
    from edgeatlas.predictor.commands import predict

    paths = [str(p) for p, _ in models.values()]
    requests = {str(p): r for p, r in models.values()}
    zero = predict(checkpoint, str(sheet), paths, target, 1, threads, "onnxruntime", requests)
    tuned = predict(checkpoint, str(sheet), paths, target, 1, threads, "onnxruntime", requests, fingerprint)
    print(f"   predictions of {Path(checkpoint).name} ({tuned[0]['fingerprint']})")
    if "runtime_note" in zero[0]:
        print(f"   zero-shot: {zero[0]['runtime_note']}")
    print(f"  {'network':16s} {'measured':>9s} {'zero-shot (80 %)':>26s} {'fingerprint (80 %)':>26s} "
          f"{'roofline':>9s} {'trees':>9s}")
    for name, z, t in zip(models, zero, tuned):
        def cell(a):
            return f"{a['latency_ms']:.3g} ({a['latency_ms_low']:.3g}–{a['latency_ms_high']:.3g})"
        print(f"  {name:16s} {measured[name]:9.3g} {cell(z):>26s} {cell(t):>26s} {z['roofline_latency_ms']:9.3g} "
              f"{z['tabular_latency_ms']:9.3g}")
    m = [measured[n] for n in models]
    print("summary, over the held-out networks:")
    print(summary("GNN + fingerprint", m, [a["latency_ms"] for a in tuned], [a["latency_ms_low"] for a in tuned],
                  [a["latency_ms_high"] for a in tuned]))
    print(summary("GNN zero-shot", m, [a["latency_ms"] for a in zero], [a["latency_ms_low"] for a in zero],
                  [a["latency_ms_high"] for a in zero]))
    print(summary("roofline", m, [a["roofline_latency_ms"] for a in zero], None, None))
    print(summary("trees (zero-shot)", m, [a["tabular_latency_ms"] for a in zero], None, None))
    for label, names in (groups or {}).items():
        rows = [i for i, n in enumerate(models) if n in names]
        print(f"summary, over {label} ({len(rows)}):")
        for how, answers in (("GNN + fingerprint", tuned), ("GNN zero-shot", zero)):
            print(summary(how, [m[i] for i in rows], [answers[i]["latency_ms"] for i in rows],
                          [answers[i]["latency_ms_low"] for i in rows], [answers[i]["latency_ms_high"] for i in rows]))
    ratio = [math.log(a["latency_ms"] / b) for a, b in zip(tuned, m)]
    print(f"  GNN + fingerprint: geometric-mean ratio predicted / measured ×{math.exp(sum(ratio) / len(ratio)):.2f}")


def _read_timings(path: Path, args):
    """(fingerprint, measured ms by network, sheet text) an earlier run kept in `path`, or why they do not
    answer this run (another thread count or provider)."""
    from edgeatlas.predictor.fingerprint import Fingerprint

    try:
        kept = json.loads(path.read_text())
        if (kept["threads"], kept["provider"]) != (args.threads, args.provider):
            return (f"--timings {path}: timed at {kept['threads']} threads on {kept['provider']}, not "
                    f"{args.threads} on {args.provider}")
        measured = {str(k): float(v) for k, v in kept["measured_ms"].items()}
        return Fingerprint.from_json(json.dumps(kept["fingerprint"]), str(path)), measured, str(kept["sheet"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"--timings {path}: not a file this bench kept ({e})"


def main() -> int:
    from edgeatlas.agent.probe import probe
    from edgeatlas.agent.runners.onnxruntime import provider_target
    from edgeatlas.console.fingerprints import CPU, bracketed
    from edgeatlas.console.fingerprints import measure as measure_fingerprint
    from edgeatlas.console.fingerprints import time_alone
    from edgeatlas.console.zoo import build_zoo
    from edgeatlas.predictor.data import cache_dir
    from edgeatlas.protos.inputs import InputRequest, request_from_argv

    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-real", action="store_true", help="the demo zoo only (no transformers export)")
    parser.add_argument("--zoo-data", help="a measure-zoo directory to train a second checkpoint with")
    parser.add_argument("--measure-zoo", type=int, default=0, help="measure this many zoo networks here first")
    parser.add_argument("--provider", default=CPU,
                        help="ONNX Runtime's execution provider: the processor it drives is the one asked of the "
                             "sheet (provider_target)")
    parser.add_argument("--only", action="append", help="of the real zoo, only these (repeatable)")
    parser.add_argument("--third-party", action="store_true",
                        help="and the ONNX models PyPI packages ship (tests/models/third_party.py: OCR, voice "
                             "activity, diacritization, detection, orientation, music, file types, layout, speech "
                             "front ends and quality, wake words), fetched with pip download, at their packages' "
                             "inputs")
    parser.add_argument("--against", action="append", default=[],
                        help="another checkpoint answering the same measurements, side by side (repeatable)")
    parser.add_argument("--timings", help="a JSON file: where this run's timings (fingerprint, networks, sheet) "
                                          "are kept, or, where it exists, the timings answered instead of timing")
    args = parser.parse_args()
    target = provider_target(args.provider)
    if target != "cpu" and (args.measure_zoo or args.zoo_data):
        print("--measure-zoo and --zoo-data time the zoo on the CPU: they go with the CPU provider only")
        return 2

    checkpoint = args.checkpoint or str(cache_dir() / "default.pt")
    if not Path(checkpoint).is_file():
        print(f"no checkpoint at {checkpoint}: run `edgeatlas demo` or `edgeatlas predictor train` first")
        return 2
    for other in args.against:
        if not Path(other).is_file():
            print(f"--against {other}: no such checkpoint")
            return 2
    work = Path(tempfile.mkdtemp(prefix="predict-here-"))
    kept = Path(args.timings) if args.timings else None
    earlier = _read_timings(kept, args) if kept is not None and kept.exists() else None
    if isinstance(earlier, str):
        print(earlier)
        return 2
    print(f"checkpoint: {checkpoint}; threads {args.threads}; ONNX Runtime, {args.provider}")
    if earlier is None:
        print("1. fingerprint (reference set measured here):")
        fingerprint = measure_fingerprint(work, args.threads, args.provider, print)

    models: dict[str, tuple[Path, InputRequest]] = {}
    for path in build_zoo(work / "zoo"):
        models[path.stem] = (path, InputRequest())
    if not args.no_real:
        from edgeatlas.console.real_zoo import build_real_zoo, flags_of

        for path in build_real_zoo(cache_dir() / "real-zoo", args.only or REAL, say=print):
            models[path.stem] = (path, request_from_argv(flags_of(path.stem)))
    groups = {}
    if args.third_party:
        from tests.models.third_party import MODELS, fetch

        for name, entry in MODELS.items():
            models[name] = (fetch(name), request_from_argv(entry.flags))
        groups["the PyPI packages' models"] = list(MODELS)
    sheet = work / "here.yaml"
    if earlier is not None:
        fingerprint, measured, sheet_text = earlier
        missing = sorted(set(models) - set(measured))
        if missing:
            print(f"--timings {kept}: no timing of {', '.join(missing)} (time them in a run without the file)")
            return 2
        print(f"1-2. the fingerprint and {len(models)} held-out networks as {kept} timed them")
        sheet.write_text(sheet_text)
    else:
        print(f"2. {len(models)} held-out networks, measured here:")
        measured = {}
        for name, (path, request) in models.items():
            measured[name] = time_alone(path, args.threads, request, args.provider)
            print(f"  {name:16s} {measured[name]:9.3f} ms")

        print("2b. the fingerprint again, after the networks (shared machines drift: the answers use both passes):")
        fingerprint = bracketed(fingerprint, measure_fingerprint(work, args.threads, args.provider, print),
                                lambda text: print(f"  {text}"))
        probed = probe("/", measure_bandwidth=True)
        sheet.write_text(probed.to_yaml())
        if kept is not None:
            kept.write_text(json.dumps({"threads": args.threads, "provider": args.provider, "measured_ms": measured,
                                        "fingerprint": json.loads(fingerprint.to_json()),
                                        "sheet": sheet.read_text()}, indent=1))
            print(f"  timings kept in {kept}")
    if target != "cpu":
        import yaml

        print(f"3. the accelerator on the sheet probed here: {yaml.safe_load(sheet.read_text()).get('accelerator')}")
    report(checkpoint, sheet, models, measured, fingerprint, args.threads, target, groups)
    for other in args.against:
        print(f"3. against {other}, on the same measurements:")
        report(other, sheet, models, measured, fingerprint, args.threads, target, groups)
    zoo_data = args.zoo_data
    if args.measure_zoo:
        from edgeatlas.console.zoo import measure_family

        print(f"4. {args.measure_zoo} other zoo networks timed here for training (threads {args.threads}, batch 1):")
        zoo_data = str(measure_family(work / "zoo-data", args.measure_zoo, [args.threads], [1], say=print))
    if zoo_data:
        import time

        from edgeatlas.console.demo_plan import DEMO_PREDICTOR
        from edgeatlas.predictor.commands import train
        from edgeatlas.predictor.datasets import fbnet
        from edgeatlas.predictor.datasets.nasbench201 import SAMPLE_DIR
        from edgeatlas.predictor.models import TrainConfig

        with_zoo = work / "with-zoo.pt"
        start = time.monotonic()
        train([str(SAMPLE_DIR), str(fbnet.SAMPLE_DIR), zoo_data], str(with_zoo), TrainConfig(**DEMO_PREDICTOR),
              lambda text: None)
        print(f"5. trained as the demo trains, plus {zoo_data} ({time.monotonic() - start:.0f} s); the same "
              f"held-out networks:")
        report(str(with_zoo), sheet, models, measured, fingerprint, args.threads, target, groups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
