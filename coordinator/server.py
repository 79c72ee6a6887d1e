"""The coordinator process: one grpc.aio server with both services over one Store."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc

from edgeatlas.coordinator import auth
from edgeatlas.coordinator.adaptive import AdaptiveCampaigns
from edgeatlas.coordinator.predictions import Predictors
from edgeatlas.coordinator.replicas import FEDERATED_LOCK_KEY, Bus, Leadership, Relay, serve_health
from edgeatlas.coordinator.rounds import STAGE_TIMEOUT_S, SecureRounds, form_rounds
from edgeatlas.coordinator.services.admin_service import AdminServicer
from edgeatlas.coordinator.services.agent_service import AgentServicer, Wakeup
from edgeatlas.coordinator.status import tolerant
from edgeatlas.coordinator.store import Store
from edgeatlas.coordinator.store.agents import CREDENTIAL_CACHE_S
from edgeatlas.coordinator.store.leases import SWEEP_EVERY_MS
from edgeatlas.protos.errors import EdgeAtlasError, InvalidInput, Unavailable
from edgeatlas.protos.wire import CHANNEL_OPTIONS, check_address, read_pem
from edgeatlas.v1 import admin_pb2_grpc, agent_pb2_grpc

log = logging.getLogger("edgeatlas.coordinator")


@dataclass(frozen=True)
class Tokens:
    enroll: str | None
    admin: str | None


MIN_TOKEN_CHARS = 16


def bootstrap_tokens(store: Store, tokens_file: Path | None, env: dict[str, str]) -> tuple[Tokens, bool]:
    """Takes tokens from env or tokens_file, else makes them on first start; (tokens, made_now). The tokens
    taken become the start-up tokens: those an earlier start took and these replace are revoked."""
    given = Tokens(env.get("EDGEATLAS_ENROLL_TOKEN"), env.get("EDGEATLAS_ADMIN_TOKEN"))
    for name, token in (("EDGEATLAS_ENROLL_TOKEN", given.enroll), ("EDGEATLAS_ADMIN_TOKEN", given.admin)):
        if token is not None and (len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token):
            raise InvalidInput(f"{name} must be at least {MIN_TOKEN_CHARS} printable characters without spaces")
    if (given.enroll is None or given.admin is None) and tokens_file and tokens_file.exists():
        try:
            saved = json.loads(tokens_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"tokens file {tokens_file} is unreadable: {exc}") from None
        given = Tokens(given.enroll or saved.get("enroll_token"), given.admin or saved.get("admin_token"))
    made = False
    tokens = given
    if not (given.admin or store.has_token("admin")) or not (given.enroll or store.has_token("enroll")):
        tokens = Tokens(given.enroll or auth.new_token("enroll"), given.admin or auth.new_token("admin"))
        made = True
        if tokens_file:
            tokens_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tokens_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"enroll_token": tokens.enroll, "admin_token": tokens.admin}, f)
    for kind, token in (("enroll", tokens.enroll), ("admin", tokens.admin)):
        if token:
            revoked = store.bootstrap_token(kind, auth.token_hash(token))
            if revoked:
                log.warning("revoked %d earlier start-up %s token(s): the token given now replaces them",
                            revoked, kind)
    return tokens, made


class _Capture:
    """Receives what a generated add_*_to_server registers, so the handlers can be adjusted first."""

    def __init__(self) -> None:
        self.service, self.handlers = "", {}

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # the registered handlers below carry the same methods

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.service, self.handlers = service, handlers


def add_tolerantly(add_to_server, servicer, server) -> None:
    """Registers a servicer whose handlers answer undecodable bytes with INVALID_ARGUMENT."""
    capture = _Capture()
    add_to_server(servicer, capture)
    handlers = {name: h._replace(request_deserializer=tolerant(h.request_deserializer, f"{capture.service}.{name}"))
                for name, h in capture.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.service, handlers),))
    server.add_registered_method_handlers(capture.service, handlers)


@dataclass(frozen=True)
class ServerTls:
    """The coordinator's certificate and key; with client_ca, agents and admins must show a certificate it signed."""

    cert: str
    key: str
    client_ca: str | None = None
    peer_ca: str | None = None  # what signed the replicas' certificates, where another replica leads

    def peer_credentials(self) -> grpc.ChannelCredentials:
        """How a follower calls the leader: trusting the peer CA, else the client CA, else this certificate
        (replicas sharing one certificate), and showing this replica's own certificate where clients must
        show one."""
        root = read_pem(self.peer_ca or self.client_ca or self.cert, "CA certificate")
        pair = (read_pem(self.key, "server key"), read_pem(self.cert, "server certificate")) if self.client_ca else (None, None)
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=pair[0], certificate_chain=pair[1])

    def credentials(self) -> grpc.ServerCredentials:
        pair = (read_pem(self.key, "server key"), read_pem(self.cert, "server certificate"))
        ca = read_pem(self.client_ca, "client CA certificate")
        return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def always() -> bool:
    return True


async def retrain_when_cells_arrive(predictors: Predictors, new_cells: int, check_s: float, leads=always) -> None:
    """Trains a new predictor version once `new_cells` more cells can be learned from than the newest had
    (on the leading replica: two would train the same version twice)."""
    while True:
        await asyncio.sleep(check_s)
        if not leads():
            continue
        try:
            now, then = await asyncio.gather(asyncio.to_thread(predictors.cells_now),
                                             asyncio.to_thread(predictors.cells_at_newest))
            if now - then >= new_cells:
                log.info("retraining the predictor: %d cells (newest version had %d)", now, then)
                row = await asyncio.to_thread(predictors.train, "new-cells")
                log.info("predictor version %d trained in %.0f s", row.version, row.train_seconds)
        except EdgeAtlasError as exc:
            log.warning("predictor retraining skipped: %s", exc)
        except ImportError as exc:
            log.warning("predictor retraining off: the predictor extra is not installed (%s missing)", exc.name)
            return


async def drive_adaptive_campaigns(store: Store, wakeup: Wakeup, check_s: float, leads=always) -> None:
    """Between the rounds of every adaptive campaign: retrain, record, stop or pick the next cells (on the
    leading replica only: a round's cells are picked once)."""
    controller = AdaptiveCampaigns(store)
    while True:
        await asyncio.sleep(check_s)
        if not leads():
            continue
        try:
            lines = await asyncio.to_thread(controller.advance_all)
        except ImportError as exc:
            log.warning("adaptive campaigns off: the predictor extra is not installed (%s missing)", exc.name)
            return
        except Exception:  # a bug here must not take the server down; the next check tries again
            log.exception("adaptive campaigns: the round failed")
            continue
        for line in lines:
            if "round running" not in line and "waiting" not in line:
                log.info("adaptive %s", line)
        if any(": round " in line for line in lines):
            wakeup.notify()


async def drive_federated_campaigns(controller, check_s: float, leads=always) -> None:
    """Starts each new federated-train campaign's run on the SuperLink (each runs in a thread of its own),
    on the replica that holds FEDERATED_LOCK_KEY among those that run a SuperLink (one should: the devices'
    SuperNodes dial one SuperLink)."""
    while True:
        await asyncio.sleep(check_s)
        if not leads():
            continue
        try:
            await asyncio.to_thread(controller.advance_all)
        except Exception:  # a bug here must not take the server down; the next check tries again
            log.exception("federated campaigns: could not start a run")


async def sweep_for_orphans(store: Store, wakeup: Wakeup, every_s: float) -> None:
    """Every few seconds: tasks of vanished devices and lapsed leases become orphans, and the devices
    waiting for work are told (nothing else would wake them: no call made that work)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            if await asyncio.to_thread(store.expire_overdue):
                wakeup.notify()
        except Exception:  # the database is away for a moment: the next sweep tries again
            log.exception("sweeping for orphaned tasks failed")


async def count_revocations(store: Store) -> None:
    """Keeps the credential cache current off the calls' path (Store.count_revocations)."""
    while True:
        try:
            await asyncio.to_thread(store.count_revocations)
        except Exception:  # the database is away: calls find the cache stale and ask it themselves
            log.exception("counting revoked agents failed")
        await asyncio.sleep(CREDENTIAL_CACHE_S / 3)


async def serve(store: Store, listen: str, ready_file: Path | None = None, on_ready=None,
                min_devices: int = 5, tls: ServerTls | None = None, reports_per_minute: float = 120.0,
                retrain_cells: int = 0, retrain_check_s: float = 60.0, adaptive_check_s: float = 2.0,
                superlink: str = "", enrollments_per_hour: float = 120.0,
                secure_stage_timeout_s: float = STAGE_TIMEOUT_S, health_listen: str = "",
                advertise: str = "") -> None:
    """Serves until SIGTERM or SIGINT, then stops with a short grace period.

    retrain_cells > 0: a new predictor version is trained whenever that many new cells can be learned from.
    superlink HOST:PORT: a Flower SuperLink there for federated-train campaigns (port 0: any free port).
    health_listen HOST:PORT: a plain-HTTP health endpoint for a load balancer (replicas.serve_health).
    advertise HOST:PORT: where the other replicas reach this one (default: the address it listens on).
    On PostgreSQL, replicas share everything through the database (coordinator/replicas.py): the leader
    runs the campaign drivers and the secure rounds; every replica serves every call.
    """
    check_address(listen)
    if not store.is_sqlite and not advertise and listen.startswith(("0.0.0.0:", "[::]:")):
        raise InvalidInput(f"listening on {listen}, the other replicas need --advertise HOST:PORT to reach this one")
    bus = Bus(store.url)
    wakeup = Wakeup(bus.publish)
    leadership = Leadership(store.url, store, bus.replica_id)
    predictors = Predictors(store, min_devices)
    link = None
    if superlink:
        import tempfile

        from edgeatlas.coordinator.federated import SuperLink

        link = await asyncio.to_thread(SuperLink(superlink, Path(tempfile.mkdtemp(prefix="edgeatlas-superlink-"))).start)
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    rounds = SecureRounds(store, min_devices, secure_stage_timeout_s, wakeup, bus, leadership)
    relay = Relay(store, leadership, tls.peer_credentials() if tls else None)
    add_tolerantly(agent_pb2_grpc.add_AgentServiceServicer_to_server,
                   AgentServicer(store, wakeup, reports_per_minute, enrollments_per_hour, rounds, relay), server)
    add_tolerantly(admin_pb2_grpc.add_AdminServiceServicer_to_server,
                   AdminServicer(store, wakeup, min_devices, predictors, link.address if link else ""), server)
    try:
        port = server.add_secure_port(listen, tls.credentials()) if tls else server.add_insecure_port(listen)
    except RuntimeError:
        port = 0
    if port == 0:
        if link is not None:
            link.stop()
        raise Unavailable(f"cannot listen on {listen} (address in use or not local)")
    await server.start()
    # What the process holds for good (modules, the store's caches) is set aside from the cycle collector, and
    # it runs less often: a batch of reports or a heat-map build makes tens of thousands of short-lived objects,
    # and each full collection walked all of them again (half of a 4,000-cell heat-map build).
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    address = f"{listen.rpartition(':')[0]}:{port}"
    loop = asyncio.get_running_loop()
    bus.on("work", wakeup.wake)
    bus.on("revoke", store.forget_credentials)
    bus.on("rounds", lambda: loop.create_task(rounds.refresh()))
    leadership.changed.append(lambda leading: loop.call_soon_threadsafe(
        lambda: loop.create_task(rounds.lead()) if leading else None))
    bus.start(loop)
    leadership.start(advertise or address)
    if leadership.is_leader:  # SQLite: the one process leads from the start
        await rounds.lead()
    health_server = await serve_health(health_listen, store, leadership) if health_listen else None
    health_address = ""
    if health_server is not None:
        host, port_h = health_server.sockets[0].getsockname()[:2]
        health_address = f"{host}:{port_h}"
    if ready_file:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"address": address, "pid": os.getpid(), "health": health_address,
                                   "replica": bus.replica_id, "superlink": link.address if link else ""}))
        tmp.replace(ready_file)
    if on_ready:
        on_ready(address)

    def leads() -> bool:
        return leadership.is_leader

    retrainer = (asyncio.create_task(retrain_when_cells_arrive(predictors, retrain_cells, retrain_check_s, leads))
                 if retrain_cells > 0 else None)
    adaptive = asyncio.create_task(drive_adaptive_campaigns(store, wakeup, adaptive_check_s, leads))
    cohorts = asyncio.create_task(form_rounds(rounds))
    sweeper = asyncio.create_task(sweep_for_orphans(store, wakeup, SWEEP_EVERY_MS / 1000))
    recounter = asyncio.create_task(count_revocations(store))
    federated = federated_lead = None
    if link is not None:  # whichever replica runs a SuperLink drives the federated runs, leader or not
        from edgeatlas.coordinator.federated import FederatedCampaigns

        federated_lead = Leadership(store.url, store, bus.replica_id, lock_key=FEDERATED_LOCK_KEY,
                                    what="drives federated runs")
        federated_lead.start(advertise or address)
        federated = asyncio.create_task(drive_federated_campaigns(FederatedCampaigns(store, link, predictors),
                                                                  adaptive_check_s,
                                                                  lambda: federated_lead.is_leader))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    adaptive.cancel()
    cohorts.cancel()
    sweeper.cancel()
    recounter.cancel()
    if federated is not None:
        federated.cancel()
        link.stop()  # a run in progress ends with it (its campaign stays running and restarts next time)
    if retrainer is not None:
        retrainer.cancel()
    await server.stop(grace=2)
    if health_server is not None:
        health_server.close()
    await relay.close()
    leadership.stop()
    if federated_lead is not None:
        federated_lead.stop()
    bus.stop()
    store.close()
