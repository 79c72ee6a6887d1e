"""`predictor ...` and `predict`: train, evaluate and query the cost predictor."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgeatlas.console.cli.common import admin_client, admin_options, client_tls, input_options, input_request, say
from edgeatlas.protos import errors


def _default_checkpoint() -> Path:
    from edgeatlas.predictor.data import cache_dir

    return cache_dir() / "default.pt"


def _train_config(args):
    from edgeatlas.predictor.models import TrainConfig

    for name in ("members", "epochs"):
        if getattr(args, name) < 1:
            raise errors.InvalidInput(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.max_networks < 0:
        raise errors.InvalidInput(f"--max-networks must not be negative, got {args.max_networks}")
    return TrainConfig(members=args.members, epochs=args.epochs, max_graphs=args.max_networks)


def cmd_predictor_train(args) -> int:
    from edgeatlas.predictor.commands import train

    cfg = _train_config(args)
    remote = [d for d in args.data if d.startswith("coordinator:")]
    if not remote:
        train(args.data, args.out, cfg, say)
        return 0
    if len(args.data) > 1:
        raise errors.InvalidInput("--data coordinator:HOST:PORT cannot be combined with other --data sources")
    from edgeatlas.protos.admin_client import AdminClient

    address = remote[0].removeprefix("coordinator:")
    with AdminClient(address, args.admin_token, client_tls(args)) as admin:
        say(f"training on the cells of the coordinator at {address} (it trains; this writes the checkpoint)")
        version = admin.train_predictor(cfg.members, cfg.epochs)
        blob = admin.download_predictor(version.version)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(blob)
    say(f"wrote {args.out}: predictor v{version.version} ({version.cells} cells, {version.networks} networks, "
        f"{version.devices} devices, {version.train_seconds:.0f} s); held-out evaluation {version.evaluation_json}")
    return 0


def cmd_predictor_eval(args) -> int:
    from edgeatlas.predictor.commands import run_eval

    say(run_eval(args.data, args.split, _train_config(args), args.device or None, say, shots=args.shots,
                 families=args.family or None))
    return 0


def _whole_numbers(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise errors.InvalidInput(f"{flag} {text!r} is not comma-separated whole numbers") from None


def cmd_predictor_measure_zoo(args) -> int:
    from edgeatlas.console.zoo import measure_family

    measure_family(args.out, args.networks, _whole_numbers(args.threads, "--threads"),
                   _whole_numbers(args.batch, "--batch"), args.seed, say, args.int8)
    return 0


def cmd_predictor_predict_batch(args) -> int:
    from edgeatlas.predictor.commands import predict_batch

    predict_batch(args.checkpoint, args.queries, args.out, say)
    return 0


def cmd_predictor_versions(args) -> int:
    with admin_client(args) as admin:
        versions = admin.predictor_versions()
    if args.format == "json":
        from google.protobuf.json_format import MessageToDict
        say(json.dumps([MessageToDict(v) for v in versions]))
        return 0
    if not versions:
        say("no predictor trained yet")
    for v in versions:
        figures = json.loads(v.evaluation_json or "{}")
        shown = ", ".join(f"{k} MAPE {f['mape']:.1f} % ρ {f['spearman']:.2f}" for k, f in figures.items())
        privacy = json.loads(v.privacy_json or "{}")
        spent = (f"  federated, δ {privacy['delta']:g}: ε {privacy['epsilon_measurement']:.2f} per measurement, "
                 f"{privacy['epsilon_device']:.1f} per device over {len(privacy['rounds'])} rounds") if privacy else ""
        say(f"v{v.version}  {time.strftime('%Y-%m-%d %H:%M', time.gmtime(v.created_ms / 1000))}  {v.trigger:9} "
            f"{v.cells} cells, {v.networks} networks, {v.devices} devices, {v.train_seconds:.0f} s"
            f"{'  held-out networks: ' + shown if shown else ''}{spent}")
    return 0


def cmd_predictor_retrain(args) -> int:
    if args.members < 0 or args.epochs < 0:
        raise errors.InvalidInput("--members and --epochs must not be negative")
    with admin_client(args) as admin:
        v = admin.train_predictor(args.members, args.epochs)
    say(f"predictor v{v.version}: {v.cells} cells, {v.networks} networks, {v.devices} devices, "
        f"{v.train_seconds:.0f} s; evaluation {v.evaluation_json}")
    return 0


def cmd_predictor_publish(args) -> int:
    path = Path(args.checkpoint)
    if not path.is_file():
        raise errors.InvalidInput(f"checkpoint {path}: no such file")
    with admin_client(args) as admin:
        v = admin.publish_predictor(path.read_bytes())
    say(f"predictor v{v.version} published from {path}: {v.cells} measurements, {v.networks} networks, "
        f"{v.devices} devices")
    return 0


def cmd_predictor_ask(args) -> int:
    from edgeatlas.protos.spec import SpecSheet

    if min(args.batch, args.threads, args.version) < 0:
        raise errors.InvalidInput("--batch, --threads and --version must not be negative")
    spec = SpecSheet.load(args.spec)
    with admin_client(args) as admin:
        a = admin.predict(spec.to_json(), args.model, args.target, args.batch, args.threads, args.runtime,
                          args.version)
    say(json.dumps({"model": a.model_name, "spec": spec.name, "latency_ms": a.latency_ms,
                       "latency_ms_low": a.latency_ms_low, "latency_ms_high": a.latency_ms_high,
                       "roofline_latency_ms": a.roofline_latency_ms, "tabular_latency_ms": a.tabular_latency_ms,
                       "version": a.version}))
    return 0


def checkpoint_path(given: str | None) -> str:
    checkpoint = given or _default_checkpoint()
    if not Path(checkpoint).is_file():
        raise errors.InvalidInput(f"checkpoint {checkpoint}: no such file (train one with `edgeatlas predictor "
                                  f"train --data DIR --out CKPT`, or run `edgeatlas demo`)")
    return str(checkpoint)


def answer_lines(answers: list[dict]) -> list[str]:
    lines = []
    for a in answers:
        lines.append(f"{Path(a['model']).stem}: {a['latency_ms']:.4g} ms (80 % interval {a['latency_ms_low']:.4g}–"
                     f"{a['latency_ms_high']:.4g}) on {a['spec']} {a['target']}; roofline "
                     f"{a['roofline_latency_ms']:.3g} ms, tabular {a['tabular_latency_ms']:.4g} ms"
                     + (f"; zero-shot {a['zero_shot_latency_ms']:.4g} ms" if "zero_shot_latency_ms" in a else ""))
        if a.get("uncounted"):
            lines.append(f"  (FLOPs not counted for {', '.join(f'{op} ×{n}' for op, n in a['uncounted'].items())}: "
                         f"their work is not in this answer, which can be too fast)")
        if a.get("unobserved"):
            lines.append(f"  (their shapes are unknown: one run at the given inputs failed ({a['unobserved']}); "
                         "--values NAME=... gives an input values it accepts, e.g. an attention mask of ones: "
                         "fixed:1)")
    for key in ("fingerprint", "runtime_note"):
        if answers and key in answers[0]:
            lines.append(f"  ({'calibrated: ' if key == 'fingerprint' else ''}{answers[0][key]})")
    return lines


def cmd_predict(args) -> int:
    from edgeatlas.predictor.commands import pareto_plot, predict, print_json
    from edgeatlas.predictor.fingerprint import Fingerprint

    checkpoint = checkpoint_path(args.checkpoint)
    fingerprint = Fingerprint.load(args.fingerprint) if args.fingerprint else None
    answers = predict(checkpoint, args.spec, args.model, args.target, args.batch, args.threads, args.runtime,
                      input_request(args), fingerprint)
    if args.plot:
        front = pareto_plot(answers, args.plot)
        if not args.json:
            say(f"wrote {args.plot}; Pareto front: {', '.join(Path(m).stem for m in front)}")
    if args.json:
        say(print_json(answers))
    else:
        say("\n".join(answer_lines(answers)))
    return 0


def register(sub) -> None:
    predictor = sub.add_parser("predictor", help="train, evaluate and query the cost predictor").add_subparsers(
        dest="sub", required=True)

    def query_setting(p) -> None:
        """The setting a prediction is asked for (predict and predictor ask)."""
        p.add_argument("--target", default="cpu")
        p.add_argument("--batch", type=int, default=1)
        p.add_argument("--threads", type=int, default=0)
        p.add_argument("--runtime", default="onnxruntime")

    def training_options(p, members: int, epochs: int, max_networks: int) -> None:
        p.add_argument("--data", action="append", required=True,
                       help="a directory in the nasbench201 layout (repeatable), or coordinator:HOST:PORT")
        p.add_argument("--members", type=int, default=members, help="GNN ensemble members")
        p.add_argument("--epochs", type=int, default=epochs)
        p.add_argument("--max-networks", type=int, default=max_networks,
                       help="networks per ensemble member, drawn at random (0 = all)")

    p = predictor.add_parser("train", help="train roofline, tabular and GNN predictors into one checkpoint")
    training_options(p, members=3, epochs=6, max_networks=0)
    p.add_argument("--out", required=True, help="checkpoint file to write")
    admin_options(p)  # for --data coordinator:HOST:PORT
    p.set_defaults(func=cmd_predictor_train)
    p = predictor.add_parser("eval", help="roofline vs tabular vs GNN on held-out hardware or networks")
    training_options(p, members=2, epochs=4, max_networks=4000)
    p.add_argument("--split", required=True, help="leave-hardware-out | leave-model-out | leave-family-out")
    p.add_argument("--device", action="append", help="hold out only these devices (spec-sheet names)")
    p.add_argument("--family", action="append", help="leave-family-out: hold out only these families "
                                                     "(nasbench201, fbnet, zoo)")
    p.add_argument("--shots", type=int, default=0,
                   help="K networks measured in each held-out setting (a fingerprint's worth), the rest predicted")
    p.set_defaults(func=cmd_predictor_eval)
    p = predictor.add_parser("measure-zoo", help="time real-architecture networks here in ONNX Runtime, as "
                                                 "training data (a directory for --data)")
    p.add_argument("--out", required=True, help="a new directory to write")
    p.add_argument("--networks", type=int, default=48, help="architectures to time (none of the demo's zoo)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    p.add_argument("--batch", default="1,4", help="batch sizes, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="which architectures (the same seed, the same ones)")
    p.add_argument("--int8", type=float, default=0.25,
                   help="share of the networks quantized to int8 by ONNX Runtime's quantizers, static (QDQ) "
                        "and dynamic in turn (0..1)")
    p.set_defaults(func=cmd_predictor_measure_zoo)
    p = predictor.add_parser("predict-batch", help="a CSV of queries → the same CSV with predictions")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--queries", required=True, help="CSV: model_path,spec_path,target,batch,runtime")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_predictor_predict_batch)
    p = predictor.add_parser("versions", help="the coordinator's predictor versions and their evaluations")
    p.add_argument("--format", choices=["text", "json"], default="text")
    admin_options(p)
    p.set_defaults(func=cmd_predictor_versions)
    p = predictor.add_parser("retrain", help="train a new version on the coordinator's cells now")
    p.add_argument("--members", type=int, default=0)
    p.add_argument("--epochs", type=int, default=0)
    admin_options(p)
    p.set_defaults(func=cmd_predictor_retrain)
    p = predictor.add_parser("publish", help="make a checkpoint of `predictor train` the coordinator's newest version")
    p.add_argument("checkpoint")
    admin_options(p)
    p.set_defaults(func=cmd_predictor_publish)
    p = predictor.add_parser("ask", help="the coordinator's predictor, for a registered model")
    p.add_argument("--spec", required=True)
    p.add_argument("--model", required=True, help="a registered model's name or sha256 prefix")
    query_setting(p)
    p.add_argument("--version", type=int, default=0, help="0: the newest")
    admin_options(p)
    p.set_defaults(func=cmd_predictor_ask)
    p = sub.add_parser("predict", help="latency of ONNX models on a device, from its spec sheet alone")
    p.add_argument("--checkpoint", help="from `predictor train` (default: the one `edgeatlas demo` trains)")
    p.add_argument("--spec", required=True, help="spec sheet (edgeatlas.spec/v1, YAML or JSON)")
    p.add_argument("--model", action="append", required=True,
                   help="ONNX model, GGUF file or transformer config.json (repeatable)")
    query_setting(p)
    input_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object (a list for several models)")
    p.add_argument("--plot", help="write a Pareto plot of the models (PNG)")
    p.add_argument("--fingerprint", help="the device's fingerprint (edgeatlas agent fingerprint --out FILE): the "
                                         "answer is calibrated on it; ask in its setting (threads, batch, runtime)")
    p.set_defaults(func=cmd_predict)

