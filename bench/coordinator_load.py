"""Coordinator load, side by side in one run: a bare grpc.aio server that acknowledges the same Report
messages and does nothing else (the ceiling of the stack), the coordinator on SQLite and on PostgreSQL.

1. 1,000 concurrent simulated agents: every agent leases a task, then all of them report at once; the
   reports are timed (the leases are not), for several rounds. Sustained reports/s, p50/p99 latency,
   and the ratio coordinator / bare.
2. 10,000 simulated agents heartbeating once a minute while 1,000 of them lease and report: p50/p99 of
   each call and the coordinator's RSS (SQLite).
3. The heat-map read (GetHeatmap over gRPC) with 1,000,000 stored reports (SQLite): the first read after
   a start, reads of unchanged cells, and reads each right after a round of reports folded into cells.

Every process is started here, on 127.0.0.1, and stopped by its PID.

    python bench/coordinator_load.py [--agents 1000] [--rounds 5] [--fleet 10000] [--reports 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' helpers that start and stop a coordinator and PostgreSQL

from edgeatlas.agent.simulate import load_catalog, synthetic_stats  # noqa: E402
from edgeatlas.protos import convert  # noqa: E402
from edgeatlas.protos.records import RunParams, Setting  # noqa: E402
from edgeatlas.protos.wire import CHANNEL_OPTIONS, bearer  # noqa: E402
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402

from tests.conftest import CoordinatorProcess, stop_pid  # noqa: E402

CHANNELS = 16  # the load generator's connections; agents are spread over them
RAN = Setting(target="cpu", runtime="simulated", runtime_version="0", execution_provider="simulated", threads=1,
              precision="fp32")


# ---- the bare server: the same Report message, acknowledged and nothing else --------------------
class BareAgentService(agent_pb2_grpc.AgentServiceServicer):
    async def Report(self, request, context):
        return agent_pb2.ReportResponse(accepted=True)


async def serve_bare(port_file: str) -> None:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(BareAgentService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    Path(port_file).write_text(str(port))
    await server.wait_for_termination()


def start_bare(tmp: Path) -> tuple[subprocess.Popen, str]:
    port_file = tmp / "bare.port"
    proc = subprocess.Popen([sys.executable, __file__, "--bare", str(port_file)])
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None:
            raise RuntimeError("the bare server did not start")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port_file.read_text()}"


# ---- the load -------------------------------------------------------------------------------------
def report_for(task: agent_pb2.Task | None, rng: random.Random) -> agent_pb2.ReportRequest:
    return agent_pb2.ReportRequest(
        report_id=uuid.uuid4().hex, task_id=task.task_id if task else 1, lease_id=task.lease_id if task else "x",
        status=agent_pb2.ReportRequest.OK, valid=True, privacy_mode="trusted", setting=convert.setting_to_pb(RAN),
        stats=convert.stats_to_pb(synthetic_stats(rng.uniform(1, 50), 1, rng)),
        started_ms=int(time.time() * 1000), agent_version="bench")


async def timed(call, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    await call(*args, timeout=120, **kwargs)
    return (time.perf_counter() - t0) * 1000


async def enroll_fleet(stubs, token: str, n: int) -> list[str]:
    catalog = load_catalog()
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> str:
        spec = dict(catalog[i % len(catalog)].data, simulated=True)
        async with sem:
            resp = await stubs[i % len(stubs)].Enroll(agent_pb2.EnrollRequest(
                enrollment_token=token, spec_json=json.dumps(spec), name=f"sim-{i}", simulated=True,
                labels={"simulated": "true"}), timeout=120)
        return resp.credential
    return await asyncio.gather(*(one(i) for i in range(n)))


def channels(address: str) -> list:
    return [grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS + [("grpc.use_local_subchannel_pool", 1)])
            for _ in range(CHANNELS)]


async def report_rounds(address: str, credentials: list[str] | None, agents: int, rounds: int,
                        seed: int = 0) -> tuple[float, list[float]]:
    """(reports/s over the timed report phases, per-report latencies in ms). Without credentials the
    server is the bare one: the same messages, nothing leased."""
    rng = random.Random(seed)
    chans = channels(address)
    stubs = [agent_pb2_grpc.AgentServiceStub(c) for c in chans]
    latencies: list[float] = []
    busy = 0.0
    try:
        for _ in range(rounds):
            if credentials:
                leases = await asyncio.gather(*(stubs[i % CHANNELS].LeaseTask(
                    agent_pb2.LeaseTaskRequest(wait_s=0), metadata=bearer(credentials[i]), timeout=120)
                    for i in range(agents)))
                reports = [(i, report_for(lease.task, rng)) for i, lease in enumerate(leases) if lease.has_task]
            else:
                reports = [(i, report_for(None, rng)) for i in range(agents)]
            t0 = time.perf_counter()
            latencies += await asyncio.gather(*(timed(
                stubs[i % CHANNELS].Report, r, metadata=bearer(credentials[i]) if credentials else None)
                for i, r in reports))
            busy += time.perf_counter() - t0
    finally:
        for c in chans:
            await c.close()
    return len(latencies) / busy, latencies


async def fleet_minute(address: str, credentials: list[str], reporters: int, seconds: float
                       ) -> tuple[list[float], list[float], list[float]]:
    """Every agent heartbeats once per `seconds` (at a random moment); `reporters` of them lease and
    report in a loop, pausing 5-15 s between tasks. Heartbeat, lease and report latencies (ms)."""
    rng = random.Random(1)
    chans = channels(address)
    stubs = [agent_pb2_grpc.AgentServiceStub(c) for c in chans]
    beats: list[float] = []
    leases: list[float] = []
    reports: list[float] = []
    end = time.monotonic() + seconds

    async def heartbeat(i: int) -> None:
        await asyncio.sleep(rng.uniform(0, seconds))
        beats.append(await timed(stubs[i % CHANNELS].Heartbeat, agent_pb2.HeartbeatRequest(state="idle"),
                                 metadata=bearer(credentials[i])))

    async def reporter(i: int) -> None:
        await asyncio.sleep(rng.uniform(0, 10))
        md = bearer(credentials[i])
        while time.monotonic() < end:
            t0 = time.perf_counter()
            lease = await stubs[i % CHANNELS].LeaseTask(agent_pb2.LeaseTaskRequest(wait_s=0), metadata=md,
                                                        timeout=120)
            leases.append((time.perf_counter() - t0) * 1000)
            if lease.has_task:
                reports.append(await timed(stubs[i % CHANNELS].Report, report_for(lease.task, rng), metadata=md))
            await asyncio.sleep(rng.uniform(5, 15))

    try:
        await asyncio.gather(*(heartbeat(i) for i in range(len(credentials))),
                             *(reporter(i) for i in range(reporters)))
    finally:
        for c in chans:
            await c.close()
    return beats, leases, reports


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def tiny_model(tmp: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    path = tmp / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def register_tiny(c: CoordinatorProcess, tmp: Path) -> None:
    from edgeatlas.console.models import prepare, summary_json

    p = prepare(tiny_model(tmp))
    with c.admin() as admin:
        admin.add_model(p.path, p.name, p.reference_npz, summary_json(p), p.format)


def campaign(c: CoordinatorProcess, repeats: int) -> None:
    with c.admin() as admin:
        admin.create_campaign(["tiny"], {"label.simulated": "true"}, repeats, Setting(threads=1), RunParams())


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


# ---- 1M reports -------------------------------------------------------------------------------------
def fill_million(db: Path, reports: int, models: int, classes: int) -> int:
    """Writes `reports` report rows and the cells they folded into (models × classes), as the coordinator
    would have; returns the number of cells."""
    from edgeatlas.coordinator.store import Store

    Store(f"sqlite:///{db}").close()  # the schema
    rng = np.random.default_rng(0)
    now = int(time.time() * 1000)
    setting = json.dumps(RAN.to_dict())
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=OFF")
    cols = [r[1] for r in con.execute("PRAGMA table_info(report)")]
    base = {"task_id": 0, "agent_id": "", "received_ms": now, "status": "ok", "failure_reason": "", "valid": 1,
            "invalid_reason": "", "privacy_mode": "trusted", "setting_json": setting, "stats_json": "{}",
            "privacy_json": "{}", "released_json": "{}", "figures_json": "{}", "context_json": "{}",
            "fidelity_json": "{}", "started_ms": now, "agent_version": "bench"}
    chunk = 50_000
    for start in range(0, reports, chunk):
        rows = []
        for k in range(start, min(reports, start + chunk)):
            row = dict(base, report_id=f"r{k:09d}", task_id=k + 1, agent_id=f"agent-{k % 20_000}")
            row["stats_json"] = json.dumps({"p50_ms": float(rng.lognormal(1, 1))})
            rows.append(tuple(row[c] for c in cols))
        con.executemany(f"INSERT INTO report ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
    cell_id = 0
    metric_rows, cell_rows = [], []
    for m in range(models):
        for h in range(classes):
            cell_id += 1
            folded = now - int(rng.integers(60_000, 30 * 86_400_000))  # last folded into within 30 days
            cell_rows.append((cell_id, f"{m:064x}", f"net-{m:03d}", f"cpu:bench-{h:04d}", "b1 t1", setting,
                              "simulated", "", "simulated (synthetic)", reports // (models * classes), 5, folded))
            for metric in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms",
                           "throughput_ips"):
                n = reports // (models * classes)
                mu = float(rng.normal(1, 1))
                metric_rows.append((cell_id, metric, n, mu * n, (mu * mu + 0.01) * n, 0.0))
    con.executemany("INSERT INTO heatmap_cell (id, model_sha256, model_name, hardware_class, setting_key, "
                    "setting_json, source, citation, privacy, n_reports, n_devices, updated_ms) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", cell_rows)
    con.executemany("INSERT INTO heatmap_metric (cell_id, metric, n, sum_log, sumsq_log, noise_var_sum) "
                    "VALUES (?,?,?,?,?,?)", metric_rows)
    con.commit()
    con.close()
    return cell_id


def heatmap_reads(c: CoordinatorProcess, n: int, tmp: Path, agents: int) -> tuple[float, list[float], list[float]]:
    """(the first read, built from the database, in ms; `n` reads of the unchanged cells; `n` reads each
    right after `agents` agents reported through the protocol, folding into their cells)."""
    unchanged, after_fold = [], []
    register_tiny(c, tmp)
    credentials = asyncio.run(enroll_fleet_sync(c.address, c.enroll_token, agents))
    campaign(c, n)
    with c.admin() as admin:
        t0 = time.perf_counter()
        cells = len(admin.heatmap(metric="latency_p50_ms").cells)
        cold = (time.perf_counter() - t0) * 1000
        for _ in range(n):
            t0 = time.perf_counter()
            got = admin.heatmap(metric="latency_p50_ms")
            unchanged.append((time.perf_counter() - t0) * 1000)
            assert len(got.cells) == cells
        for i in range(n):
            asyncio.run(report_rounds(c.address, credentials, agents, 1, seed=i))
            t0 = time.perf_counter()
            got = admin.heatmap(metric="latency_p50_ms")
            after_fold.append((time.perf_counter() - t0) * 1000)
            assert len(got.cells) > cells  # the agents' own cells are there
    return cold, unchanged, after_fold


# ---- main -------------------------------------------------------------------------------------------
def load_row(name: str, rate: float, lat: list[float], bare_rate: float) -> str:
    return (f"{name:24} {rate:10.0f} {pct(lat, 50):9.1f} {pct(lat, 99):9.1f} "
            f"{rate / bare_rate:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fleet", type=int, default=10_000)
    ap.add_argument("--fleet-seconds", type=float, default=60.0)
    ap.add_argument("--reports", type=int, default=1_000_000)
    ap.add_argument("--only", choices=("1", "2", "3"), help="run one part only")
    ap.add_argument("--bare", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        asyncio.run(serve_bare(args.bare))
        return
    tmp = Path(tempfile.mkdtemp(prefix="ea-load-"))
    print(f"machine: {os.cpu_count()} cores; load generator: one process, {CHANNELS} connections")
    parts = {"1": reports_vs_bare, "2": fleet_minute_part, "3": heatmap_part}
    for name, part in parts.items():
        if args.only in (None, name):
            part(args, tmp)
    print(f"\nscratch: {tmp}")


def reports_vs_bare(args, tmp: Path) -> None:
    from tests import postgres

    print(f"\n1. {args.agents} concurrent agents, {args.rounds} rounds of one report each (leases untimed)")
    bare, bare_address = start_bare(tmp)
    try:
        bare_rate, bare_lat = asyncio.run(report_rounds(bare_address, None, args.agents, args.rounds))
    finally:
        stop_pid(bare)
    rows = [f"{'server':24} {'reports/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'vs bare':>10}",
            load_row("bare grpc.aio", bare_rate, bare_lat, bare_rate)]
    pg = None
    dbs = [("coordinator, SQLite", "")]
    if postgres.available():
        pg_root = Path(tempfile.mkdtemp(prefix="ea-load-pg-"))  # its own: the postgres user must reach it
        pg = postgres.PostgresServer(pg_root).start()
        dbs.append(("coordinator, PostgreSQL", pg.create_database("load")))
    try:
        for name, url in dbs:
            work = tmp / name.split()[-1].lower()
            work.mkdir()
            c = CoordinatorProcess(work, work / "coordinator.db", db_url=url,
                                   extra_args=("--report-rate", "100000", "--enroll-rate", "1000000")).start()
            try:
                register_tiny(c, work)
                credentials = asyncio.run(enroll_fleet_sync(c.address, c.enroll_token, args.agents))
                campaign(c, args.rounds)
                rate, lat = asyncio.run(report_rounds(c.address, credentials, args.agents, args.rounds))
                rows.append(load_row(name, rate, lat, bare_rate))
            finally:
                c.stop()
        if pg is None:
            rows.append("coordinator, PostgreSQL    (no PostgreSQL here: run ./scripts/test once to install it)")
    finally:
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg_root, ignore_errors=True)
    print("\n".join(rows))



def fleet_minute_part(args, tmp: Path) -> None:
    print(f"\n2. {args.fleet} agents heartbeating once per {args.fleet_seconds:.0f} s, "
          f"{min(1000, args.fleet)} of them leasing and reporting (SQLite)")
    work = tmp / "fleet"
    work.mkdir()
    c = CoordinatorProcess(work, work / "coordinator.db", extra_args=("--report-rate", "100000", "--enroll-rate", "1000000")).start()
    try:
        register_tiny(c, work)
        t0 = time.perf_counter()
        credentials = asyncio.run(enroll_fleet_sync(c.address, c.enroll_token, args.fleet))
        enroll_s = time.perf_counter() - t0
        campaign(c, 3)
        rss_before = rss_mb(c.proc.pid)
        beats, leases, reports = asyncio.run(fleet_minute(c.address, credentials, min(1000, args.fleet),
                                                          args.fleet_seconds))
        rss_after = rss_mb(c.proc.pid)
    finally:
        c.stop()
    print(f"enrolled {args.fleet} agents in {enroll_s:.0f} s ({args.fleet / enroll_s:.0f}/s)")
    for name, lat in (("heartbeat", beats), ("lease", leases), ("report", reports)):
        print(f"{name:10} {len(lat):7} calls  p50 {pct(lat, 50):7.1f} ms  p99 {pct(lat, 99):7.1f} ms")
    print(f"coordinator RSS: {rss_before:.0f} MB after enrolment, {rss_after:.0f} MB after the minute")



def heatmap_part(args, tmp: Path) -> None:
    print(f"\n3. heat-map read with {args.reports:,} stored reports (SQLite)")
    work = tmp / "million"
    work.mkdir()
    t0 = time.perf_counter()
    cells = fill_million(work / "coordinator.db", args.reports, 40, 100)
    fill_s = time.perf_counter() - t0
    c = CoordinatorProcess(work, work / "coordinator.db", extra_args=("--report-rate", "100000", "--enroll-rate", "1000000")).start()
    try:
        cold, unchanged, after_fold = heatmap_reads(c, 20, work, 100)
        rss = rss_mb(c.proc.pid)
    finally:
        c.stop()
    print(f"{args.reports:,} reports, {cells:,} cells (written in {fill_s:.0f} s), GetHeatmap over gRPC "
          f"(target < 100 ms):")
    print(f"  first read, built from the database     {cold:7.1f} ms")
    for name, reads in (("20 reads of unchanged cells", unchanged),
                        ("20 reads, each after 100 agents reported", after_fold)):
        print(f"  {name:40} p50 {pct(reads, 50):6.1f} ms, max {max(reads):6.1f} ms")
    print(f"  coordinator RSS {rss:.0f} MB")


async def enroll_fleet_sync(address: str, token: str, n: int) -> list[str]:
    chans = channels(address)
    try:
        return await enroll_fleet([agent_pb2_grpc.AgentServiceStub(c) for c in chans], token, n)
    finally:
        for c in chans:
            await c.close()


if __name__ == "__main__":
    main()
