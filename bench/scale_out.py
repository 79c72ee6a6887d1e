"""Past one machine, side by side in one run: coordinator replicas on PostgreSQL behind HAProxy.

1. Reports/s and p50/p99 with 1,000 concurrent agents (the same load as coordinator_load.py part 1): a bare
   grpc.aio server, one coordinator dialled directly, HAProxy in front of one coordinator, and HAProxy in
   front of two. All on one PostgreSQL.
2. kill -9 of one replica (the leader) under 1,000 agents reporting through the balancer with on-disk
   outboxes: acknowledged reports stored (none lost, none twice), the longest pause in acknowledgements,
   and how long until the survivor leads.
3. N agents long-polling LeaseTask against one coordinator (asyncio clients over real sockets): its RSS per
   waiting long-poll, the p50/p99 from a campaign's creation to each woken agent's lease, and heartbeats/s
   while they all wait.

Every process is started here, on 127.0.0.1, and stopped by its PID.

    python bench/scale_out.py [--agents 1000] [--rounds 5] [--kill-agents 1000] [--polls 20000] [--only 1|2|3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.coordinator_load import (CHANNELS, campaign, enroll_fleet_sync, load_row, pct,  # noqa: E402
                                    register_tiny, report_rounds, rss_mb, start_bare)
from edgeatlas.agent.loop import LEASE_WAIT_S  # noqa: E402
from edgeatlas.agent.outbox import Outbox  # noqa: E402
from edgeatlas.protos.admin_client import AdminClient  # noqa: E402
from edgeatlas.protos.wire import CHANNEL_OPTIONS, bearer  # noqa: E402
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402

from tests import postgres  # noqa: E402
from tests.balancer import Balancer, replica, role  # noqa: E402
from tests.conftest import CoordinatorProcess, stop_pid  # noqa: E402
from tests.integration.test_crash import OPTIONS, virtual_agent  # noqa: E402

FAST = ("--report-rate", "100000", "--enroll-rate", "1000000")


class Cluster:
    """PostgreSQL database `name`, `n` replicas and, when `balanced`, HAProxy in front of them."""

    def __init__(self, pg, tmp: Path, name: str, n: int, balanced: bool):
        self.work = tmp / name
        self.work.mkdir()
        url = pg.create_database(name)
        self.replicas = []
        for i in range(n):
            self.replicas.append(replica(self.work / f"r{i}", url, self.work / "r0" if i else None, *FAST).start())
        self.balancer = Balancer(self.work, self.replicas).start() if balanced else None
        self.address = self.balancer.address if balanced else self.replicas[0].address
        deadline = time.monotonic() + 30
        while "leader" not in [role(r) for r in self.replicas] and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for r in self.replicas:
            r.stop()


def with_pg(fn):
    def run(args, tmp: Path) -> None:
        if not postgres.available():
            print("PostgreSQL is not installed: run ./scripts/test once to install it")
            return
        root = Path(tempfile.mkdtemp(prefix="ea-scale-pg-"))  # its own: the postgres user must reach it
        pg = postgres.PostgresServer(root).start()
        try:
            fn(args, tmp, pg)
        finally:
            pg.stop()
            shutil.rmtree(root, ignore_errors=True)
    return run


@with_pg
def throughput(args, tmp: Path, pg) -> None:
    print(f"\n1. {args.agents} concurrent agents, {args.rounds} rounds of one report each (leases untimed), "
          "PostgreSQL")
    bare, bare_address = start_bare(tmp)
    try:
        bare_rate, bare_lat = asyncio.run(report_rounds(bare_address, None, args.agents, args.rounds))
    finally:
        stop_pid(bare)
    rows = [f"{'server':24} {'reports/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'vs bare':>10}",
            load_row("bare grpc.aio", bare_rate, bare_lat, bare_rate)]
    for name, n, balanced in (("coordinator, direct", 1, False), ("HAProxy → 1 coordinator", 1, True),
                              ("HAProxy → 2 coordinators", 2, True)):
        cluster = Cluster(pg, tmp, f"tp{n}{int(balanced)}", n, balanced)
        try:
            first = cluster.replicas[0]
            register_tiny(first, cluster.work)
            credentials = asyncio.run(enroll_fleet_sync(cluster.address, first.enroll_token, args.agents))
            campaign(first, args.rounds)
            rate, lat = asyncio.run(report_rounds(cluster.address, credentials, args.agents, args.rounds))
            rows.append(load_row(name, rate, lat, bare_rate))
        finally:
            cluster.stop()
    print("\n".join(rows))


@with_pg
def kill_one(args, tmp: Path, pg) -> None:
    agents, repeats = args.kill_agents, 3
    print(f"\n2. kill -9 of the leading replica under {agents} agents reporting through HAProxy "
          f"(2 replicas, PostgreSQL, {repeats} tasks each, outboxes on disk)")
    cluster = Cluster(pg, tmp, "kill", 2, True)
    try:
        first = cluster.replicas[0]
        register_tiny(first, cluster.work)
        credentials = asyncio.run(enroll_fleet_sync(cluster.address, first.enroll_token, agents))
        campaign(first, repeats)
        leader = next(r for r in cluster.replicas if role(r) == "leader")
        survivor = next(r for r in cluster.replicas if r is not leader)
        acked: list[str] = []
        stamps: list[float] = []

        async def run() -> tuple[int, float]:
            async with grpc.aio.insecure_channel(cluster.address, options=OPTIONS) as channel:
                stub = agent_pb2_grpc.AgentServiceStub(channel)
                tasks = [asyncio.create_task(virtual_agent(stub, c, Outbox(cluster.work / "outbox" / str(i)),
                                                           acked)) for i, c in enumerate(credentials)]
                seen = 0
                while len(acked) < agents * repeats // 3:
                    await asyncio.sleep(0.005)
                before = len(acked)
                await asyncio.to_thread(leader.kill)
                killed = time.monotonic()
                watch.start()
                while not all(t.done() for t in tasks):
                    if len(acked) > seen:
                        seen = len(acked)
                        stamps.append(time.monotonic())
                    await asyncio.sleep(0.005)
                await asyncio.gather(*tasks)
                return before, killed

        led: list[float] = []

        def watch_survivor() -> None:  # asks its health endpoint every 0.1 s from the kill on
            deadline = time.monotonic() + 30
            while role(survivor) != "leader" and time.monotonic() < deadline:
                time.sleep(0.1)
            led.append(time.monotonic())

        watch = threading.Thread(target=watch_survivor)
        t0 = time.monotonic()
        before, killed = asyncio.run(run())
        took = time.monotonic() - t0
        watch.join()
        leads_s = led[0] - killed
        from tests.integration.test_crash import stored_report_ids

        stored = stored_report_ids(survivor.db_url)
        with AdminClient(cluster.address, first.admin_token) as admin:
            status = admin.list_campaigns()[0]
            reports_in_cells = sum(c.n_reports for c in admin.heatmap().cells)
    finally:
        cluster.stop()
    after = [s for s in stamps if s >= killed]
    gaps = [b - a for a, b in zip([killed] + after, after)]
    total = agents * repeats
    print(f"acknowledged {len(acked)} of {total} ({before} before the kill), {len(set(acked))} distinct; "
          f"stored {len(stored)}, {len(set(stored))} distinct; acknowledged but not stored "
          f"{len(set(acked) - set(stored))}; folded into cells {reports_in_cells}")
    print(f"campaign {status.status}: {status.counts.done} done, {status.counts.failed} failed; whole run "
          f"{took:.1f} s")
    print(f"first acknowledgement after the kill {gaps[0] if gaps else float('nan'):.2f} s, longest pause "
          f"{max(gaps) if gaps else float('nan'):.2f} s; the survivor led {leads_s:.1f} s after the kill")


async def hold_polls(address: str, credentials: list[str], seconds: float, ready: asyncio.Event,
                     woken: dict) -> None:
    """Every agent long-polls as the agent does (wait_s LEASE_WAIT_S, again as soon as one ends) until
    `seconds` pass or it leases a task; woken[i]: when agent i leased one."""
    chans = [grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS + [("grpc.use_local_subchannel_pool", 1)])
             for _ in range(max(1, len(credentials) // 100))]
    stubs = [agent_pb2_grpc.AgentServiceStub(c) for c in chans]
    end = time.monotonic() + seconds
    started = 0

    async def poll(i: int) -> None:
        nonlocal started
        md = bearer(credentials[i])
        first = True
        while time.monotonic() < end:
            call = stubs[i % len(stubs)].LeaseTask(agent_pb2.LeaseTaskRequest(wait_s=LEASE_WAIT_S), metadata=md,
                                                   timeout=LEASE_WAIT_S + 30)
            if first:
                started += 1
                first = False
                if started == len(credentials):
                    ready.set()
            try:
                lease = await call
            except grpc.aio.AioRpcError:
                await asyncio.sleep(1)
                continue
            if lease.has_task and i not in woken:
                woken[i] = time.monotonic()
                return

    try:
        await asyncio.gather(*(poll(i) for i in range(len(credentials))))
    finally:
        for c in chans:
            await c.close()


def long_polls(args, tmp: Path) -> None:
    n = args.polls
    print(f"\n3. {n} agents long-polling one coordinator (SQLite), then every one woken by a campaign")
    work = tmp / "polls"
    work.mkdir()
    c = CoordinatorProcess(work, work / "coordinator.db", extra_args=FAST).start()
    try:
        register_tiny(c, work)
        t0 = time.perf_counter()
        credentials = asyncio.run(enroll_fleet_sync(c.address, c.enroll_token, n))
        enroll_s = time.perf_counter() - t0
        rss_idle = rss_mb(c.proc.pid)
        woken: dict = {}
        out: dict = {}

        async def main() -> None:
            ready = asyncio.Event()
            held = asyncio.create_task(hold_polls(c.address, credentials, 240, ready, woken))
            await asyncio.wait_for(ready.wait(), 120)
            await asyncio.sleep(5)  # every poll has reached the coordinator and waits
            out["rss"] = rss_mb(c.proc.pid)
            # heartbeats from other connections while every long-poll waits
            chans = [grpc.aio.insecure_channel(c.address, options=CHANNEL_OPTIONS + [
                ("grpc.use_local_subchannel_pool", 1)]) for _ in range(CHANNELS)]
            stubs = [agent_pb2_grpc.AgentServiceStub(ch) for ch in chans]
            beats = 0
            t_end = 0.0

            async def beat(k: int) -> None:
                nonlocal beats
                while time.monotonic() < t_end:
                    await stubs[k % CHANNELS].Heartbeat(agent_pb2.HeartbeatRequest(state="idle"),
                                                        metadata=bearer(credentials[k]), timeout=30)
                    beats += 1

            import psutil

            procs = {"coordinator": psutil.Process(c.proc.pid), "load generator": psutil.Process()}
            cpu0 = {k: p.cpu_times() for k, p in procs.items()}
            await asyncio.sleep(10)  # nothing but the long-polls
            out["idle_cpu"] = {k: (sum(p.cpu_times()[:2]) - sum(cpu0[k][:2])) / 10 * 100 for k, p in procs.items()}
            cpu0 = {k: p.cpu_times() for k, p in procs.items()}
            t_beat = time.monotonic()
            t_end = t_beat + 10
            await asyncio.gather(*(beat(k) for k in range(256)))
            wall = time.monotonic() - t_beat
            out["beats"] = beats / wall
            out["cpu"] = {k: (sum(p.cpu_times()[:2]) - sum(cpu0[k][:2])) / wall * 100 for k, p in procs.items()}
            for ch in chans:
                await ch.close()
            await asyncio.to_thread(campaign, c, 1)  # one task for every agent
            out["created"] = time.monotonic()  # its tasks are committed: from here each lease is a wake-up
            deadline = time.monotonic() + 60
            while len(woken) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            held.cancel()

        asyncio.run(main())
    finally:
        c.stop()
    lat = [max(0.0, v - out["created"]) * 1000 for v in woken.values()]
    print(f"enrolled {n} agents in {enroll_s:.0f} s; coordinator RSS {rss_idle:.0f} MB idle, {out['rss']:.0f} MB "
          f"with {n} long-polls waiting: {(out['rss'] - rss_idle) * 1024 / n:.1f} KB per long-poll")
    print(f"holding them, {LEASE_WAIT_S} s each, nothing else: " + ", ".join(
        f"{k} {v:.0f} % CPU" for k, v in out["idle_cpu"].items()))
    print(f"heartbeats while they wait: {out['beats']:.0f}/s (256 concurrent callers, {CHANNELS} connections); "
          + ", ".join(f"{k} {v:.0f} % CPU" for k, v in out["cpu"].items()))
    print(f"woken by a campaign of one task each: {len(lat)} of {n} leased within 60 s; from its creation "
          f"to the lease p50 {pct(lat, 50):.0f} ms, p99 {pct(lat, 99):.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kill-agents", type=int, default=1000)
    ap.add_argument("--polls", type=int, default=20_000)
    ap.add_argument("--only", choices=("1", "2", "3"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ea-scale-"))
    print(f"machine: {os.cpu_count()} cores; load generator: one process")
    for name, part in {"1": throughput, "2": kill_one, "3": long_polls}.items():
        if args.only in (None, name):
            part(args, tmp)
    print(f"\nscratch: {tmp}")


if __name__ == "__main__":
    main()
