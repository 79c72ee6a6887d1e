"""`models`, `import`, `campaign`, `agents`, `fleet` and `heatmap`: the coordinator's admin API."""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import sys
import time
from pathlib import Path

from edgeatlas.console.cli.common import (admin_client, admin_options, check_positive, enroll_options,
    enroll_token, input_options, input_request, key_values, run_options, say, scenario_setting)
from edgeatlas.protos import errors
from edgeatlas.protos.inputs import describe
from edgeatlas.protos.scenarios import LLM_REQUESTS


def _selectors(pairs: list[str] | None) -> dict[str, str]:
    from edgeatlas.protos.records import parse_selector

    return dict(parse_selector(pair) for pair in pairs or [])


def _deadline_ms(text: str | None) -> int:
    """`90m`, `2h`, `1d`, `30s` from now, or an ISO date-time (UTC unless it says) → epoch ms; None → 0."""
    if not text:
        return 0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return int((time.time() + seconds) * 1000)
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise errors.InvalidInput(f"--deadline {text!r} is not a duration (30m, 2h, 1d) or an ISO date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp() * 1000)


def cmd_agents_revoke(args) -> int:
    with admin_client(args) as admin:
        admin.revoke_agent(args.agent_id)
    say(f"agent {args.agent_id} revoked; its open tasks are cancelled")
    return 0


def cmd_models_build(args) -> int:
    from edgeatlas.console.models import prepare

    if args.reference:
        from edgeatlas.predictor.fingerprint import REFERENCE_SET, write_reference_set

        paths = list(write_reference_set(args.out).values())
        requests = {}
        say(f"wrote the {len(paths)} reference networks of {REFERENCE_SET} in {args.out}: measured by a campaign, "
            f"their cells are each hardware class's fingerprint for the coordinator's predictor")
    elif args.real:
        from edgeatlas.console.real_zoo import build_real_zoo, flags_of
        from edgeatlas.protos.inputs import request_from_argv

        paths = build_real_zoo(args.out, args.real if args.real != ["all"] else None, say=say)
        requests = {path: request_from_argv(flags_of(path.stem)) for path in paths}
        say(f"built {len(paths)} real architectures in {args.out} (ONNX, random weights, published configurations)")
    else:
        from edgeatlas.console.gguf_zoo import build_gguf_zoo
        from edgeatlas.console.zoo import build_zoo

        paths = build_zoo(args.out) + build_gguf_zoo(args.out)
        requests = {}
        say(f"built {len(paths)} models in {args.out} (ONNX and GGUF)")
    if args.upload:
        with admin_client(args) as admin:
            for path in paths:
                _register(admin, prepare(path, path.stem, requests.get(path)))
    return 0


def _register(admin, prepared):
    """Uploads and registers a model prepared (checked, summarised, its reference made) once, here."""
    from edgeatlas.console.models import summary_json

    ref = admin.add_model(prepared.path, prepared.name, prepared.reference_npz, summary_json(prepared),
                          prepared.format, prepared.inputs_json)
    if ref.name != prepared.name:
        say(f"  (the same bytes are already registered as {ref.name!r}; models are content-addressed)")
    unit = "MFLOP/token" if prepared.format == "gguf" else "MFLOP"
    say(f"  {ref.name:16} {ref.sha256[:12]}  {prepared.size_bytes / 1024:8.0f} KiB  "
        f"{prepared.summary['parameters']:>10,} params  {prepared.summary['flops'] / 1e6:9.1f} {unit}"
        + ("" if prepared.reference_npz else "  (no reference: install edgeatlas[llm] to check fidelity)"))
    if prepared.inputs:
        say(f"  inputs: {describe(prepared.inputs)}")
    uncounted = prepared.summary.get("uncounted") or {}
    if uncounted:
        say(f"  FLOPs not counted for: {', '.join(f'{op} ×{n}' for op, n in uncounted.items())}")
    if prepared.summary.get("unobserved"):  # the run that reads the shapes failed: --values can fix it
        say(f"  (their shapes are unknown: one run at these inputs failed: {prepared.summary['unobserved']})")
    return ref


def cmd_models_add(args) -> int:
    from edgeatlas.console.models import prepare

    # checked before connecting: a bad file or spec never reaches the coordinator
    prepared = prepare(args.file, args.name or Path(args.file).stem, input_request(args))
    with admin_client(args) as admin:
        _register(admin, prepared)
    return 0


def cmd_models_nasbench201(args) -> int:
    import onnx

    from edgeatlas.predictor.datasets.nasbench201 import nasbench201
    from edgeatlas.predictor.onnx_build import trainable_parameters

    model = nasbench201(Path(args.out).stem, args.arch)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out)
    say(f"wrote {args.out}: {trainable_parameters(model):,} parameters, {len(model.graph.node)} operators")
    return 0


def cmd_import_nasbench201(args) -> int:
    from edgeatlas.console.imports import import_nasbench201

    with admin_client(args) as admin:
        names = import_nasbench201(admin, args.data, args.count, args.out, say)
    say(f"imported published latencies of {len(names)} networks (source: imported)")
    return 0


def cmd_models_list(args) -> int:
    with admin_client(args) as admin:
        models = admin.list_models()
    rows = [f"{m.name:18} {m.sha256[:12]}  {m.format:5} {m.size_bytes / 1024:8.0f} KiB" for m in models]
    say("\n".join(rows) if rows else "no models registered")
    return 0


def _campaign_line(c) -> str:
    n = c.counts
    total = n.pending + n.leased + n.done + n.failed + n.cancelled + n.declined
    schedule = "".join([f", priority {c.priority}" if c.priority else "",
                        f", quota {c.quota}/class" if c.quota else "",
                        ", deadline " + datetime.datetime.fromtimestamp(c.deadline_ms / 1000, datetime.timezone.utc)
                        .strftime("%Y-%m-%d %H:%M UTC") if c.deadline_ms else ""])
    if c.HasField("adaptive"):
        last = c.rounds[-1] if c.rounds else None
        error = (f", validation MAPE {last.validation_mape:.1f} %" if last and math.isfinite(last.validation_mape)
                 else "")
        schedule += (f", adaptive: {len(c.rounds)} rounds, {n.done + n.failed}/{c.adaptive.budget} measurements"
                     f"{error}" + (f" ({c.stop_reason})" if c.stop_reason else ""))
    if c.HasField("federated"):
        f, last = c.federated, (c.federated_rounds[-1] if c.federated_rounds else None)
        spent = (f", ε {last.epsilon_measurement:.2f} per measurement, {last.epsilon_device:.1f} per device"
                 if last else "")
        made = f", predictor v{c.predictor_version}" if c.predictor_version else ""
        return (f"campaign {c.campaign_id} {c.name!r}: federated-train, {c.status}, {len(c.federated_rounds)}/"
                f"{f.rounds} rounds on {f.devices} devices{spent}{made}"
                + (f" ({c.stop_reason})" if c.stop_reason else ""))
    return (f"campaign {c.campaign_id} {c.name!r}: {c.status}, {n.done}/{total} done, {n.failed} failed, "
            f"{n.leased} running, {c.agents} agents{schedule}, models {', '.join(c.models)}")


def _adaptive(args):
    """The Adaptive message of `campaign create --adaptive`, or None; InvalidInput for options without it."""
    from edgeatlas.protos.spec import SpecSheet
    from edgeatlas.v1 import admin_pb2

    given = [f"--{k.replace('_', '-')}" for k in ("budget", "target_mape", "for_spec", "epsilon_budget")
             if getattr(args, k) is not None]
    if not args.adaptive:
        if given:
            raise errors.InvalidInput(f"{given[0]} applies to an adaptive campaign: add --adaptive")
        return None
    if args.budget is None:
        raise errors.InvalidInput("an adaptive campaign needs --budget N (measurements)")
    if not 1 <= args.budget < 2 ** 32:
        raise errors.InvalidInput(f"--budget {args.budget} is not a number of measurements in 1..{2 ** 32 - 1}")
    spec = SpecSheet.load(args.for_spec).to_json() if args.for_spec else ""
    return admin_pb2.Adaptive(budget=args.budget, target_mape=args.target_mape or 0.0, for_spec_json=spec,
                              epsilon_budget=args.epsilon_budget or 0.0)


FEDERATED_OPTIONS = ("devices", "rounds", "local_epochs", "update_clip", "update_noise")


def _federated(args):
    """The Federated message of `campaign create --kind federated-train`; InvalidInput for what does not fit."""
    from edgeatlas.v1 import admin_pb2

    if args.kind != "federated-train":
        given = [f"--{k.replace('_', '-')}" for k in FEDERATED_OPTIONS if getattr(args, k) is not None]
        if given:
            raise errors.InvalidInput(f"{given[0]} applies to --kind federated-train")
        return None
    if args.models or args.adaptive:
        raise errors.InvalidInput("a federated-train campaign trains on the devices' own data: no --models or "
                                  "--adaptive")
    values = {k: getattr(args, k) for k in FEDERATED_OPTIONS if getattr(args, k) is not None}
    if args.epsilon is not None:
        values["epsilon"] = args.epsilon
    for key, value in values.items():
        if not (math.isfinite(value) and value > 0) or (isinstance(value, int) and value >= 2 ** 32):
            raise errors.InvalidInput(f"--{key.replace('_', '-')} {value} must be a positive number")
    return admin_pb2.Federated(**values)


def cmd_campaign_create(args) -> int:
    from edgeatlas.protos.privacy import PrivacyParams, default_mode, delta_for

    from edgeatlas.protos.records import Schedule

    federated = _federated(args)
    if federated is not None:
        from edgeatlas.protos.records import RunParams, Setting

        with admin_client(args) as admin:
            c = admin.create_campaign([], {}, 1, Setting(), RunParams(), args.name or "", federated=federated)
        say(_campaign_line(c))
        return 0
    if not args.models:
        raise errors.InvalidInput("a campaign needs --models (or --kind federated-train)")
    if args.epsilon is None:
        args.epsilon = 1.0

    check_positive(repeats=args.repeats)
    schedule = Schedule(priority=args.priority, deadline_ms=_deadline_ms(args.deadline),
                        quota=args.quota).check(int(time.time() * 1000))
    setting, params = scenario_setting(args)
    bounds_auto = args.bounds_ms == "auto"
    lo, sep, hi = ("0.01:10000" if bounds_auto else args.bounds_ms).partition(":")
    try:
        bounds = (float(lo), float(hi))
    except ValueError:
        raise errors.InvalidInput(f"--bounds-ms {args.bounds_ms!r} is not LO:HI in milliseconds, or auto") from None
    privacy = PrivacyParams(mechanism=args.mechanism, epsilon=args.epsilon,
                            delta=delta_for(args.mechanism, args.delta),
                            statistics=tuple(args.statistics), bounds_ms=bounds,
                            mode=args.privacy_mode or default_mode(args.adaptive, args.mechanism),
                            cohort_min=args.cohort_min).check()
    adaptive = _adaptive(args)
    with admin_client(args) as admin:
        if args.iterations is None and _all_llms(admin, args.models):
            params = dataclasses.replace(params, min_iterations=LLM_REQUESTS)
        c = admin.create_campaign(args.models, _selectors(args.selector), args.repeats,
                                  setting, params, args.name or "", privacy, args.target_precision, schedule,
                                  adaptive, bounds_auto=bounds_auto)
    say(_campaign_line(c))
    if privacy.mode == "secure":
        per_device = max(1, len(c.models) * args.repeats)  # tasks of one device
        devices = {hw: (n.pending + n.leased + n.done + n.failed + n.declined + n.cancelled) // per_device
                   for hw, n in c.by_hardware.items()}
        short = {hw: d for hw, d in devices.items() if d < privacy.cohort_min}
        say(f"  secure: a hardware class's cells are published once {privacy.cohort_min} of its devices hold "
            f"results (--cohort-min; never fewer than the coordinator's k)"
            + ("; fewer here: " + ", ".join(f"{hw} {d}" for hw, d in sorted(short.items()))
               + " (--privacy-mode ldp publishes each report on its own)" if short else ""))
    return 0


def _all_llms(admin, wanted: list[str]) -> bool:
    """Every model named (by name or sha256 prefix) is a GGUF: the campaign's default requests are an LLM's."""
    models = admin.list_models()
    formats = [next((m.format for m in models if m.name == w or m.sha256.startswith(w)), "") for w in wanted]
    return bool(formats) and all(f == "gguf" for f in formats)


def cmd_campaign_list(args) -> int:
    with admin_client(args) as admin:
        campaigns = admin.list_campaigns()
    say("\n".join(_campaign_line(c) for c in campaigns) if campaigns else "no campaigns")
    return 0


def cmd_campaign_status(args) -> int:
    from edgeatlas.console import views
    from edgeatlas.protos import convert
    from edgeatlas.v1 import admin_pb2

    with admin_client(args) as admin:
        c = admin.campaign(args.id)
        heatmap = admin.heatmap(target_precision=c.target_precision)
    say(_campaign_line(c))
    if c.HasField("federated"):
        for r in c.federated_rounds:
            say(f"  round {r.round:3d}: device loss {r.loss_before:.4f} → {r.loss_after:.4f}, "
                f"ε {r.epsilon_measurement:.2f} per measurement, {r.epsilon_device:.1f} per device")
        return 0
    privacy = convert.privacy_from_pb(c.privacy)
    say(f"  privacy: {privacy.describe()} per {'cell' if privacy.mode == 'secure' else 'report'}"
        + (f", cohorts of ≥ {privacy.cohort_min}" if privacy.mode == "secure" else "")
        + (f"; target ±{c.target_precision:.0%}" if c.target_precision else ""))
    for key, bounds in sorted(c.auto_bounds.items()):  # --bounds-ms auto
        model, _, hardware_class = key.partition("|")
        say(f"  bounds {bounds} ms for {model} on {hardware_class} (from the predictor)")
    for failure in c.failures:
        say(f"  {failure}")
    for r in c.rounds:
        error = f"{r.validation_mape:5.1f} %" if math.isfinite(r.validation_mape) else "  n/a  "
        say(f"  round {r.round:3d}: after {r.measurements:5d} measurements, validation MAPE {error}, "
            f"picked {r.picked} cells")
    mine = [cell for cell in heatmap.cells if cell.model_name in set(c.models) and cell.source != "imported"]
    if mine:
        say(views.summary(admin_pb2.Heatmap(cells=mine)))
    return 0


def cmd_campaign_state(args) -> int:
    """cancel, pause or resume: the campaign's new state, in one line."""
    with admin_client(args) as admin:
        change = {"cancel": admin.cancel_campaign, "pause": admin.pause_campaign, "resume": admin.resume_campaign}
        say(_campaign_line(change[args.sub](args.id)))
    return 0


def cmd_agents_list(args) -> int:
    with admin_client(args) as admin:
        agents = admin.list_agents()
    rows = [f"{a.agent_id[:8]}  {a.name or '-':14} {'online ' if a.online else 'offline'}  "
            f"{a.hardware_class:28} {a.tasks_done:4} tasks done" for a in agents]
    say("\n".join(rows) if rows else "no agents enrolled")
    return 0


def cmd_heatmap(args) -> int:
    from edgeatlas.console import views

    with admin_client(args) as admin:
        heatmap = admin.heatmap(target_precision=args.target_precision)
    if args.format == "csv":
        sys.stdout.write(views.to_csv(heatmap))
    elif args.format == "json":
        say(views.to_json(heatmap))
    elif not heatmap.cells:
        say("the heat-map is empty: no valid report yet")
    elif args.metric:
        say(views.matrix(heatmap, args.metric))
    else:
        say(views.summary(heatmap))
    return 0


def cmd_fleet_simulate(args) -> int:
    from edgeatlas.agent.simulate import run
    from edgeatlas.protos.wire import check_address

    check_address(args.coordinator)
    token = enroll_token(args)
    if not token:
        raise errors.Unauthenticated("simulated agents enroll too: give --token-file or set EDGEATLAS_ENROLL_TOKEN")
    run(args.coordinator, token, args.agents, args.catalog, args.once, args.duration, args.seed,
        labels=key_values(args.label, "--label"), truth_file=args.truth_file)
    return 0


def register(sub) -> None:
    models = sub.add_parser("models").add_subparsers(dest="sub", required=True)
    p = models.add_parser("build", help="generate the model zoo (ONNX and llama GGUF, no download)")
    p.add_argument("--out", default="zoo")
    p.add_argument("--real", nargs="+", metavar="NAME",
                   help="the real architectures instead (console/real_zoo.py; `all`, or names such as resnet-18 "
                        "bert-mini resnet-18-int8 smollm2-135m); needs edgeatlas[zoo], and [llm] for the GGUF LLM")
    p.add_argument("--reference", action="store_true",
                   help="the predictor's reference networks instead (fingerprints; predictor/fingerprint.py)")
    p.add_argument("--upload", action="store_true", help="register the models with the coordinator")
    admin_options(p)
    p.set_defaults(func=cmd_models_build)
    p = models.add_parser("add", help="register your own ONNX or GGUF model, with its input shapes")
    p.add_argument("file")
    p.add_argument("--name")
    input_options(p)
    admin_options(p)
    p.set_defaults(func=cmd_models_add)
    p = models.add_parser("list")
    admin_options(p)
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("nasbench201", help="build the NAS-Bench-201 network of an arch string as ONNX")
    p.add_argument("--arch", required=True, help="e.g. '|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|'")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_models_nasbench201)

    imports = sub.add_parser("import", help="published measurements into the heat-map").add_subparsers(
        dest="sub", required=True)
    p = imports.add_parser("nasbench201", help="NAS-Bench-201 latencies on 12 real devices")
    p.add_argument("--data", help="a directory in the nasbench201 layout (default: the bundled sample)")
    p.add_argument("--count", type=int, default=4, help="networks spread over the latency range")
    p.add_argument("--out", default="zoo", help="where the networks' ONNX files are written")
    admin_options(p)
    p.set_defaults(func=cmd_import_nasbench201)

    campaign = sub.add_parser("campaign").add_subparsers(dest="sub", required=True)
    p = campaign.add_parser("create", help="benchmark models across matching agents, or train the predictor on them")
    p.add_argument("--kind", choices=["measure", "federated-train"], default="measure",
                   help="federated-train: opted-in devices train the predictor on their own data (no --models)")
    p.add_argument("--models", nargs="+", help="model names or sha256 prefixes (measure)")
    p.add_argument("--devices", type=int, help="federated-train: devices per round, waited for (default 2)")
    p.add_argument("--rounds", type=int, help="federated-train: rounds (default 5)")
    p.add_argument("--local-epochs", type=int, help="federated-train: DP-SGD epochs per round (default 1)")
    p.add_argument("--update-clip", type=float, help="federated-train: L2 bound of a device's update (default 2)")
    p.add_argument("--update-noise", type=float,
                   help="federated-train: noise multiplier of the aggregate (default 0.1)")
    p.add_argument("--selector", action="append",
                   help="over agents, repeatable: cpu.arch=arm64, memory.size_gb>=8, label.owner=lab, "
                        "device_class!=phone")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--priority", type=int, default=0, help="-1000..1000; devices lease higher priorities first")
    p.add_argument("--deadline", help="30m, 2h, 1d from now, or an ISO date-time: open tasks are cancelled then")
    p.add_argument("--quota", type=int, default=0, help="devices per hardware class at most (0: every match)")
    p.add_argument("--adaptive", action="store_true",
                   help="measure, round by round, the cells the predictor is least sure of (needs --budget)")
    p.add_argument("--budget", type=int, help="adaptive: measurements at most")
    p.add_argument("--target-mape", type=float, help="adaptive: stop once the validation MAPE (%%) is this low")
    p.add_argument("--for-spec", help="adaptive: a spec sheet someone is choosing for; favour its Pareto front")
    p.add_argument("--epsilon-budget", type=float, help="adaptive: Σ ε per device in this campaign at most")
    p.add_argument("--name")
    run_options(p, iterations=100, duration=1.0)
    p.add_argument("--privacy-mode", choices=["ldp", "secure"],
                   help="secure (the default; ldp for --adaptive): cohorts of one hardware class sum their values "
                        "under secure aggregation, each device adding a share of the noise; ldp: each report "
                        "noised alone, for fleets too small for cohorts")
    p.add_argument("--cohort-min", type=int, default=10,
                   help="secure: devices of one hardware class a round waits for (never below the coordinator's k)")
    p.add_argument("--mechanism", choices=["gaussian", "laplace"], default="gaussian")
    p.add_argument("--epsilon", type=float,
                   help="ε per report (default 1); federated-train: per measurement over the run (default 8)")
    p.add_argument("--delta", type=float, default=1e-6, help="δ per report (gaussian)")
    p.add_argument("--statistics", nargs="+", default=["log_p50_ms", "log_p99_ms", "log_mean_ms"])
    p.add_argument("--bounds-ms", default="0.01:10000",
                   help="public latency bounds LO:HI, milliseconds; auto: per model and hardware class, around "
                        "the coordinator's predictor's estimate, widened to its interval")
    p.add_argument("--target-precision", type=float, default=0.0,
                   help="e.g. 0.1: report how many more devices each cell needs for ±10 %%")
    admin_options(p)
    p.set_defaults(func=cmd_campaign_create)
    for name, func in (("status", cmd_campaign_status), ("cancel", cmd_campaign_state),
                       ("pause", cmd_campaign_state), ("resume", cmd_campaign_state)):
        p = campaign.add_parser(name)
        p.add_argument("id", type=int)
        admin_options(p)
        p.set_defaults(func=func)
    p = campaign.add_parser("list")
    admin_options(p)
    p.set_defaults(func=cmd_campaign_list)

    agents = sub.add_parser("agents").add_subparsers(dest="sub", required=True)
    p = agents.add_parser("list")
    admin_options(p)
    p.set_defaults(func=cmd_agents_list)
    p = agents.add_parser("revoke", help="an agent's credential stops working")
    p.add_argument("agent_id")
    admin_options(p)
    p.set_defaults(func=cmd_agents_revoke)

    fleet = sub.add_parser("fleet").add_subparsers(dest="sub", required=True)
    p = fleet.add_parser("simulate", help="virtual agents from a catalog of real devices; all marked simulated")
    p.add_argument("--agents", type=int, required=True)
    enroll_options(p)
    p.add_argument("--catalog", help="YAML list of spec sheets (default: the bundled catalog)")
    p.add_argument("--once", action="store_true", help="stop when no agent has work left")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", action="append", help="KEY=VALUE on every virtual device, repeatable")
    p.add_argument("--truth-file", help="write the synthetic p50 each virtual device holds for a secure round "
                                        "here (JSON), to set a private cell beside its synthetic truth")
    p.set_defaults(func=cmd_fleet_simulate)

    p = sub.add_parser("heatmap", help="the model × hardware heat-map")
    p.add_argument("--metric", help="one metric as a matrix, e.g. latency_p50_ms")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--target-precision", type=float, default=0.0, help="show devices needed for ±this")
    admin_options(p)
    p.set_defaults(func=cmd_heatmap)
