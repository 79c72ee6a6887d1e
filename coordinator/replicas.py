"""What replicas of the coordinator share, through their database and nothing else.

- Events (`Bus`): "work" (tasks may be leasable: wake the long-polls), "revoke" (forget cached credentials),
  "rounds" (the open secure-round invitations changed). On PostgreSQL they travel by LISTEN/NOTIFY to every
  replica; on SQLite there is one process and they stay in it.
- One leader (`Leadership`): the replica holding a PostgreSQL advisory lock runs the campaign drivers
  (adaptive rounds, federated runs, retraining) and the secure rounds. The lock belongs to its database
  session, so a replica that dies (kill -9 included) lets it go with its connection and another takes it
  within LEADER_RETRY_S. On SQLite the one process leads.
- A device's secure-round messages reach the leader wherever they land: a follower relays the call
  (`relay_secure_round`), with the device's own credential, to the address the leader wrote in the database.
- A health endpoint for the load balancer (`serve_health`): HTTP 200 while the database answers.

Replicas on one SQLite file are not supported (one writer process); `coordinator serve` on SQLite is one replica.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from typing import Callable

import grpc

from edgeatlas.protos.wire import CHANNEL_OPTIONS

log = logging.getLogger("edgeatlas.coordinator.replicas")

CHANNEL = "edgeatlas"
LEADER_LOCK_KEY = 0x45415244  # the advisory lock's key ("EARD"); any 64-bit number no other tool uses
FEDERATED_LOCK_KEY = 0x45414652  # ("EAFR") held by the one replica with a SuperLink that drives federated runs
LEADER_RETRY_S = 2.0  # how often a follower tries the lock, and the leader checks it still holds it
RELAYED = "x-edgeatlas-relayed"  # metadata a relayed call carries, so it is never relayed twice
KINDS = ("work", "revoke", "rounds")


def psycopg_url(url: str) -> str:
    """The libpq form of a database URL (SQLAlchemy's driver suffix removed)."""
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgresql") else url


class Bus:
    """Events every replica hears. Handlers run in the event loop given to start(); publish() never blocks
    (a sender thread coalesces events and NOTIFYs them after the caller's commit)."""

    def __init__(self, url: str):
        self.url = psycopg_url(url) if url.startswith("postgresql") else ""
        self.replica_id = uuid.uuid4().hex[:12]
        self.handlers: dict[str, list[Callable[[], None]]] = {k: [] for k in KINDS}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.heard = 0  # events from other replicas, for tests and logs

    def on(self, kind: str, handler: Callable[[], None]) -> None:
        self.handlers[kind].append(handler)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        if self.url:
            for target, name in ((self._listen, "edgeatlas-listen"), (self._send, "edgeatlas-notify")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def publish(self, kind: str) -> None:
        """Runs this replica's handlers for `kind` at once, and tells the others."""
        if kind not in self.handlers:
            raise ValueError(f"unknown event {kind!r}")
        self._dispatch(kind)
        if self.url:
            self._outbox.put(kind)

    def _dispatch(self, kind: str) -> None:
        if self.loop is None:
            return
        for handler in self.handlers[kind]:
            try:
                self.loop.call_soon_threadsafe(handler)
            except RuntimeError:  # the loop has closed: shutting down
                return

    def _send(self) -> None:
        import psycopg

        conn = None
        while not self._stop.is_set():
            kind = self._outbox.get()
            if kind is None:
                break
            kinds = {kind}
            while True:  # what queued meanwhile goes in the same round trip
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._stop.set()
                    break
                kinds.add(more)
            for attempt in range(3):
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    for k in sorted(kinds):
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{k}:{self.replica_id}"))
                    break
                except psycopg.Error as exc:
                    log.warning("could not tell the other replicas (%s): %s", ",".join(sorted(kinds)), exc)
                    conn = None
                    time.sleep(0.2 * (attempt + 1))
        if conn is not None:
            conn.close()

    def _listen(self) -> None:
        import psycopg

        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.2
                    for kind in KINDS:  # whatever was said while nobody listened: act as if it was said now
                        self._dispatch(kind)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            kind, _, sender = note.payload.partition(":")
                            if kind in self.handlers and sender != self.replica_id:
                                self.heard += 1
                                self._dispatch(kind)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("listening for the other replicas failed (%s); again in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


class Leadership:
    """Whether this replica leads. On PostgreSQL a thread holds (or keeps trying for) the advisory lock on a
    connection of its own, and writes the leader's address when it takes it; on SQLite it always leads."""

    def __init__(self, url: str, store, replica_id: str, address: str = "", lock_key: int = LEADER_LOCK_KEY,
                 what: str = "leads"):
        """lock_key: which lead (LEADER_LOCK_KEY: the campaigns' drivers and secure rounds, whose leader's
        address is written for the followers' relays; another key: a lead of its own, address unwritten)."""
        self.url = psycopg_url(url) if url.startswith("postgresql") else ""
        self.store, self.replica_id, self.address = store, replica_id, address
        self.lock_key, self.what = lock_key, what
        self.is_leader = not self.url
        self.changed: list[Callable[[bool], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, address: str) -> None:
        self.address = address
        if self.is_leader:
            self._record()
            return
        self._thread = threading.Thread(target=self._run, name="edgeatlas-leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _record(self) -> None:
        if self.lock_key == LEADER_LOCK_KEY:
            self.store.set_leader(self.replica_id, self.address)

    def _set(self, leading: bool) -> None:
        if leading != self.is_leader:
            self.is_leader = leading
            log.info("replica %s %s %s", self.replica_id, "now" if leading else "no longer", self.what)
            for callback in self.changed:
                callback(leading)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    while not self._stop.is_set():
                        if not self.is_leader:
                            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,)).fetchone()[0]
                            if got:
                                self._record()
                                self._set(True)
                        else:
                            conn.execute("SELECT 1")  # still connected, so still holding the lock
                        self._stop.wait(LEADER_RETRY_S)
            except psycopg.Error as exc:
                log.warning("leader lock: %s", exc)
            self._set(False)  # the connection went, and the lock with it
            self._stop.wait(LEADER_RETRY_S)


class Relay:
    """A follower's channel to the leader, for the secure-round calls a device made here."""

    def __init__(self, store, leadership: Leadership, credentials: grpc.ChannelCredentials | None = None):
        self.store, self.leadership, self.credentials = store, leadership, credentials
        self._channel: grpc.aio.Channel | None = None
        self._address = ""

    async def _stub(self):
        from edgeatlas.v1 import agent_pb2_grpc

        address = await asyncio.to_thread(self.store.leader_address)
        if not address:
            return None
        if address != self._address:
            if self._channel is not None:
                await self._channel.close()
            self._channel = (grpc.aio.secure_channel(address, self.credentials, options=CHANNEL_OPTIONS)
                             if self.credentials else grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS))
            self._address = address
        return agent_pb2_grpc.AgentServiceStub(self._channel)

    async def secure_round(self, request, metadata, timeout_s: float):
        """The leader's answer to a device's SecureRound call, or the leader's own error (re-raised as an
        AioRpcError); UNAVAILABLE when no leader is known."""
        from edgeatlas.protos.errors import Unavailable

        stub = await self._stub()
        if stub is None:
            raise Unavailable("no replica leads the secure rounds now: retry shortly")
        forwarded = [(k, v) for k, v in metadata if k == "authorization"] + [(RELAYED, "1")]
        return await stub.SecureRound(request, metadata=forwarded, timeout=timeout_s)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


async def serve_health(listen: str, store, leadership: Leadership) -> asyncio.AbstractServer:
    """A plain-HTTP health endpoint for the load balancer: 200 while the database answers within 2 s, 503
    otherwise; the body says whether this replica leads. Any path, any method."""
    host, _, port = listen.rpartition(":")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            try:
                await asyncio.wait_for(asyncio.to_thread(store.ping), timeout=2)
                status, body = "200 OK", "leader" if leadership.is_leader else "follower"
            except Exception as exc:  # any failure of the database makes this replica unhealthy
                status, body = "503 Service Unavailable", f"database: {type(exc).__name__}"
            writer.write(f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body) + 1}"
                         f"\r\nConnection: close\r\n\r\n{body}\n".encode())
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host.strip("[]"), int(port), limit=16 * 1024)
