"""`agent ...`: the device side (spec, run, service, privacy, bench), with only the agent extra."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path

from edgeatlas.console.cli.common import (check_positive, client_tls, enroll_options, enroll_token,
    input_options, input_request, key_values, run_options, say, scenario_setting, tls_options)
from edgeatlas.protos import errors
from edgeatlas.protos.wire import DEFAULT_SUPERLINK_PORT


def cmd_agent_spec(args) -> int:
    from edgeatlas.agent.probe import probe

    root = args.root or "/"
    if not Path(root).is_dir():
        raise errors.InvalidInput(f"--root {root} is not a directory")
    sources: dict[str, str] = {}
    spec = probe(root, measure_bandwidth=not args.no_bandwidth, sources=sources)
    say(spec.to_yaml().rstrip() if args.format == "yaml" else json.dumps(spec.data, indent=1))
    if args.explain:  # on stderr, so that the sheet on stdout stays one document
        print("# where each field came from (fields not listed: unknown, or read directly):", file=sys.stderr)
        for field in sorted(sources):
            print(f"#   {field}: {sources[field]}", file=sys.stderr)
    return 0


def cmd_agent_run(args) -> int:
    from edgeatlas.agent.loop import Agent, AgentConfig
    from edgeatlas.agent.probe import probe
    from edgeatlas.agent.state import StateDir, default_state_dir
    from edgeatlas.protos.wire import check_address

    check_address(args.coordinator)
    token = enroll_token(args)
    superlink = ""
    if args.federated:
        from edgeatlas.agent.federated import check_installed

        superlink = check_address(args.superlink or f"{args.coordinator.rpartition(':')[0]}:{DEFAULT_SUPERLINK_PORT}")
        check_installed()
    elif args.superlink:
        raise errors.InvalidInput("--superlink applies to --federated")
    config = AgentConfig(coordinator=args.coordinator, enroll_token=token,
                         state_dir=StateDir(args.state_dir or default_state_dir()), name=args.name or "",
                         labels=key_values(args.label, "--label"), once=args.once, trusted=args.trusted,
                         budget=_budget(args), tls=client_tls(args), etiquette=_etiquette(args), superlink=superlink)
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

    check_positive(privacy_budget=args.privacy_budget, privacy_window_hours=args.privacy_window_hours)
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
        say(service.systemd_unit(spec) if sys.platform.startswith("linux") else " ".join(spec.argv()))
        return 0
    done = service.install(spec, enroll_token(args), start=not args.no_start)
    say(f"{done.path}: {done.note}")
    return 0


def cmd_agent_uninstall_service(args) -> int:
    from edgeatlas.agent import service

    say(f"removed {service.uninstall()}")
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
    say(f"privacy budget: ε ≤ {b.epsilon:g} per {b.window_s / 3600:g} h at δ = {b.delta:g} (set by you)")
    say(f"spent in the window: ε = {spent:.3g}; {len(entries)} releases recorded in all "
        f"({sum(e['mode'] == 'trusted' for e in entries)} trusted, exact values)")
    return 0


def cmd_agent_bench(args) -> int:
    from edgeatlas.agent.meters import find_meter
    from edgeatlas.agent.runners import ModelFacts, make_runner
    from edgeatlas.agent.runners.onnxruntime import provider_target

    runtime = "llama.cpp" if args.model.lower().endswith(".gguf") else "onnxruntime"
    # A GGUF model's processor is its offload (--param gpu_layers), which its runner records.
    target = provider_target(args.provider) if runtime == "onnxruntime" else "cpu"
    setting, params = scenario_setting(args, execution_provider=args.provider, runtime=runtime, target=target)
    request = input_request(args)
    if runtime == "llama.cpp" and not request.empty:
        raise errors.InvalidInput("--input, --dim and --values are for ONNX models; a GGUF model's prompt "
                                  "and output lengths are --param prompt_tokens=N and output_tokens=N")
    runner = make_runner(args.model, setting, args.reference, ModelFacts(inputs=request))
    meter, absent = find_meter(runner.setting.target)
    result = runner.run(params, meter)
    if meter is None:
        result = dataclasses.replace(result, energy_absent=absent)
    from edgeatlas.console import views

    specs = getattr(runner, "specs", ())
    say(views.run_json(result, specs) if args.format == "json"
        else views.run_text(Path(args.model).name, result, specs))
    return 0


def cmd_agent_fingerprint(args) -> int:
    from edgeatlas.agent.state import StateDir, default_state_dir
    from edgeatlas.console.fingerprints import measure, state_fingerprint

    state = StateDir(args.state_dir or default_state_dir())
    say(f"measuring the reference networks here (ONNX Runtime, {args.provider}, threads {args.threads or 'default'})")
    fingerprint = measure(state.root, args.threads, args.provider, say)
    fingerprint.device = args.name or ""
    fingerprint.save(state_fingerprint(state.root))
    say(f"kept on this device: {state_fingerprint(state.root)}")
    if args.out:
        fingerprint.save(args.out)
        say(f"wrote {args.out} (yours to share: `edgeatlas predict --fingerprint {args.out}` uses it)")
    return 0


def cmd_agent_predict(args) -> int:
    from edgeatlas.agent.probe import probe
    from edgeatlas.agent.state import StateDir, default_state_dir
    from edgeatlas.console.cli.predictor import answer_lines, checkpoint_path
    from edgeatlas.console.fingerprints import state_fingerprint
    from edgeatlas.predictor.commands import predict
    from edgeatlas.predictor.fingerprint import Fingerprint

    state = StateDir(args.state_dir or default_state_dir())
    path = state_fingerprint(state.root)
    if not path.is_file():
        raise errors.InvalidInput(f"no fingerprint in {state.root}: measure one first (edgeatlas agent fingerprint)")
    fingerprint = Fingerprint.load(path)
    sheet = state.root / "spec.yaml"
    sheet.write_text(probe("/", measure_bandwidth=True).to_yaml())
    answers = predict(checkpoint_path(args.checkpoint), str(sheet), args.model, fingerprint.target,
                      fingerprint.batch, fingerprint.threads, fingerprint.runtime, input_request(args), fingerprint)
    say(json.dumps(answers[0] if len(answers) == 1 else answers) if args.json else "\n".join(answer_lines(answers)))
    return 0


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


def register(sub) -> None:
    agent = sub.add_parser("agent").add_subparsers(dest="sub", required=True)
    p = agent.add_parser("spec", help="print this device's spec sheet")
    p.add_argument("--root", help="read /proc and /sys under this directory instead")
    p.add_argument("--format", choices=["yaml", "json"], default="yaml")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the memory copy test")
    p.add_argument("--explain", action="store_true", help="say which file or rule gave each CPU field (stderr)")
    p.set_defaults(func=cmd_agent_spec)
    p = agent.add_parser("run", help="enroll, then pull and run tasks until stopped")
    enroll_options(p)
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
    tls_options(p)
    p.set_defaults(func=cmd_agent_run)
    p = agent.add_parser("install-service", help="run the agent in the background (systemd, launchd, Windows)")
    enroll_options(p)  # the token is kept in a file only you can read
    p.add_argument("--state-dir")
    p.add_argument("--name")
    p.add_argument("--trusted", action="store_true")
    _budget_options(p)
    _etiquette_options(p, busy=50.0, cooldown=5.0, clock=60.0)  # in the background: step aside, cool down
    tls_options(p)
    p.add_argument("--no-start", action="store_true", help="write the service, do not start it")
    p.add_argument("--print", action="store_true", help="print the service definition and stop")
    p.set_defaults(func=cmd_agent_install_service)
    p = agent.add_parser("uninstall-service", help="stop and remove the background agent")
    p.set_defaults(func=cmd_agent_uninstall_service)
    p = agent.add_parser("privacy", help="what this device has released, against its budget")
    p.add_argument("--state-dir")
    _budget_options(p)
    p.set_defaults(func=cmd_agent_privacy)
    p = agent.add_parser("fingerprint", help="measure this device's latencies on the predictor's reference networks")
    p.add_argument("--state-dir")
    p.add_argument("--threads", type=int, default=0, help="as the predictions you will ask for (0 = all cores)")
    p.add_argument("--provider", default="CPUExecutionProvider")
    p.add_argument("--name", help="a name for this device in the file")
    p.add_argument("--out", help="also write it here (it is kept in the state directory in any case)")
    p.set_defaults(func=cmd_agent_fingerprint)
    p = agent.add_parser("predict", help="predict a model's latency here, calibrated on this device's fingerprint")
    p.add_argument("--model", action="append", required=True, help="ONNX model, GGUF file or config.json")
    p.add_argument("--checkpoint", help="from `predictor train` (default: the one `edgeatlas demo` trains)")
    p.add_argument("--state-dir")
    input_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_agent_predict)
    p = agent.add_parser("bench", help="run one model here, without a coordinator")
    p.add_argument("model")
    run_options(p, iterations=100, duration=2.0)
    p.add_argument("--provider", default="CPUExecutionProvider")
    input_options(p)
    p.add_argument("--reference", help="reference data for the fidelity check: an .npz whose arrays are named "
                                       "input:NAME (the inputs at batch 1) and output:NAME (the outputs they give)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_agent_bench)

