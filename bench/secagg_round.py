"""A secure round's cost: time, bytes per device, and the coordinator's unmasking, for N devices.

A real coordinator process on 127.0.0.1 (SQLite, its own log) and N asyncio clients in this process,
each a device speaking the real protocol over real sockets (agent/secagg.py): enroll, lease the secure
campaign's one task, report it (no values), take the round's invitation, and run its four stages. A
share --dropout of the devices (20 %) vanish after key exchange, with their masked vector unsent, so the
coordinator rebuilds their masking keys (and the noise seeds of the survivors whose surplus noise it
takes out: 40 % of the cohort at 20 % dropout). A vanished device is noticed when its stage's deadline passes
(--stage-timeout, default max(10, N/4) s: the clients' own crypto, all in this process, must fit in
it), so the round's time includes one such wait. Printed per N: the round's wall time (first stage-1
call to the last answer), what one device sends (protobuf bytes of its four requests: mean and max), what the
coordinator received in all, its time to unmask (from its log), and the cells published. The clients
share this process's cores with the coordinator: the times are upper bounds of what N separate devices
would see.

    python bench/secagg_round.py [--devices 10 100 500] [--dropout 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from edgeatlas import __version__
from edgeatlas.agent.privacy.release import statistic_logs
from edgeatlas.agent.report import completed, new_report
from edgeatlas.agent.secagg import drive_async, participant_for, stages
from edgeatlas.agent.simulate import synthetic_stats
from edgeatlas.console.demo_plan import SECURE_PRODUCT  # the demo's cohort: one product, one hardware class
from edgeatlas.console.models import prepare, summary_json
from edgeatlas.console.zoo import build_zoo
from edgeatlas.protos import PROTOCOL_VERSION, convert
from edgeatlas.protos.admin_client import AdminClient
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.processes import stop
from edgeatlas.protos.records import Fidelity, RunParams, RunResult, ScenarioOutcome, Setting
from edgeatlas.protos.wire import CHANNEL_OPTIONS, bearer
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc


class Vanished(Exception):
    """A device that drops out after key exchange."""


async def device(stub, token: str, i: int, drops: bool, sent: list[int], stamps: list[float]) -> str:
    import random

    resp = await stub.Enroll(agent_pb2.EnrollRequest(
        protocol_version=PROTOCOL_VERSION, enrollment_token=token, spec_json=json.dumps(SECURE_PRODUCT),
        agent_version=__version__, name=f"bench-{i}", simulated=True), timeout=120)
    md = bearer(resp.credential)
    task = None
    while task is None:
        lease = await stub.LeaseTask(agent_pb2.LeaseTaskRequest(protocol_version=PROTOCOL_VERSION, wait_s=10),
                                     metadata=md, timeout=120)
        task = lease.task if lease.has_task else None
    ran = Setting(target="cpu", runtime="simulated", runtime_version=__version__, execution_provider="simulated",
                  batch=1, threads=0, precision="fp32", scenario="single-stream")
    result = RunResult(setting=ran, stats=synthetic_stats(random.lognormvariate(3, 0.2), 1, random.Random(i)),
                       fidelity=Fidelity(), valid=True, outcome=ScenarioOutcome(driver="native", verdict="VALID"))
    privacy = convert.privacy_from_pb(task.privacy)
    await stub.Report(completed(new_report(task, trusted=False), result, privacy), metadata=md, timeout=120)
    held = {(task.model.sha256, ran.key()): statistic_logs(result.stats, privacy)}
    while True:
        lease = await stub.LeaseTask(agent_pb2.LeaseTaskRequest(protocol_version=PROTOCOL_VERSION, wait_s=10),
                                     metadata=md, timeout=120)
        if lease.task.HasField("secure_round"):
            invite = lease.task.secure_round
            break

    async def call(request):
        if drops and request.stage == 3:
            raise Vanished
        sent[i] += request.ByteSize()
        stamps.append(time.perf_counter())
        answer = await stub.SecureRound(request, metadata=md, timeout=request.wait_s + 60)
        stamps.append(time.perf_counter())
        return answer

    try:
        return await drive_async(stages(participant_for(invite, held), invite, lambda: None), call)
    except Vanished:
        return "vanished"


async def round_of(address: str, token: str, admin: AdminClient, model: str, n: int, dropout: float) -> dict:
    sent, stamps = [0] * n, []
    drops = set(range(0, n, max(1, round(1 / dropout)))) if dropout > 0 else set()
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        waiting = [asyncio.ensure_future(device(stub, token, i, i in drops, sent, stamps)) for i in range(n)]
        while len(admin.list_agents()) < n:
            await asyncio.sleep(0.2)
        await asyncio.to_thread(admin.create_campaign, [model], {}, 1, Setting(), RunParams(), "bench",
                                PrivacyParams(mode="secure", cohort_min=n))
        outcomes = await asyncio.gather(*waiting)
    kept = [sent[i] for i in range(n) if i not in drops]
    return {"outcomes": outcomes, "round_s": max(stamps) - min(stamps), "bytes_mean": sum(kept) / len(kept),
            "bytes_max": max(kept), "dropped": len(drops)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--stage-timeout", type=float, help="seconds (default: max(10, N/4))")
    args = parser.parse_args()
    print(f"{'N':>5} {'dropped':>7} {'timeout':>7} {'round s':>8} {'bytes/device':>12} {'max':>8} {'coordinator in':>14} "
          f"{'unmask s':>8}  outcome")
    for n in args.devices:
        with tempfile.TemporaryDirectory(prefix="secagg-bench-") as tmp:
            work = Path(tmp)
            ready = work / "ready.json"
            log = work / "coordinator.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgeatlas", "coordinator", "serve", "--db", f"sqlite:///{work / 'c.db'}",
                 "--listen", "127.0.0.1:0", "--tokens-file", str(work / "tokens.json"), "--ready-file", str(ready),
                 "--k-anonymity", "2", "--enroll-rate", "1000000", "--report-rate", "100000",
                 "--secure-stage-timeout", str(args.stage_timeout or max(10.0, n / 4))],
                stdout=log.open("ab"), stderr=subprocess.STDOUT)
            try:
                while not ready.exists():
                    if proc.poll() is not None:
                        sys.exit(log.read_text())
                    time.sleep(0.1)
                address = json.loads(ready.read_text())["address"]
                tokens = json.loads((work / "tokens.json").read_text())
                model = prepare(build_zoo(work / "zoo", ["mlp-s"])[0])
                with AdminClient(address, tokens["admin_token"]) as admin:
                    admin.add_model(model.path, model.name, model.reference_npz, summary_json(model), model.format,
                                    model.inputs_json)
                    r = asyncio.run(round_of(address, tokens["enroll_token"], admin, model.name, n, args.dropout))
                text = log.read_text()
                unmask = re.search(r"unmasked in ([\d.]+) s, (\d+) bytes received", text)
                outcome = next((o for o in r["outcomes"] if o != "vanished"), "")
                print(f"{n:5d} {r['dropped']:7d} {args.stage_timeout or max(10.0, n / 4):7g} {r['round_s']:8.2f} {r['bytes_mean']:12,.0f} {r['bytes_max']:8,d} "
                      f"{int(unmask.group(2)) if unmask else 0:14,d} {float(unmask.group(1)) if unmask else float('nan'):8.3f}"
                      f"  {outcome}", flush=True)
            finally:
                stop([proc])


if __name__ == "__main__":
    main()
