"""The `edgeatlas` command: a thin layer that builds objects and calls them.

Domain errors become one line on stderr and an exit code here, and only here. Rooms are imported
lazily, so a device with only the agent extra can run `edgeatlas agent ...`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from edgeatlas.protos import errors
from edgeatlas.protos.scenarios import SCENARIOS
from edgeatlas.protos.wire import DEFAULT_SUPERLINK_PORT

EXIT_INPUT = 2
EXIT_UNAVAILABLE = 3
DEFAULT_COORDINATOR = "127.0.0.1:50051"


def _key_values(pairs: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.InvalidInput(f"{what} {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


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


def _admin(args):
    from edgeatlas.protos.admin_client import AdminClient
    return AdminClient(args.coordinator, args.admin_token, _client_tls(args))


def _client_tls(args):
    from edgeatlas.protos.wire import ClientTls

    if not args.tls_ca:
        if args.tls_cert or args.tls_key:
            raise errors.InvalidInput("--tls-cert and --tls-key need --tls-ca (the CA that signed the coordinator)")
        return None
    return ClientTls(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)


def _print(text: str) -> None:
    print(text, flush=True)


# ---- coordinator --------------------------------------------------------------------------------
def cmd_coordinator_serve(args) -> int:
    import asyncio

    from edgeatlas.coordinator.server import bootstrap_tokens, serve
    from edgeatlas.coordinator.storage import Store

    os.umask(0o077)  # the database, its WAL and the tokens file: the coordinator's user's alone
    store = Store(args.db)
    tokens_file = Path(args.tokens_file) if args.tokens_file else _default_tokens_file(args.db)
    tokens, made = bootstrap_tokens(store, tokens_file, dict(os.environ))

    def ready(address: str) -> None:
        _print(f"coordinator listening on {address}, database {args.db}")
        if made and sys.stdout.isatty():  # a terminal, not a log: tokens never go into logs
            _print(f"enrollment token: {tokens.enroll}\nadmin token:      {tokens.admin}")
            if tokens_file:
                _print(f"(saved to {tokens_file}, readable by you only)")
        elif made:
            _print(f"new enrollment and admin tokens saved to {tokens_file or 'nowhere: pass --tokens-file'} "
                   "(not printed: this output is not a terminal)")
        elif os.environ.get("EDGEATLAS_ENROLL_TOKEN") or os.environ.get("EDGEATLAS_ADMIN_TOKEN"):
            _print("tokens: from the environment (EDGEATLAS_ENROLL_TOKEN, EDGEATLAS_ADMIN_TOKEN)"
                   + (f", the rest in {tokens_file}" if tokens_file and tokens_file.exists() else ""))
        elif tokens_file and tokens_file.exists():
            _print(f"tokens: as before, in {tokens_file}")

    if args.k_anonymity < 1:
        raise errors.InvalidInput(f"--k-anonymity must be at least 1, got {args.k_anonymity}")
    from edgeatlas.coordinator.server import ServerTls

    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_client_ca and not args.tls_cert):
        raise errors.InvalidInput("TLS needs --tls-cert and --tls-key (and --tls-client-ca for mutual TLS)")
    tls = ServerTls(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    if args.report_rate <= 0:
        raise errors.InvalidInput(f"--report-rate must be positive, got {args.report_rate}")
    if args.enroll_rate <= 0:
        raise errors.InvalidInput(f"--enroll-rate must be positive, got {args.enroll_rate}")
    if args.superlink:
        from edgeatlas.protos.wire import check_address

        check_address(args.superlink)
    if args.retrain_cells < 0 or args.retrain_check_s <= 0:
        raise errors.InvalidInput("--retrain-cells must not be negative and --retrain-check-s must be positive")
    asyncio.run(serve(store, args.listen, Path(args.ready_file) if args.ready_file else None, ready,
                      min_devices=args.k_anonymity, tls=tls, reports_per_minute=args.report_rate,
                      retrain_cells=args.retrain_cells, retrain_check_s=args.retrain_check_s,
                      superlink=args.superlink or "", enrollments_per_hour=args.enroll_rate))
    return 0


def _default_tokens_file(db: str) -> Path | None:
    if db.startswith("sqlite:///"):
        return Path(db[len("sqlite:///"):] + ".tokens.json")
    return None


def cmd_tls_make(args) -> int:
    from edgeatlas.console.tls import make_certificates

    files = make_certificates(args.out, args.host or ["127.0.0.1", "localhost"])
    _print(f"wrote {', '.join(str(p) for p in files.values())} and their .key files (owner-only) to {args.out}")
    _print("coordinator: --tls-cert server.pem --tls-key server.key [--tls-client-ca ca.pem]; "
           "agents and admins: --tls-ca ca.pem [--tls-cert client.pem --tls-key client.key]")
    return 0


def cmd_token_create(args) -> int:
    with _admin(args) as admin:
        resp = admin.create_token(args.kind, args.ttl, args.uses)
    _print(resp.token)
    return 0


def cmd_token_revoke(args) -> int:
    with _admin(args) as admin:
        admin.revoke_token(args.token)
    _print("revoked")
    return 0


def cmd_agents_revoke(args) -> int:
    with _admin(args) as admin:
        admin.revoke_agent(args.agent_id)
    _print(f"agent {args.agent_id} revoked; its open tasks are cancelled")
    return 0


# ---- agent --------------------------------------------------------------------------------------
def cmd_agent_spec(args) -> int:
    from edgeatlas.agent.probe import probe

    root = args.root or "/"
    if not Path(root).is_dir():
        raise errors.InvalidInput(f"--root {root} is not a directory")
    spec = probe(root, measure_bandwidth=not args.no_bandwidth)
    _print(spec.to_yaml().rstrip() if args.format == "yaml" else json.dumps(spec.data, indent=1))
    return 0


def cmd_agent_run(args) -> int:
    from edgeatlas.agent.loop import Agent, AgentConfig
    from edgeatlas.agent.probe import probe
    from edgeatlas.agent.state import StateDir, default_state_dir
    from edgeatlas.protos.wire import check_address

    check_address(args.coordinator)
    token = _enroll_token(args)
    superlink = ""
    if args.federated:
        from edgeatlas.agent.federated import check_installed

        superlink = check_address(args.superlink or f"{args.coordinator.rpartition(':')[0]}:{DEFAULT_SUPERLINK_PORT}")
        check_installed()
    elif args.superlink:
        raise errors.InvalidInput("--superlink applies to --federated")
    config = AgentConfig(coordinator=args.coordinator, enroll_token=token,
                         state_dir=StateDir(args.state_dir or default_state_dir()), name=args.name or "",
                         labels=_key_values(args.label, "--label"), once=args.once, trusted=args.trusted,
                         budget=_budget(args), tls=_client_tls(args), etiquette=_etiquette(args), superlink=superlink)
    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():  # a second Ctrl-C does not wait for the running task
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    spec = probe("/", measure_bandwidth=True, name=args.name or None)
    return Agent(config, spec, stop).run()


def _budget(args):
    from edgeatlas.agent.privacy.ledger import Budget

    _check_positive(privacy_budget=args.privacy_budget, privacy_window_hours=args.privacy_window_hours)
    if not 0 < args.privacy_delta < 1e-2:
        raise errors.InvalidInput(f"--privacy-delta must be in (0, 0.01), got {args.privacy_delta}")
    return Budget(epsilon=args.privacy_budget, delta=args.privacy_delta, window_s=args.privacy_window_hours * 3600)


def _service_args(args) -> tuple[str, ...]:
    rules = _etiquette(args)
    extra = ["--privacy-budget", f"{args.privacy_budget:g}", "--privacy-window-hours",
             f"{args.privacy_window_hours:g}", "--privacy-delta", f"{args.privacy_delta:g}",
             "--min-battery", f"{rules.min_battery_percent:g}", "--max-temp", f"{rules.max_temp_c:g}",
             "--max-busy", f"{rules.max_busy_percent:g}", "--cooldown", f"{rules.cooldown_s:g}",
             "--min-clock", f"{rules.min_clock_percent:g}"]
    for flag, value in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if value:
            extra += [flag, str(Path(value).resolve())]
    return tuple(extra + (["--trusted"] if args.trusted else []))


def cmd_agent_install_service(args) -> int:
    from edgeatlas.agent import service
    from edgeatlas.agent.state import default_state_dir
    from edgeatlas.protos.wire import check_address

    check_address(args.coordinator)
    _budget(args)
    spec = service.ServiceSpec(coordinator=args.coordinator,
                               state_dir=Path(args.state_dir or default_state_dir()).expanduser().resolve(),
                               name=args.name or "", extra_args=_service_args(args))
    if args.print:
        _print(service.systemd_unit(spec) if sys.platform.startswith("linux") else " ".join(spec.argv()))
        return 0
    done = service.install(spec, _enroll_token(args), start=not args.no_start)
    _print(f"{done.path}: {done.note}")
    return 0


def cmd_agent_uninstall_service(args) -> int:
    from edgeatlas.agent import service

    _print(f"removed {service.uninstall()}")
    return 0


def cmd_agent_privacy(args) -> int:
    from edgeatlas.agent.privacy.ledger import Ledger
    from edgeatlas.agent.state import StateDir, default_state_dir

    state = StateDir(args.state_dir or default_state_dir())
    ledger = Ledger(state.root / "privacy-ledger.db", _budget(args))
    entries = ledger.entries()
    spent = ledger.spent()
    ledger.close()
    b = ledger.budget
    _print(f"privacy budget: ε ≤ {b.epsilon:g} per {b.window_s / 3600:g} h at δ = {b.delta:g} (set by you)")
    _print(f"spent in the window: ε = {spent:.3g}; {len(entries)} releases recorded in all "
           f"({sum(e['mode'] == 'trusted' for e in entries)} trusted, exact values)")
    return 0


def _scenario_setting(args, **fields):
    """Setting and RunParams from the shared run options; minimum queries default by scenario."""
    from edgeatlas.protos import scenarios
    from edgeatlas.protos.records import RunParams, Setting

    params_kv = _key_values(args.param, "--param")
    scenarios.check(args.scenario, params_kv)
    iterations = args.iterations if args.iterations is not None else (
        100 if args.scenario == "single-stream" else scenarios.MIN_QUERIES[args.scenario])
    _check_positive(batch=args.batch, iterations=iterations, duration=args.duration)
    setting = Setting(batch=args.batch, threads=args.threads, scenario=args.scenario,
                      scenario_params=params_kv, **fields)
    params = RunParams(warmup_iterations=args.warmup, min_iterations=iterations, min_duration_s=args.duration,
                       max_duration_s=max(args.duration * 10, 60.0))
    return setting, params


def cmd_agent_bench(args) -> int:
    from edgeatlas.agent.meters import find_meter
    from edgeatlas.agent.runners import make_runner

    runtime = "llama.cpp" if args.model.lower().endswith(".gguf") else "onnxruntime"
    setting, params = _scenario_setting(args, execution_provider=args.provider, runtime=runtime)
    runner = make_runner(args.model, setting, args.reference)
    meter, absent = find_meter(runner.setting.target)
    result = runner.run(params, meter)
    if args.format == "json":
        _print(json.dumps({"setting": result.setting.to_dict(), "stats": result.stats.to_dict(),
                           "figures": result.figures(), "outcome": result.outcome.__dict__,
                           "energy_meter": result.energy.meter if result.energy else None,
                           "energy_absent": absent or None,
                           "valid": result.valid, "invalid_reason": result.invalid_reason,
                           "fidelity": result.fidelity.__dict__}, indent=1))
        return 0
    s, st, figures = result.stats, result.setting, result.figures()
    _print(f"{Path(args.model).name}: {st.runtime} {st.runtime_version} {st.execution_provider}, "
           f"batch {st.batch}, threads {st.threads or 'default'}, {st.precision}, {st.scenario}"
           + (f" {st.scenario_params}" if st.scenario_params else "")
           + f", driven by {result.outcome.driver}")
    unit = "requests" if result.llm else "queries"
    _print(f"  {unit:10}  {s.iterations} in {s.duration_s:.2f} s")
    _print(f"  latency ms  p50 {s.p50_ms:.4g}  p90 {s.p90_ms:.4g}  p99 {s.p99_ms:.4g}  "
           f"mean {s.mean_ms:.4g}  stdev {s.stdev_ms:.3g}")
    _print(f"  throughput  {s.throughput_ips:,.1f} {'requests' if result.llm else 'inferences'}/s")
    if result.llm:
        _print(f"  LLM         TTFT {figures['ttft_ms']:.4g} ms  prefill {figures['prefill_tps']:,.0f} tokens/s"
               + (f"  TPOT {figures['tpot_ms']:.4g} ms  decode {figures['decode_tps']:,.1f} tokens/s  "
                  f"ITL p50/p90/p99 {figures['itl_p50_ms']:.3g}/{figures['itl_p90_ms']:.3g}/"
                  f"{figures['itl_p99_ms']:.3g} ms" if "tpot_ms" in figures else ""))
    for name in ("early_stopping_p90_ms", "early_stopping_p99_ms", "server_qps", "offline_ips"):
        if name in figures:
            _print(f"  {name:11} {figures[name]:.4g}")
    if result.energy:
        _print(f"  energy      {figures['energy_mj']:.4g} mJ per {'request' if result.llm else 'inference'}, "
               f"{figures['power_w']:.3g} W average ({result.energy.meter})")
    else:
        _print(f"  energy      not measured ({absent})")
    fid = result.fidelity
    _print(f"  fidelity    {'passed' if fid.passed else 'FAILED' if fid.checked else 'not checked'}"
           + (f" (max abs error {fid.max_abs_error:.2g})" if fid.checked else f" ({fid.detail})"))
    _print(f"  verdict     {result.outcome.driver} {result.outcome.verdict}")
    _print(f"  valid       {'yes' if result.valid else 'no: ' + result.invalid_reason}")
    return 0


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value <= 0:
            raise errors.InvalidInput(f"--{name.replace('_', '-')} must be positive, got {value}")


# ---- models -------------------------------------------------------------------------------------
def cmd_models_build(args) -> int:
    from edgeatlas.console.gguf_zoo import build_gguf_zoo
    from edgeatlas.console.zoo import build_zoo

    paths = build_zoo(args.out) + build_gguf_zoo(args.out)
    _print(f"built {len(paths)} models in {args.out} (ONNX and GGUF)")
    if args.upload:
        with _admin(args) as admin:
            for path in paths:
                _register(admin, path, path.stem)
    return 0


def _register(admin, path: Path, name: str):
    from edgeatlas.console.models import prepare, summary_json

    prepared = prepare(path, name)
    ref = admin.add_model(path, prepared.name, prepared.reference_npz, summary_json(prepared), prepared.format)
    if ref.name != name:
        _print(f"  (the same bytes are already registered as {ref.name!r}; models are content-addressed)")
    unit = "MFLOP/token" if prepared.format == "gguf" else "MFLOP"
    _print(f"  {ref.name:16} {ref.sha256[:12]}  {prepared.size_bytes / 1024:8.0f} KiB  "
           f"{prepared.summary['parameters']:>10,} params  {prepared.summary['flops'] / 1e6:9.1f} {unit}"
           + ("" if prepared.reference_npz else "  (no reference: install edgeatlas[llm] to check fidelity)"))
    return ref


def cmd_models_add(args) -> int:
    from edgeatlas.console.models import prepare

    prepare(args.file, args.name)  # validate before connecting: a bad file never reaches the coordinator
    with _admin(args) as admin:
        _register(admin, Path(args.file), args.name or Path(args.file).stem)
    return 0


def cmd_models_nasbench201(args) -> int:
    import onnx

    from edgeatlas.predictor.datasets.nasbench201 import nasbench201
    from edgeatlas.predictor.onnx_build import trainable_parameters

    model = nasbench201(Path(args.out).stem, args.arch)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out)
    _print(f"wrote {args.out}: {trainable_parameters(model):,} parameters, {len(model.graph.node)} operators")
    return 0


def cmd_import_nasbench201(args) -> int:
    from edgeatlas.console.imports import import_nasbench201

    with _admin(args) as admin:
        names = import_nasbench201(admin, args.data, args.count, args.out, _print)
    _print(f"imported published latencies of {len(names)} networks (source: imported)")
    return 0


def cmd_models_list(args) -> int:
    with _admin(args) as admin:
        models = admin.list_models()
    rows = [f"{m.name:18} {m.sha256[:12]}  {m.format:5} {m.size_bytes / 1024:8.0f} KiB" for m in models]
    _print("\n".join(rows) if rows else "no models registered")
    return 0


# ---- campaigns, agents, heat-map ----------------------------------------------------------------
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
    from edgeatlas.protos.privacy import PrivacyParams

    from edgeatlas.protos.records import Schedule

    federated = _federated(args)
    if federated is not None:
        from edgeatlas.protos.records import RunParams, Setting

        with _admin(args) as admin:
            c = admin.create_campaign([], {}, 1, Setting(), RunParams(), args.name or "", federated=federated)
        _print(_campaign_line(c))
        return 0
    if not args.models:
        raise errors.InvalidInput("a campaign needs --models (or --kind federated-train)")
    if args.epsilon is None:
        args.epsilon = 1.0

    _check_positive(repeats=args.repeats)
    schedule = Schedule(priority=args.priority, deadline_ms=_deadline_ms(args.deadline),
                        quota=args.quota).check(int(time.time() * 1000))
    setting, params = _scenario_setting(args)
    lo, sep, hi = args.bounds_ms.partition(":")
    try:
        bounds = (float(lo), float(hi))
    except ValueError:
        raise errors.InvalidInput(f"--bounds-ms {args.bounds_ms!r} is not LO:HI in milliseconds") from None
    privacy = PrivacyParams(mechanism=args.mechanism, epsilon=args.epsilon,
                            delta=0.0 if args.mechanism == "laplace" else args.delta,
                            statistics=tuple(args.statistics), bounds_ms=bounds).check()
    adaptive = _adaptive(args)
    with _admin(args) as admin:
        c = admin.create_campaign(args.models, _selectors(args.selector), args.repeats,
                                  setting, params, args.name or "", privacy, args.target_precision, schedule,
                                  adaptive)
    _print(_campaign_line(c))
    return 0


def cmd_campaign_list(args) -> int:
    with _admin(args) as admin:
        campaigns = admin.list_campaigns()
    _print("\n".join(_campaign_line(c) for c in campaigns) if campaigns else "no campaigns")
    return 0


def cmd_campaign_status(args) -> int:
    from edgeatlas.console import views
    from edgeatlas.protos import convert
    from edgeatlas.v1 import admin_pb2

    with _admin(args) as admin:
        c = admin.campaign(args.id)
        heatmap = admin.heatmap(target_precision=c.target_precision)
    _print(_campaign_line(c))
    if c.HasField("federated"):
        for r in c.federated_rounds:
            _print(f"  round {r.round:3d}: device loss {r.loss_before:.4f} → {r.loss_after:.4f}, "
                   f"ε {r.epsilon_measurement:.2f} per measurement, {r.epsilon_device:.1f} per device")
        return 0
    _print(f"  privacy: {convert.privacy_from_pb(c.privacy).describe()} per report"
           + (f"; target ±{c.target_precision:.0%}" if c.target_precision else ""))
    for failure in c.failures:
        _print(f"  {failure}")
    for r in c.rounds:
        error = f"{r.validation_mape:5.1f} %" if math.isfinite(r.validation_mape) else "  n/a  "
        _print(f"  round {r.round:3d}: after {r.measurements:5d} measurements, validation MAPE {error}, "
               f"picked {r.picked} cells")
    mine = [cell for cell in heatmap.cells if cell.model_name in set(c.models) and cell.source != "imported"]
    if mine:
        _print(views.summary(admin_pb2.Heatmap(cells=mine)))
    return 0


def cmd_campaign_cancel(args) -> int:
    with _admin(args) as admin:
        _print(_campaign_line(admin.cancel_campaign(args.id)))
    return 0


def cmd_campaign_pause(args) -> int:
    with _admin(args) as admin:
        _print(_campaign_line(admin.pause_campaign(args.id)))
    return 0


def cmd_campaign_resume(args) -> int:
    with _admin(args) as admin:
        _print(_campaign_line(admin.resume_campaign(args.id)))
    return 0


def cmd_agents_list(args) -> int:
    with _admin(args) as admin:
        agents = admin.list_agents()
    rows = [f"{a.agent_id[:8]}  {a.name or '-':14} {'online ' if a.online else 'offline'}  "
            f"{a.hardware_class:28} {a.tasks_done:4} tasks done" for a in agents]
    _print("\n".join(rows) if rows else "no agents enrolled")
    return 0


def cmd_heatmap(args) -> int:
    from edgeatlas.console import views

    with _admin(args) as admin:
        heatmap = admin.heatmap(target_precision=args.target_precision)
    if args.format == "csv":
        sys.stdout.write(views.to_csv(heatmap))
    elif args.format == "json":
        _print(views.to_json(heatmap))
    elif not heatmap.cells:
        _print("the heat-map is empty: no valid report yet")
    elif args.metric:
        _print(views.matrix(heatmap, args.metric))
    else:
        _print(views.summary(heatmap))
    return 0


def cmd_fleet_simulate(args) -> int:
    from edgeatlas.agent.simulate import run
    from edgeatlas.protos.wire import check_address

    check_address(args.coordinator)
    token = _enroll_token(args)
    if not token:
        raise errors.Unauthenticated("simulated agents enroll too: give --token-file or set EDGEATLAS_ENROLL_TOKEN")
    run(args.coordinator, token, args.agents, args.catalog, args.once, args.duration, args.seed)
    return 0


def cmd_demo(args) -> int:
    from edgeatlas.console.demo import Demo, DemoOptions

    return Demo(DemoOptions(workdir=Path(args.dir), agents=args.agents, iterations=args.iterations,
                            duration_s=args.duration, keep=args.keep, simulated=args.simulated,
                            dashboard=not args.no_dashboard, federated=not args.no_federated,
                            stay=args.stay if args.stay is not None else sys.stdin.isatty())).run()


def cmd_dashboard(args) -> int:
    from edgeatlas.dashboard import serve
    from edgeatlas.protos.wire import check_address

    check_address(args.coordinator)
    if not args.admin_token:
        raise errors.InvalidInput("no admin token: pass --admin-token or set EDGEATLAS_ADMIN_TOKEN")
    if not 0 <= args.port <= 65535:
        raise errors.InvalidInput(f"--port {args.port} is not in 0..65535")
    tls = {"EDGEATLAS_TLS_CA": args.tls_ca or "", "EDGEATLAS_TLS_CERT": args.tls_cert or "",
           "EDGEATLAS_TLS_KEY": args.tls_key or ""}
    proc, url = serve.start(args.coordinator, args.admin_token, args.host, args.port, tls=tls)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a stop by PID stops Streamlit too
    try:
        _print(f"dashboard: {url}  (coordinator {args.coordinator}; Ctrl-C stops it)")
        if args.ready_file:
            Path(args.ready_file).write_text(json.dumps({"url": url, "pid": proc.pid}))
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        serve.stop(proc)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# ---- parser -------------------------------------------------------------------------------------
def _admin_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coordinator", default=os.environ.get("EDGEATLAS_COORDINATOR", DEFAULT_COORDINATOR),
                   help="HOST:PORT (env EDGEATLAS_COORDINATOR)")
    p.add_argument("--admin-token", default=os.environ.get("EDGEATLAS_ADMIN_TOKEN"),
                   help="admin token (env EDGEATLAS_ADMIN_TOKEN)")
    _tls_options(p)


def _tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", default=os.environ.get("EDGEATLAS_TLS_CA"),
                   help="CA certificate that signed the coordinator's (env EDGEATLAS_TLS_CA); enables TLS")
    p.add_argument("--tls-cert", default=os.environ.get("EDGEATLAS_TLS_CERT"), help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", default=os.environ.get("EDGEATLAS_TLS_KEY"), help="client key (mutual TLS)")


def _enroll_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coordinator", default=os.environ.get("EDGEATLAS_COORDINATOR", DEFAULT_COORDINATOR),
                   help="HOST:PORT (env EDGEATLAS_COORDINATOR)")
    p.add_argument("--token-file", help="read the enrollment token from this file (or set EDGEATLAS_ENROLL_TOKEN)")
    p.add_argument("--token", help=argparse.SUPPRESS)  # refused by _enroll_token: argv is public (ps)


def _enroll_token(args) -> str | None:
    """The enrollment token from --token-file or EDGEATLAS_ENROLL_TOKEN; never from the command line, which
    every user of the machine can read in ps."""
    if args.token:
        raise errors.InvalidInput("--token would show the token to every user of this machine (ps): "
                                  "give --token-file FILE or set EDGEATLAS_ENROLL_TOKEN")
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip() or None
        except OSError as exc:
            raise errors.InvalidInput(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
    return os.environ.get("EDGEATLAS_ENROLL_TOKEN") or None


def _budget_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--privacy-budget", type=float, default=8.0, help="ε allowed per window (yours to set)")
    p.add_argument("--privacy-window-hours", type=float, default=24.0)
    p.add_argument("--privacy-delta", type=float, default=1e-6, help="δ at which the window's ε is counted")


def _etiquette_options(p: argparse.ArgumentParser, busy: float, cooldown: float, clock: float) -> None:
    g = p.add_argument_group("etiquette (0 turns a rule off)")
    g.add_argument("--min-battery", type=float, default=30.0, help="on battery below this %%: wait")
    g.add_argument("--max-temp", type=float, default=80.0, help="hotter than this °C: wait")
    g.add_argument("--max-busy", type=float, default=busy, help="other work using more than this %% of the CPUs: wait")
    g.add_argument("--cooldown", type=float, default=cooldown, help="seconds of rest between tasks")
    g.add_argument("--min-clock", type=float, default=clock,
                   help="the last task's load held the CPU clock under this %% of its maximum (throttled): wait")


def _etiquette(args):
    from edgeatlas.agent.etiquette import Rules

    return Rules(min_battery_percent=args.min_battery, max_temp_c=args.max_temp, max_busy_percent=args.max_busy,
                 cooldown_s=args.cooldown, min_clock_percent=args.min_clock).check()


def _run_options(p: argparse.ArgumentParser, iterations: int, duration: float) -> None:
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iterations", type=int, default=None,
                   help=f"at least this many timed queries (default {iterations} single-stream, "
                        "LoadGen's early-stopping minimum otherwise)")
    p.add_argument("--scenario", default="single-stream", choices=list(SCENARIOS),
                   help="MLPerf LoadGen scenario; LLM (GGUF) tasks run single-stream")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="scenario parameter: prompt_tokens, output_tokens, gpu_layers (LLM); samples_per_query "
                        "(multi-stream); target_qps, latency_bound_ms, search_steps (server)")
    p.add_argument("--duration", type=float, default=duration, help="and at least this many seconds")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first")


# ---- predictor ----------------------------------------------------------------------------------
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
        train(args.data, args.out, cfg, _print)
        return 0
    if len(args.data) > 1:
        raise errors.InvalidInput("--data coordinator:HOST:PORT cannot be combined with other --data sources")
    from edgeatlas.protos.admin_client import AdminClient

    address = remote[0].removeprefix("coordinator:")
    with AdminClient(address, args.admin_token, _client_tls(args)) as admin:
        _print(f"training on the cells of the coordinator at {address} (it trains; this writes the checkpoint)")
        version = admin.train_predictor(cfg.members, cfg.epochs)
        blob = admin.download_predictor(version.version)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(blob)
    _print(f"wrote {args.out}: predictor v{version.version} ({version.cells} cells, {version.networks} networks, "
           f"{version.devices} devices, {version.train_seconds:.0f} s); held-out evaluation {version.evaluation_json}")
    return 0


def cmd_predictor_eval(args) -> int:
    from edgeatlas.predictor.commands import run_eval

    _print(run_eval(args.data, args.split, _train_config(args), args.device or None, _print))
    return 0


def cmd_predictor_predict_batch(args) -> int:
    from edgeatlas.predictor.commands import predict_batch

    predict_batch(args.checkpoint, args.queries, args.out, _print)
    return 0


def cmd_predictor_versions(args) -> int:
    with _admin(args) as admin:
        versions = admin.predictor_versions()
    if args.format == "json":
        from google.protobuf.json_format import MessageToDict
        _print(json.dumps([MessageToDict(v) for v in versions]))
        return 0
    if not versions:
        _print("no predictor trained yet")
    for v in versions:
        figures = json.loads(v.evaluation_json or "{}")
        shown = ", ".join(f"{k} MAPE {f['mape']:.1f} % ρ {f['spearman']:.2f}" for k, f in figures.items())
        privacy = json.loads(v.privacy_json or "{}")
        spent = (f"  federated, δ {privacy['delta']:g}: ε {privacy['epsilon_measurement']:.2f} per measurement, "
                 f"{privacy['epsilon_device']:.1f} per device over {len(privacy['rounds'])} rounds") if privacy else ""
        _print(f"v{v.version}  {time.strftime('%Y-%m-%d %H:%M', time.gmtime(v.created_ms / 1000))}  {v.trigger:9} "
               f"{v.cells} cells, {v.networks} networks, {v.devices} devices, {v.train_seconds:.0f} s"
               f"{'  held-out networks: ' + shown if shown else ''}{spent}")
    return 0


def cmd_predictor_retrain(args) -> int:
    if args.members < 0 or args.epochs < 0:
        raise errors.InvalidInput("--members and --epochs must not be negative")
    with _admin(args) as admin:
        v = admin.train_predictor(args.members, args.epochs)
    _print(f"predictor v{v.version}: {v.cells} cells, {v.networks} networks, {v.devices} devices, "
           f"{v.train_seconds:.0f} s; evaluation {v.evaluation_json}")
    return 0


def cmd_predictor_publish(args) -> int:
    path = Path(args.checkpoint)
    if not path.is_file():
        raise errors.InvalidInput(f"checkpoint {path}: no such file")
    with _admin(args) as admin:
        v = admin.publish_predictor(path.read_bytes())
    _print(f"predictor v{v.version} published from {path}: {v.cells} measurements, {v.networks} networks, "
           f"{v.devices} devices")
    return 0


def cmd_predictor_ask(args) -> int:
    from edgeatlas.protos.spec import SpecSheet

    if min(args.batch, args.threads, args.version) < 0:
        raise errors.InvalidInput("--batch, --threads and --version must not be negative")
    spec = SpecSheet.load(args.spec)
    with _admin(args) as admin:
        a = admin.predict(spec.to_json(), args.model, args.target, args.batch, args.threads, args.runtime,
                          args.version)
    _print(json.dumps({"model": a.model_name, "spec": spec.name, "latency_ms": a.latency_ms,
                       "latency_ms_low": a.latency_ms_low, "latency_ms_high": a.latency_ms_high,
                       "roofline_latency_ms": a.roofline_latency_ms, "tabular_latency_ms": a.tabular_latency_ms,
                       "version": a.version}))
    return 0


def cmd_predict(args) -> int:
    from edgeatlas.predictor.commands import pareto_plot, predict, print_json

    checkpoint = args.checkpoint or _default_checkpoint()
    if not Path(checkpoint).is_file():
        raise errors.InvalidInput(f"checkpoint {checkpoint}: no such file (train one with `edgeatlas predictor "
                                  f"train --data DIR --out CKPT`, or run `edgeatlas demo`)")
    answers = predict(str(checkpoint), args.spec, args.model, args.target, args.batch, args.threads, args.runtime)
    if args.plot:
        front = pareto_plot(answers, args.plot)
        if not args.json:
            _print(f"wrote {args.plot}; Pareto front: {', '.join(Path(m).stem for m in front)}")
    if args.json:
        _print(print_json(answers))
    else:
        for a in answers:
            _print(f"{Path(a['model']).stem}: {a['latency_ms']:.4g} ms (80 % interval {a['latency_ms_low']:.4g}–"
                   f"{a['latency_ms_high']:.4g}) on {a['spec']} {a['target']}; roofline "
                   f"{a['roofline_latency_ms']:.3g} ms, tabular {a['tabular_latency_ms']:.4g} ms")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeatlas", description="Federated benchmarking of AI inference.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="coordinator + agents + campaign over the zoo, then the heat-map")
    p.add_argument("--dir", default=".edgeatlas-demo", help="where the demo keeps its data")
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--duration", type=float, default=0.5)
    p.add_argument("--keep", action="store_true", help="keep the previous demo's data")
    p.add_argument("--simulated", type=int, default=24, help="virtual devices beside the real agents (0: none)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    p.add_argument("--no-federated", action="store_true", help="skip the federated training step")
    stay = p.add_mutually_exclusive_group()
    stay.add_argument("--stay", dest="stay", action="store_true", default=None,
                      help="keep the coordinator and dashboard up until Ctrl-C (the default in a terminal)")
    stay.add_argument("--exit", dest="stay", action="store_false", help="stop everything once it has printed")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("dashboard", help="the Streamlit dashboard over a coordinator's admin API")
    _admin_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--port", type=int, default=8501, help="0: any free port")
    p.add_argument("--ready-file", help="write {url, pid} here once it serves")
    p.set_defaults(func=cmd_dashboard)

    coord = sub.add_parser("coordinator").add_subparsers(dest="sub", required=True)
    p = coord.add_parser("serve", help="run the coordinator")
    p.add_argument("--db", default="sqlite:///edgeatlas.db", help="sqlite:///PATH or postgresql://...")
    p.add_argument("--listen", default=DEFAULT_COORDINATOR, help="HOST:PORT (port 0: any free port)")
    p.add_argument("--tokens-file", help="where first-start tokens are saved (default: beside a SQLite db)")
    p.add_argument("--ready-file", help="write {address, pid} here once listening")
    p.add_argument("--k-anonymity", type=int, default=5,
                   help="fleet cells show values only once this many distinct devices contributed")
    p.add_argument("--tls-cert", help="server certificate (PEM); with --tls-key, serve TLS only")
    p.add_argument("--tls-key", help="server key (PEM)")
    p.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)")
    p.add_argument("--report-rate", type=float, default=120.0, help="reports per minute per agent, at most")
    p.add_argument("--enroll-rate", type=float, default=120.0,
                   help="enrollments an hour per source address and per token, at most (bursts of as many)")
    p.add_argument("--retrain-cells", type=int, default=0,
                   help="train a new predictor version whenever this many new cells can be learned from (0: off)")
    p.add_argument("--retrain-check-s", type=float, default=60.0, help="how often to look for new cells")
    p.add_argument("--superlink", help="HOST:PORT: run a Flower SuperLink there for federated-train campaigns "
                                       "(opted-in agents dial it; port 0: any free port)")
    p.set_defaults(func=cmd_coordinator_serve)

    tls = sub.add_parser("tls", help="certificates for TLS and mutual TLS").add_subparsers(dest="sub", required=True)
    p = tls.add_parser("make", help="a private CA, the coordinator's certificate and a client certificate")
    p.add_argument("--out", required=True)
    p.add_argument("--host", action="append", help="the coordinator's name or IP as agents dial it (repeatable)")
    p.set_defaults(func=cmd_tls_make)

    token = sub.add_parser("token").add_subparsers(dest="sub", required=True)
    p = token.add_parser("create", help="make an enrollment or admin token")
    p.add_argument("--kind", choices=["enroll", "admin"], default="enroll")
    p.add_argument("--ttl", type=int, default=0, help="seconds until it expires (0: never)")
    p.add_argument("--uses", type=int, default=1,
                   help="enrollments it allows (default 1: one device; 0: unlimited, for a fleet image)")
    _admin_options(p)
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("revoke", help="an enrollment or admin token stops working")
    p.add_argument("token")
    _admin_options(p)
    p.set_defaults(func=cmd_token_revoke)

    agent = sub.add_parser("agent").add_subparsers(dest="sub", required=True)
    p = agent.add_parser("spec", help="print this device's spec sheet")
    p.add_argument("--root", help="read /proc and /sys under this directory instead")
    p.add_argument("--format", choices=["yaml", "json"], default="yaml")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the memory copy test")
    p.set_defaults(func=cmd_agent_spec)
    p = agent.add_parser("run", help="enroll, then pull and run tasks until stopped")
    _enroll_options(p)
    p.add_argument("--state-dir", help="credential, model cache and outbox (default ~/.local/state/...)")
    p.add_argument("--name", help="this device's name in the fleet")
    p.add_argument("--label", action="append", help="KEY=VALUE, repeatable")
    p.add_argument("--once", action="store_true", help="exit when no task is left")
    p.add_argument("--trusted", action="store_true",
                   help="send exact values instead of noised ones (a private fleet you trust)")
    p.add_argument("--federated", action="store_true",
                   help="opt in to federated training: this device trains the predictor on its own results with "
                        "DP-SGD; only clipped, noised weights leave (needs the federated extra)")
    p.add_argument("--superlink", help=f"with --federated: the coordinator's Flower SuperLink HOST:PORT (default: "
                                       f"the coordinator's host, port {DEFAULT_SUPERLINK_PORT})")
    _budget_options(p)
    _etiquette_options(p, busy=0.0, cooldown=0.0, clock=0.0)  # run by hand: the owner is there to decide
    _tls_options(p)
    p.set_defaults(func=cmd_agent_run)
    p = agent.add_parser("install-service", help="run the agent in the background (systemd, launchd, Windows)")
    _enroll_options(p)  # the token is kept in a file only you can read
    p.add_argument("--state-dir")
    p.add_argument("--name")
    p.add_argument("--trusted", action="store_true")
    _budget_options(p)
    _etiquette_options(p, busy=50.0, cooldown=5.0, clock=60.0)  # in the background: step aside, cool down
    _tls_options(p)
    p.add_argument("--no-start", action="store_true", help="write the service, do not start it")
    p.add_argument("--print", action="store_true", help="print the service definition and stop")
    p.set_defaults(func=cmd_agent_install_service)
    p = agent.add_parser("uninstall-service", help="stop and remove the background agent")
    p.set_defaults(func=cmd_agent_uninstall_service)
    p = agent.add_parser("privacy", help="what this device has released, against its budget")
    p.add_argument("--state-dir")
    _budget_options(p)
    p.set_defaults(func=cmd_agent_privacy)
    p = agent.add_parser("bench", help="run one model here, without a coordinator")
    p.add_argument("model")
    _run_options(p, iterations=100, duration=2.0)
    p.add_argument("--provider", default="CPUExecutionProvider")
    p.add_argument("--reference", help="reference npz (fixed inputs and outputs) for the fidelity check")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_agent_bench)

    models = sub.add_parser("models").add_subparsers(dest="sub", required=True)
    p = models.add_parser("build", help="generate the model zoo (ONNX and llama GGUF, no download)")
    p.add_argument("--out", default="zoo")
    p.add_argument("--upload", action="store_true", help="register the models with the coordinator")
    _admin_options(p)
    p.set_defaults(func=cmd_models_build)
    p = models.add_parser("add", help="register your own ONNX or GGUF model")
    p.add_argument("file")
    p.add_argument("--name")
    _admin_options(p)
    p.set_defaults(func=cmd_models_add)
    p = models.add_parser("list")
    _admin_options(p)
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
    _admin_options(p)
    p.set_defaults(func=cmd_import_nasbench201)

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
    _admin_options(p)  # for --data coordinator:HOST:PORT
    p.set_defaults(func=cmd_predictor_train)
    p = predictor.add_parser("eval", help="roofline vs tabular vs GNN on held-out hardware or networks")
    training_options(p, members=2, epochs=4, max_networks=4000)
    p.add_argument("--split", required=True, help="leave-hardware-out | leave-model-out")
    p.add_argument("--device", action="append", help="hold out only these devices (spec-sheet names)")
    p.set_defaults(func=cmd_predictor_eval)
    p = predictor.add_parser("predict-batch", help="a CSV of queries → the same CSV with predictions")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--queries", required=True, help="CSV: model_path,spec_path,target,batch,runtime")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_predictor_predict_batch)
    p = predictor.add_parser("versions", help="the coordinator's predictor versions and their evaluations")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _admin_options(p)
    p.set_defaults(func=cmd_predictor_versions)
    p = predictor.add_parser("retrain", help="train a new version on the coordinator's cells now")
    p.add_argument("--members", type=int, default=0)
    p.add_argument("--epochs", type=int, default=0)
    _admin_options(p)
    p.set_defaults(func=cmd_predictor_retrain)
    p = predictor.add_parser("publish", help="make a checkpoint of `predictor train` the coordinator's newest version")
    p.add_argument("checkpoint")
    _admin_options(p)
    p.set_defaults(func=cmd_predictor_publish)
    p = predictor.add_parser("ask", help="the coordinator's predictor, for a registered model")
    p.add_argument("--spec", required=True)
    p.add_argument("--model", required=True, help="a registered model's name or sha256 prefix")
    query_setting(p)
    p.add_argument("--version", type=int, default=0, help="0: the newest")
    _admin_options(p)
    p.set_defaults(func=cmd_predictor_ask)
    p = sub.add_parser("predict", help="latency of ONNX models on a device, from its spec sheet alone")
    p.add_argument("--checkpoint", help="from `predictor train` (default: the one `edgeatlas demo` trains)")
    p.add_argument("--spec", required=True, help="spec sheet (edgeatlas.spec/v1, YAML or JSON)")
    p.add_argument("--model", action="append", required=True,
                   help="ONNX model, GGUF file or transformer config.json (repeatable)")
    query_setting(p)
    p.add_argument("--json", action="store_true", help="one JSON object (a list for several models)")
    p.add_argument("--plot", help="write a Pareto plot of the models (PNG)")
    p.set_defaults(func=cmd_predict)

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
    _run_options(p, iterations=100, duration=1.0)
    p.add_argument("--mechanism", choices=["gaussian", "laplace"], default="gaussian")
    p.add_argument("--epsilon", type=float,
                   help="ε per report (default 1); federated-train: per measurement over the run (default 8)")
    p.add_argument("--delta", type=float, default=1e-6, help="δ per report (gaussian)")
    p.add_argument("--statistics", nargs="+", default=["log_p50_ms", "log_p99_ms", "log_mean_ms"])
    p.add_argument("--bounds-ms", default="0.01:10000", help="public latency bounds LO:HI, milliseconds")
    p.add_argument("--target-precision", type=float, default=0.0,
                   help="e.g. 0.1: report how many more devices each cell needs for ±10 %%")
    _admin_options(p)
    p.set_defaults(func=cmd_campaign_create)
    for name, func in (("status", cmd_campaign_status), ("cancel", cmd_campaign_cancel),
                       ("pause", cmd_campaign_pause), ("resume", cmd_campaign_resume)):
        p = campaign.add_parser(name)
        p.add_argument("id", type=int)
        _admin_options(p)
        p.set_defaults(func=func)
    p = campaign.add_parser("list")
    _admin_options(p)
    p.set_defaults(func=cmd_campaign_list)

    agents = sub.add_parser("agents").add_subparsers(dest="sub", required=True)
    p = agents.add_parser("list")
    _admin_options(p)
    p.set_defaults(func=cmd_agents_list)
    p = agents.add_parser("revoke", help="an agent's credential stops working")
    p.add_argument("agent_id")
    _admin_options(p)
    p.set_defaults(func=cmd_agents_revoke)

    fleet = sub.add_parser("fleet").add_subparsers(dest="sub", required=True)
    p = fleet.add_parser("simulate", help="virtual agents from a catalog of real devices; all marked simulated")
    p.add_argument("--agents", type=int, required=True)
    _enroll_options(p)
    p.add_argument("--catalog", help="YAML list of spec sheets (default: the bundled catalog)")
    p.add_argument("--once", action="store_true", help="stop when no agent has work left")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_fleet_simulate)

    p = sub.add_parser("heatmap", help="the model × hardware heat-map")
    p.add_argument("--metric", help="one metric as a matrix, e.g. latency_p50_ms")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--target-precision", type=float, default=0.0, help="show devices needed for ±this")
    _admin_options(p)
    p.set_defaults(func=cmd_heatmap)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except errors.Unavailable as exc:
        print(f"edgeatlas: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except errors.EdgeAtlasError as exc:
        print(f"edgeatlas: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("edgeatlas: interrupted", file=sys.stderr)
        return 130
