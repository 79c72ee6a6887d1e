"""The replicas' parts that need no second process: the health endpoint and the bus on SQLite."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from edgeatlas.coordinator.replicas import Bus, Leadership, serve_health
from edgeatlas.coordinator.store import Store


async def get(address: str, request: bytes = b"GET /healthz HTTP/1.0\r\n\r\n") -> bytes:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


def test_health_is_200_while_the_database_answers_and_503_when_it_does_not(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    leadership = Leadership(store.url, store, "r1")
    assert leadership.is_leader  # SQLite: the one process leads

    async def run() -> tuple[bytes, bytes, bytes]:
        server = await serve_health("127.0.0.1:0", store, leadership)
        address = "127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        healthy = await get(address)
        half = await get(address, b"GET /healthz HTTP/1.0\r\n")  # never finished: closed, nothing said
        store.ping = lambda: (_ for _ in ()).throw(OSError("gone"))
        sick = await get(address)
        server.close()
        return healthy, half, sick

    healthy, half, sick = asyncio.run(run())
    store.close()
    assert healthy.startswith(b"HTTP/1.0 200 OK") and healthy.endswith(b"leader\n")
    assert half == b""
    assert sick.startswith(b"HTTP/1.0 503") and b"database: OSError" in sick


def test_on_sqlite_the_bus_wakes_this_process_only_and_refuses_unknown_events():
    bus = Bus("sqlite:///x.db")
    heard: list[str] = []

    async def run() -> None:
        bus.on("work", lambda: heard.append("work"))
        bus.start(asyncio.get_running_loop())
        bus.publish("work")
        await asyncio.sleep(0.05)

    asyncio.run(run())
    bus.stop()
    assert heard == ["work"] and bus.url == "" and bus._threads == []
    try:
        bus.publish("nonsense")
    except ValueError as exc:
        assert "nonsense" in str(exc)
    else:
        raise AssertionError("an unknown event was published")


def test_two_replicas_enrolling_the_same_new_hardware_class_at_once_both_succeed(db_url):
    """Two Stores on one database, as two replicas are: the first enrolments of a class race to add its row
    (on PostgreSQL one had failed INTERNAL with a unique-key violation)."""
    import threading

    from edgeatlas.coordinator.tables import HardwareRow
    from edgeatlas.protos.spec import SpecSheet

    stores = [Store(db_url), Store(db_url)]
    spec = SpecSheet.from_dict({"name": "box", "cpu": {"vendor": "amd", "model": "EPYC 7B13", "cores": 2}})
    start, errors = threading.Barrier(8), []

    def enroll(i: int) -> None:
        start.wait()
        try:
            stores[i % 2].enroll(f"a{i}", spec, f"hash-{i}", {}, "test")
        except Exception as exc:  # what the test is about: any failure is one
            errors.append(exc)

    threads = [threading.Thread(target=enroll, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        with stores[0].session() as s:
            classes = s.exec(select(HardwareRow)).all()
        assert errors == [] and len(stores[0].list_agents()) == 8 and len(classes) == 1
    finally:
        for store in stores:
            store.close()


def test_one_replica_leads_and_the_federated_lead_is_a_lock_of_its_own(postgres, tmp_path):
    """Two replicas' leaderships on one PostgreSQL: one leads and writes its address; the other waits and
    takes over when the first stops. The replica that runs a SuperLink drives federated runs under its own
    lock, whether it leads or not, and writes no leader address."""
    import time

    from edgeatlas.coordinator import replicas
    from edgeatlas.coordinator.replicas import FEDERATED_LOCK_KEY

    url = postgres.create_database(f"l{abs(hash(str(tmp_path))) % 10**12}")
    stores = [Store(url), Store(url)]
    first = Leadership(url, stores[0], "first")
    second = Leadership(url, stores[1], "second")
    federated = Leadership(url, stores[1], "second", lock_key=FEDERATED_LOCK_KEY, what="drives federated runs")

    def until(predicate, timeout_s: float = 10) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.05)
        return predicate()

    try:
        first.start("127.0.0.1:1")
        assert until(lambda: first.is_leader)
        second.start("127.0.0.1:2")
        federated.start("127.0.0.1:2")
        assert until(lambda: federated.is_leader)  # the other lock: taken while `first` leads
        time.sleep(replicas.LEADER_RETRY_S + 0.5)
        assert first.is_leader and not second.is_leader
        assert stores[0].leader_address() == "127.0.0.1:1"  # the federated lead wrote nothing
        first.stop()  # its connection closes, and the lock goes with it
        assert until(lambda: second.is_leader, replicas.LEADER_RETRY_S * 3)
        assert stores[0].leader_address() == "127.0.0.1:2"
    finally:
        for lead in (first, second, federated):
            lead.stop()
        for store in stores:
            store.close()
