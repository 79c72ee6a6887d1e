"""`edgeatlas demo`: a coordinator, the zoo, agents as separate processes, a campaign, the heat-map.

Everything runs on 127.0.0.1 in child processes that this process starts and stops by PID.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgeatlas.agent.privacy.ledger import Budget, Ledger
from edgeatlas.console.demo_plan import (CAMPAIGN_TIMEOUT_S, EXAMPLE_SPEC, NB201_MODELS, PRIVACY, SECURE_PRODUCT,
                                         START_TIMEOUT_S, TARGET_PRECISION, DEMO_REAL_LLMS, DEMO_REAL_ZOO,
                                         DEMO_PREDICTOR, DEMO_ZOO_INT8, DEMO_ZOO_NETWORKS, DemoCampaign,
                                         campaign_plan)
from edgeatlas.protos.errors import EdgeAtlasError, Unavailable
from edgeatlas.protos.processes import stop
from edgeatlas.protos.records import RunParams, Setting

@dataclass
class DemoOptions:
    workdir: Path
    agents: int = 2
    iterations: int = 50
    duration_s: float = 0.5
    keep: bool = False
    simulated: int = 24  # virtual devices beside the real agents (0: none)
    secure_cohort: int = 100  # virtual devices of one product whose values a secure round sums (0: none)
    dashboard: bool = True
    stay: bool = False  # keep the coordinator and the dashboard up until Ctrl-C
    federated: bool = True  # the agents opt in, and a federated-train campaign runs (needs the federated extra)


SECURE_TIMEOUT_S = 120.0  # for the cohort's round to publish after its campaign


def federated_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("flwr", "opacus", "torch"))


def say(text: str = "") -> None:
    print(text, flush=True)


class Children:
    """Processes this demo started; stopped by PID, politely first."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "edgeatlas", *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)  # Ctrl-C reaches the demo, which stops them
        self.procs.append((name, proc))
        return proc

    def stop_all(self, grace_s: float = 10.0) -> None:
        names = {proc.pid: name for name, proc in self.procs}
        stop([proc for _, proc in self.procs], grace_s, on_kill=lambda proc: say(
            f"  {names[proc.pid]} (pid {proc.pid}) did not stop in {grace_s:.0f} s; killing it"))
        self.procs.clear()


class Demo:
    def __init__(self, options: DemoOptions):
        self.o = options
        self.dir = options.workdir.resolve()
        self.children = Children()
        self.requests: dict = {}  # model name → its input request (protos/inputs.py), for models and predict

    def run(self) -> int:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        # Ctrl-C must stop the demo even when it was started with SIGINT ignored (a background job of a
        # non-interactive shell, such as a CI script): Python then installs no handler of its own.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return self._run()
        except KeyboardInterrupt:
            say("\ninterrupted: stopping the demo's processes")
            return 130
        finally:
            self.children.stop_all()
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
            say("all demo processes stopped")

    def _run(self) -> int:
        from edgeatlas.protos.admin_client import AdminClient

        if self.dir.exists() and not self.o.keep:
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs = self.dir / "logs"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEATLAS_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        address, admin_token, superlink = self._start_coordinator()
        with AdminClient(address, admin_token) as admin:
            names, llms, nb201 = self._register_models(admin)
            agents = self._start_agents(admin, address, superlink)
            plan = campaign_plan(names, llms, self.o.iterations, self.o.duration_s, bool(self.o.simulated),
                                 self.o.secure_cohort)
            say(f"[4/7] campaign over {len(names)} models × {len(agents)} agents "
                f"(≥ {plan[0].params.min_iterations} iterations and ≥ {self.o.duration_s:g} s each, 1 thread)")
            finished = self._run_campaigns(admin, plan)
            judged = [c for step, c in zip(plan, finished) if step.in_verdict]
            local = self._results(admin, llms, nb201, judged)
            if self.o.secure_cohort:
                self._secure(admin)
            if superlink:
                self._federated(admin, len(agents))
        self._predictor(local, names, address, admin_token)
        self._where()
        ok = all(c.status == "done" and c.counts.done > 0 for c in judged)
        if self.dashboard_url and self.o.stay:
            self._stay(address)
        return 0 if ok else 1

    def _start_coordinator(self) -> tuple[str, str, str]:
        """Step 1: the coordinator (and its SuperLink where federated training can run) and the dashboard;
        (address, admin token, SuperLink address or '')."""
        db = self.dir / "coordinator.db"
        say(f"[1/7] starting the coordinator (SQLite at {db})")
        ready = self.dir / "coordinator.json"
        ready.unlink(missing_ok=True)
        federated = self.o.federated and federated_installed()
        scratch = self.dir / "tmp"
        scratch.mkdir(exist_ok=True)
        coordinator = self.children.start("coordinator", [
            "coordinator", "serve", "--db", f"sqlite:///{db}", "--listen", "127.0.0.1:0",
            "--tokens-file", str(self.dir / "tokens.json"), "--ready-file", str(ready),
            "--enroll-rate", "1000",  # the simulated fleets enroll over a hundred devices from one address
            "--secure-stage-timeout", "60",  # the cohort's 100 devices share one process and its cores
            *(["--superlink", "127.0.0.1:0"] if federated else [])], self.logs / "coordinator.log",
            dict(self.env, TMPDIR=str(scratch)))  # the SuperLink's state and logs, gone with the next demo
        address = self._wait_ready(coordinator, ready, self.logs / "coordinator.log")
        superlink = json.loads(ready.read_text()).get("superlink", "")
        if superlink:
            say(f"      and a Flower SuperLink on {superlink} for federated training")
        self.tokens = json.loads((self.dir / "tokens.json").read_text())
        say(f"      listening on {address} (pid {coordinator.pid})")
        self.dashboard_url = self._dashboard(address, self.tokens["admin_token"], self.env, self.logs)
        return address, self.tokens["admin_token"], superlink

    def _register_models(self, admin) -> tuple[list[str], list[str], list[str]]:
        """Step 2: the zoo and NAS-Bench-201 networks with their published latencies; (ONNX, LLM, NB201) names."""
        from edgeatlas.console.imports import import_nasbench201

        say(f"[2/7] building the model zoo in {self.dir / 'zoo'} and registering it")
        names, llms = self._zoo(admin)
        say("      and NAS-Bench-201 networks with latencies published for 12 real devices")
        nb201 = import_nasbench201(admin, None, NB201_MODELS, self.dir / "zoo", say)
        return names + nb201, llms, nb201

    def _start_agents(self, admin, address: str, superlink: str) -> list:
        """Step 3: real agents as processes of their own, and the simulated fleet; the real agents, enrolled."""
        say(f"[3/7] starting {self.o.agents} agents as separate processes")
        agent_env = dict(self.env, EDGEATLAS_ENROLL_TOKEN=self.tokens["enroll_token"])
        for i in range(1, self.o.agents + 1):
            name = f"agent-{i}"
            proc = self.children.start(name, [
                "agent", "run", "--coordinator", address, "--state-dir", str(self.dir / "agents" / name),
                "--name", name, "--label", "demo=true",
                *(["--federated", "--superlink", superlink] if superlink else [])], self.logs / f"{name}.log",
                agent_env)
            say(f"      {name} (pid {proc.pid})")
        agents = self._wait_enrolled(admin)
        say(f"      enrolled: {', '.join(f'{a.name} → {a.hardware_class}' for a in agents)}")
        self.hardware_class = agents[0].hardware_class
        if self.o.simulated:
            proc = self.children.start("simulated fleet", [
                "fleet", "simulate", "--agents", str(self.o.simulated), "--coordinator", address,
                "--duration", str(int(CAMPAIGN_TIMEOUT_S))], self.logs / "simulated-fleet.log", agent_env)
            say(f"      and a simulated fleet of {self.o.simulated} virtual devices from a catalog of real "
                f"products (pid {proc.pid}; synthetic numbers, marked simulated)")
        if self.o.secure_cohort:
            catalog = self.dir / "secure-cohort.yaml"
            catalog.write_text(json.dumps([SECURE_PRODUCT]))  # YAML reads JSON
            proc = self.children.start("secure cohort", [
                "fleet", "simulate", "--agents", str(self.o.secure_cohort), "--coordinator", address,
                "--catalog", str(catalog), "--label", "cohort=secure", "--truth-file",
                str(self.dir / "secure-truth.json"), "--duration", str(int(CAMPAIGN_TIMEOUT_S)), "--seed", "1"],
                self.logs / "secure-cohort.log", agent_env)
            say(f"      and a cohort of {self.o.secure_cohort} simulated {SECURE_PRODUCT['name']}s for a secure "
                f"round (pid {proc.pid})")
        if self.o.simulated or self.o.secure_cohort:
            self._wait_simulated(admin)
        return agents

    def _run_campaigns(self, admin, plan: list["DemoCampaign"]) -> list:
        """Step 4: every campaign of the plan created at once, then followed to its end; their final states."""
        created = []
        for step in plan:
            if step.note:
                say(step.note)
            created.append(admin.create_campaign(step.models, step.selectors, 1, step.setting, step.params,
                                                 name=step.name, privacy=step.privacy,
                                                 target_precision=step.target_precision))
        return [self._follow(admin, c.campaign_id) for c in created]

    def _results(self, admin, llms: list[str], nb201: list[str], judged: list):
        """Step 5: this machine's exact results, the coordinator's private cells, the published and simulated
        ones beside them, the privacy each agent spent, and the judged campaigns' failures; this machine's
        heat-map."""
        from edgeatlas.console import views
        from edgeatlas.v1 import admin_pb2

        say("[5/7] results")
        local = self._on_device()
        say("on this machine: exact values, kept on each agent's device (never sent to the coordinator):")
        say(views.summary(local))
        say("")
        heatmap = admin.heatmap(target_precision=TARGET_PRECISION)
        fleet = [c for c in heatmap.cells if c.source not in ("imported", "simulated")]
        say(f"what the coordinator holds: each report noised on the device ({PRIVACY.describe()}); a cell")
        say(f"shows values once k = {fleet[0].min_devices if fleet else '?'} distinct devices contributed; "
            f"'needed' = more devices for ±{TARGET_PRECISION:.0%}:")
        say(views.summary(admin_pb2.Heatmap(cells=fleet)))
        say("")
        say("this machine beside published measurements of the same networks (mean latency):")
        say(views.by_hardware(admin_pb2.Heatmap(cells=list(local.cells) + [
            c for c in heatmap.cells if c.source == "imported"]), "latency_mean_ms", nb201))
        cited = next((c.citation for c in heatmap.cells if c.citation), "")
        if cited:
            say(f"  imported: {cited}")
        llm_cells = [c for c in list(local.cells) + [c for c in heatmap.cells if c.source == "simulated"]
                     if "ttft_ms" in c.metrics]
        if llm_cells:
            say("LLMs (llama.cpp): time to first token (ms) here and on the simulated fleet:")
            say(views.by_hardware(admin_pb2.Heatmap(cells=llm_cells), "ttft_ms", llms))
            say("and decode tokens/s:")
            say(views.by_hardware(admin_pb2.Heatmap(cells=llm_cells), "decode_tps", llms))
        simulated = [c for c in heatmap.cells if c.source == "simulated" and "ttft_ms" not in c.metrics]
        if simulated:
            say("the simulated fleet (synthetic numbers from spec sheets, marked simulated, never mixed in):")
            say(views.by_hardware(admin_pb2.Heatmap(cells=simulated), "latency_p50_ms",
                                  sorted({c.model_name for c in simulated})))
        say("privacy spent (each device's own ledger, against its owner's budget):")
        for i in range(1, self.o.agents + 1):
            ledger = Ledger(self.dir / "agents" / f"agent-{i}" / "privacy-ledger.db", Budget())
            say(f"  agent-{i}: {len(ledger.entries())} releases, ε = {ledger.spent():.2f} "
                f"of {ledger.budget.epsilon:g} per {ledger.budget.window_s / 3600:g} h (δ = {ledger.budget.delta:g})")
            ledger.close()
        for failure in [f for c in judged for f in c.failures]:
            say(f"  note: {failure}")
        return local

    def _secure(self, admin) -> None:
        """The secure cohort's cells, once its round published, beside the synthetic values it summed."""
        from edgeatlas.console import views

        deadline = time.monotonic() + SECURE_TIMEOUT_S
        cells = []
        while time.monotonic() < deadline:
            cells = [c for c in admin.heatmap().cells if c.privacy.startswith("secure")]
            if cells:
                break
            time.sleep(1)
        truth_path = self.dir / "secure-truth.json"
        truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
        if not cells:
            say(f"no secure cell within {SECURE_TIMEOUT_S:.0f} s (see {self.logs / 'coordinator.log'})")
            return
        say("a secure round: the cohort's p50s summed under secure aggregation (the coordinator saw only the sum,")
        say("its noise shared among the devices), beside the synthetic values the devices held:")
        say(views.secure_cells(cells, truth))

    def _stay(self, address: str) -> None:
        """--stay: the coordinator and the dashboard serve until Ctrl-C (or until one of them ends)."""
        say(f"\nthe dashboard stays up at {self.dashboard_url} with the coordinator at {address}; "
            f"Ctrl-C stops both")
        serving = [proc for name, proc in self.children.procs if name in ("coordinator", "dashboard")]
        try:
            while all(proc.poll() is None for proc in serving):
                time.sleep(1)
        except KeyboardInterrupt:  # the way out of --stay, not a failure
            say("")

    def _dashboard(self, address: str, admin_token: str, env: dict[str, str], logs: Path) -> str:
        """Starts `edgeatlas dashboard` beside the coordinator; its URL, or '' where it cannot run."""
        if not self.o.dashboard:
            return ""
        from edgeatlas.dashboard.serve import installed

        if not installed():
            say('      (no dashboard: install the dashboard extra, pip install "edgeatlas[dashboard]")')
            return ""
        ready = self.dir / "dashboard.json"
        ready.unlink(missing_ok=True)
        proc = self.children.start("dashboard", ["dashboard", "--coordinator", address, "--port", "0",
                                                 "--ready-file", str(ready)], logs / "dashboard.log",
                                   dict(env, EDGEATLAS_ADMIN_TOKEN=admin_token))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                say(f"      (the dashboard did not start; see {logs / 'dashboard.log'})")
                return ""
            time.sleep(0.2)
        url = json.loads(ready.read_text())["url"]
        say(f"      dashboard: {url} (pid {proc.pid}); its pages fill as the demo goes on")
        return url

    def _predictor(self, local, names: list[str], address: str, admin_token: str) -> None:
        """Trains a small predictor on the bundled sample and asks it about this machine and a typed sheet."""
        from edgeatlas.console.fingerprints import bracketed, time_alone
        from edgeatlas.console.fingerprints import measure as measure_fingerprint
        from edgeatlas.predictor.commands import predict, train
        from edgeatlas.predictor.data import cache_dir
        from edgeatlas.predictor.datasets import fbnet
        from edgeatlas.predictor.datasets.nasbench201 import SAMPLE_DIR
        from edgeatlas.predictor.models import TrainConfig

        from edgeatlas.console.zoo import measure_family

        say("[7/7] the cost predictor: latency from a spec sheet alone, trained on published measurements and "
            f"on {DEMO_ZOO_NETWORKS} other networks timed here in ONNX Runtime (none of the models above)")
        zoo_here = self.dir / "zoo-here"
        shutil.rmtree(zoo_here, ignore_errors=True)
        measure_family(zoo_here, DEMO_ZOO_NETWORKS, [1], [1], say=lambda _: None, int8_share=DEMO_ZOO_INT8)
        checkpoint = self.dir / "predictor.pt"
        train([str(SAMPLE_DIR), str(fbnet.SAMPLE_DIR), str(zoo_here)], str(checkpoint),
              TrainConfig(**DEMO_PREDICTOR), lambda text: say(f"      {text.strip()}"))
        default = cache_dir() / "default.pt"
        default.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(checkpoint, default)
        sheets = {"this machine": self.dir / "this_machine.yaml", "Raspberry Pi 5": self.dir / "raspberry_pi_5.yaml"}
        # the sheet the zoo above was measured with: probed again minutes later, a shared machine's bandwidth
        # may read as other hardware's (`predictor.models.BANDWIDTH_REMEASURED`)
        shutil.copy(zoo_here / "specs" / "here.yaml", sheets["this machine"])
        sheets["Raspberry Pi 5"].write_text(EXAMPLE_SPEC)
        campaign = {c.model_name: c.metrics["latency_mean_ms"].value for c in local.cells
                    if "latency_mean_ms" in c.metrics}
        zoo = [n for n in names if (self.dir / "zoo" / f"{n}.onnx").is_file()][:8]
        models = [str(self.dir / "zoo" / f"{n}.onnx") for n in zoo]
        requests = {m: self.requests.get(Path(m).stem) for m in models}
        say("      this machine's fingerprint: the predictor's reference networks, measured here now the campaign "
            "is over (1 thread), before and after the models are timed alone")
        first = measure_fingerprint(self.dir / "fingerprint", 1, "CPUExecutionProvider")
        # The campaign timed its cells with two agents and the simulated fleets sharing the cores; the answers
        # are for this machine alone, as the fingerprint was measured: the models are timed again that way.
        measured = {}
        for name, model in zip(zoo, models):
            try:
                measured[name] = time_alone(Path(model), 1, requests[model])
            except EdgeAtlasError as exc:
                say(f"      {name}: not timed alone ({exc})")
        # A shared machine drifts: its memory-bound reference networks ran ×1.9 slower in one demo than in the
        # run before, and every answer came out that much off. Two passes around the timings answer for them.
        fingerprint = bracketed(first, measure_fingerprint(self.dir / "fingerprint", 1, "CPUExecutionProvider"),
                                lambda text: say(f"      {text}"))
        fingerprint.save(self.dir / "fingerprint.json")
        answers = {}
        for label, sheet, threads, fp in (("fingerprint", sheets["this machine"], 1, fingerprint),
                                          ("this machine", sheets["this machine"], 1, None),
                                          ("Raspberry Pi 5", sheets["Raspberry Pi 5"], 0, None)):
            try:
                answers[label] = predict(str(checkpoint), str(sheet), models, "cpu", 1, threads, "onnxruntime",
                                         requests, fp)
            except EdgeAtlasError as exc:
                say(f"      {label}: no prediction ({exc})")

        def cell(a) -> str:
            return f"{a['latency_ms']:.3g} ms ({a['latency_ms_low']:.3g}–{a['latency_ms_high']:.3g})" if a else "—"

        def ms(values: dict, name: str) -> str:
            return f"{values[name]:.3g} ms" if name in values else "—"

        say(f"      {'model':14} {'campaign cell':>13} {'measured alone':>14} {'predicted, fingerprint (80 %)':>31} "
            f"{'no fingerprint (80 %)':>28} {'Raspberry Pi 5 (typed sheet)':>30}")
        for i, name in enumerate(zoo):
            row = {label: answers.get(label, [None] * len(zoo))[i] for label in answers}
            say(f"      {name:14} {ms(campaign, name):>13} {ms(measured, name):>14} {cell(row.get('fingerprint')):>31} "
                f"{cell(row.get('this machine')):>28} {cell(row.get('Raspberry Pi 5')):>30}")
        for label, text in (("fingerprint", "with this machine's fingerprint"),
                            ("this machine", "without a fingerprint")):
            pairs = [(a, measured[n]) for n, a in zip(zoo, answers.get(label, [])) if n in measured]
            if pairs:
                mape = 100 * sum(abs(a["latency_ms"] - m) / m for a, m in pairs) / len(pairs)
                inside = sum(a["latency_ms_low"] <= m <= a["latency_ms_high"] for a, m in pairs)
                say(f"      {text}: error {mape:.0f} % on average over the {len(pairs)} models measured alone; "
                    f"the 80 % interval holds {inside} of them")
        ratios = [math.log(campaign[n] / measured[n]) for n in measured if n in campaign]
        if ratios:
            say(f"      (the campaign's cells took ×{math.exp(sum(ratios) / len(ratios)):.2f} the time alone on "
                f"average: two agents and the simulated fleets shared the cores)")
        if answers.get("fingerprint"):
            say(f"      (calibrated: {answers['fingerprint'][0]['fingerprint']})")
        say(f"      (trained on PyTorch and TFLite timings of NAS-Bench-201 and FBNet networks and on {zoo_here}: "
            f"this machine, ONNX Runtime, other networks; the models above were never in training)")
        say(f"      ask it yourself: edgeatlas predict --spec {sheets['Raspberry Pi 5']} "
            f"--model {models[0] if models else 'MODEL.onnx'}  (checkpoint: {default}); here, with the "
            f"fingerprint: --spec {sheets['this machine']} --threads 1 --fingerprint {self.dir / 'fingerprint.json'}")
        from edgeatlas.protos.admin_client import AdminClient

        with AdminClient(address, admin_token) as admin:
            version = admin.publish_predictor(checkpoint.read_bytes())
        say(f"      published to the coordinator as predictor v{version.version}: the dashboard's Predictor and "
            f"Compare pages use it")

    def _federated(self, admin, devices: int) -> None:
        """A federated-train campaign on the agents: DP-SGD on what each measured, FedAvg on the SuperLink."""
        from edgeatlas.v1 import admin_pb2

        say(f"[6/7] federated training: the {devices} agents train the predictor's GNN on their own exact results "
            "(DP-SGD, Opacus); only clipped, noised weights leave them (Flower)")
        c = admin.create_campaign([], {}, 1, Setting(), RunParams(), name="demo-federated",
                                  federated=admin_pb2.Federated(devices=devices, rounds=2, epsilon=8.0))
        deadline = time.monotonic() + CAMPAIGN_TIMEOUT_S
        while c.status == "running" and time.monotonic() < deadline:
            time.sleep(2)
            c = admin.campaign(c.campaign_id)
        for r in c.federated_rounds:
            say(f"      round {r.round}: the devices' loss {r.loss_before:.3f} → {r.loss_after:.3f}; privacy spent: "
                f"ε = {r.epsilon_measurement:.2f} per measurement (δ = 1e-5), {r.epsilon_device:.0f} per device")
        if c.predictor_version:
            version = next(v for v in admin.predictor_versions() if v.version == c.predictor_version)
            gnn = json.loads(version.evaluation_json).get("gnn", {})
            say(f"      → predictor v{c.predictor_version}, scored on networks it never saw: GNN MAPE "
                f"{gnn.get('mape', float('nan')):.0f} % (a toy: {devices} devices, a few measurements each)")
        else:
            say(f"      (no version: {c.stop_reason or c.status})")

    def _on_device(self):
        """The agents' own exact results (the owner's view; it runs on the same machine), as heat-map cells."""
        from collections import defaultdict

        from edgeatlas.agent.results import LocalResults
        from edgeatlas.coordinator import aggregate
        from edgeatlas.protos import convert
        from edgeatlas.protos.records import LatencyStats
        from edgeatlas.v1 import admin_pb2

        runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for i in range(1, self.o.agents + 1):
            for r in LocalResults(self.dir / "agents" / f"agent-{i}" / "results.jsonl").all():
                if r["valid"]:
                    runs[(r["model"], json.dumps(r["setting"], sort_keys=True))].append(r)
        cells = []
        for (model, setting_json), rs in sorted(runs.items()):
            setting = Setting(**json.loads(setting_json))
            metrics = {}
            values = [aggregate.metric_values(LatencyStats(**r["stats"]), r.get("figures")) for r in rs]
            for metric in values[0]:
                n = s = ss = 0.0
                for v in values:
                    if metric in v:
                        n, s, ss = aggregate.fold(n, s, ss, v[metric])
                e = aggregate.estimate(int(n), s, ss)
                metrics[metric] = admin_pb2.MetricValue(value=e.value, low=e.low, high=e.high, n=e.n)
            cells.append(admin_pb2.HeatmapCell(
                model_name=model, hardware_class=self.hardware_class, setting_key=setting.key(),
                setting=convert.setting_to_pb(setting), n_devices=len(rs), n_reports=len(rs),
                source="on-device", privacy="exact, on the device", metrics=metrics))
        return admin_pb2.Heatmap(cells=cells)

    def _wait_ready(self, proc: subprocess.Popen, ready: Path, log: Path) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready.exists():
                return json.loads(ready.read_text())["address"]
            if proc.poll() is not None:
                tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
                raise Unavailable(f"the coordinator exited with code {proc.returncode}: {' '.join(tail)}")
            time.sleep(0.1)
        raise Unavailable(f"the coordinator did not start within {START_TIMEOUT_S:.0f} s (see {log})")

    def _zoo(self, admin) -> tuple[list[str], list[str]]:
        """(ONNX model names, GGUF model names) registered; no GGUF where llama-cpp-python is missing."""
        from edgeatlas.console.gguf_zoo import build_gguf_zoo
        from edgeatlas.console.models import prepare, summary_json

        import importlib.util

        paths = []
        if importlib.util.find_spec("llama_cpp") is None:
            say('      (no LLMs: llama-cpp-python is not installed, pip install "edgeatlas[llm]")')
        else:  # a toy that answers in milliseconds, and a real-size LLM as it is shipped (Q4_K_M)
            paths = build_gguf_zoo(self.dir / "zoo", ["llama-s"]) + self._cached_real(DEMO_REAL_LLMS)
        names, llms = [], []
        for path in self._onnx_zoo() + paths:
            prepared = prepare(path, path.stem, self.requests.get(path.stem))
            admin.add_model(path, prepared.name, prepared.reference_npz, summary_json(prepared), prepared.format,
                            prepared.inputs_json)
            s = prepared.summary
            unit = "MFLOP/token" if prepared.format == "gguf" else "MFLOP"
            say(f"      {prepared.name:14} {s['parameters']:>10,} params {s['flops'] / 1e6:8.1f} {unit:11} "
                f"{prepared.sha256[:12]}")
            (llms if prepared.format == "gguf" else names).append(prepared.name)
        return names, llms

    def _onnx_zoo(self) -> list:
        """The real architectures (cached between runs: a cold build takes about ten seconds) where
        edgeatlas[zoo] is installed; the hand-made toys otherwise. Their input flags go to `self.requests`."""
        import importlib.util

        if importlib.util.find_spec("transformers") is None:
            from edgeatlas.console.zoo import build_zoo

            say('      (the hand-made toy zoo: pip install "edgeatlas[zoo]" for ResNet, MobileNet, EfficientNet, '
                'ViT and BERT)')
            return build_zoo(self.dir / "zoo")
        from edgeatlas.console.real_zoo import flags_of
        from edgeatlas.protos.inputs import request_from_argv

        paths = self._cached_real(DEMO_REAL_ZOO)
        for path in paths:
            self.requests[path.stem] = request_from_argv(flags_of(path.stem))
        return paths

    def _cached_real(self, names: list[str]) -> list:
        """Real-zoo models built once into the user's cache, copied beside the demo's other files (where
        `predict` and the README look for them)."""
        from edgeatlas.console.real_zoo import build_real_zoo
        from edgeatlas.predictor.data import cache_dir

        paths = []
        for path in build_real_zoo(cache_dir() / "real-zoo", names, say=say):
            (self.dir / "zoo").mkdir(parents=True, exist_ok=True)
            target = self.dir / "zoo" / path.name
            shutil.copy(path, target)
            paths.append(target)
        return paths

    def _wait_simulated(self, admin) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while sum(a.simulated for a in admin.list_agents()) < self.o.simulated + self.o.secure_cohort:
            if time.monotonic() > deadline:
                raise Unavailable(f"the simulated fleet did not enroll within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.2)

    def _wait_enrolled(self, admin):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            agents = [a for a in admin.list_agents() if a.name.startswith("agent-")]
            if len(agents) >= self.o.agents:
                return agents
            for name, proc in self.children.procs:
                if proc.poll() is not None:
                    raise Unavailable(f"{name} exited with code {proc.returncode} (see {self.dir / 'logs'})")
            time.sleep(0.2)
        raise Unavailable(f"agents did not enroll within {START_TIMEOUT_S:.0f} s (see {self.dir / 'logs'})")

    def _follow(self, admin, campaign_id: int):
        deadline = time.monotonic() + CAMPAIGN_TIMEOUT_S
        last = None
        tty = sys.stdout.isatty()
        while True:
            c = admin.campaign(campaign_id)
            n = c.counts
            total = n.pending + n.leased + n.done + n.failed + n.cancelled
            finished = n.done + n.failed + n.cancelled
            bar = "#" * round(30 * finished / max(total, 1))
            line = f"      [{bar:30}] {finished}/{total} tasks, {n.leased} running, {n.failed} failed"
            if line != last:
                print(("\r" if tty else "") + line, end="" if tty else "\n", flush=True)
                last = line
            if c.status != "running":
                if tty:
                    print(flush=True)
                return c
            if time.monotonic() > deadline:
                raise Unavailable(f"campaign {campaign_id} did not finish within {CAMPAIGN_TIMEOUT_S:.0f} s")
            time.sleep(0.5)

    def _where(self) -> None:
        say("")
        say("where the data lives:")
        say(f"  database        {self.dir / 'coordinator.db'} (SQLite, WAL)")
        say(f"  models          {self.dir / 'zoo'} (and in the database, by sha256)")
        say(f"  agents' state   {self.dir / 'agents'} (credential, model cache, outbox)")
        say(f"  logs            {self.dir / 'logs'}")
        say(f"  admin token     {self.dir / 'tokens.json'}")
        if self.dashboard_url:
            say(f"  dashboard       {self.dashboard_url}  (heat-map, fleet, campaigns, predictor, compare)")
        say("to look again, start `edgeatlas coordinator serve --db "
            f"sqlite:///{self.dir / 'coordinator.db'}` and run `edgeatlas heatmap` or `edgeatlas dashboard` "
            "with EDGEATLAS_ADMIN_TOKEN from tokens.json")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
