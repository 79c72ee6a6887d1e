"""AgentService: enroll, heartbeat, lease (long poll), model fetch (chunked), report."""

from __future__ import annotations

import asyncio
import math
import time

import grpc

from edgeatlas.coordinator import auth
from edgeatlas.coordinator.replicas import RELAYED
from edgeatlas.coordinator.rounds import SecureRounds
from edgeatlas.coordinator.status import rpc
from edgeatlas.coordinator.store import IncomingReport, Store
from edgeatlas.coordinator.validation import check_privacy_mode, check_report_id, check_setting, check_stats
from edgeatlas.protos import convert
from edgeatlas.protos.errors import InvalidInput, NotFound, ResourceExhausted, Unauthenticated, Unavailable
from edgeatlas.protos.metrics import check_figures
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.protos.wire import CHUNK_BYTES, MAX_LEASE_WAIT_S
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

MAX_SPEC_BYTES = 64 * 1024
MAX_LABELS = 32
# New work wakes a waiting LeaseTask at once, from any replica (coordinator/replicas.Bus): a new or resumed
# campaign, an adaptive round, a secure round's invitation, and tasks orphaned by the sweep (serve runs it
# every few seconds). A device that found nothing is not looked up again until the next wake-up, or after
# IDLE_RECHECK_S in case one was missed, and while no running campaign has an open task no device is
# (OpenWork): 20,000 waiting devices re-querying every few seconds had saturated the database
# (bench/scale_out.py part 3).
LEASE_POLL_S = 20.0
IDLE_RECHECK_S = 60.0


class Wakeup:
    """Wakes long-polling LeaseTask calls when new work may exist: here at once, and on the other replicas
    through `publish` (the replicas' bus, which calls wake() there)."""

    def __init__(self, publish=None) -> None:
        self._event = asyncio.Event()
        self.publish = publish
        self.generation = 0  # how many wake-ups so far: a device that found nothing since the last has nothing

    def current(self) -> asyncio.Event:
        return self._event

    def quiet_since(self, generation: int, at: float) -> bool:
        """Nothing announced since `generation` was read at `at` (monotonic), and that is recent enough
        (IDLE_RECHECK_S) to trust that no announcement was missed."""
        return generation == self.generation and time.monotonic() - at < IDLE_RECHECK_S

    def notify(self) -> None:
        if self.publish is not None:
            self.publish("work")  # wakes this replica's polls too
        else:
            self.wake()

    def wake(self) -> None:
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()


class RateLimit:
    """A token bucket per agent: `per_minute` calls on average, bursts of up to `burst`."""

    def __init__(self, per_minute: float, burst: int):
        self.rate_s, self.burst = per_minute / 60.0, burst
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        now = time.monotonic()
        tokens, at = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_s)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1, now)
        return True


class OpenWork:
    """Whether any device could lease a task now, asked of the database once per wake-up (Wakeup.generation)
    and at least every IDLE_RECHECK_S: while a fleet waits with no work anywhere, its long-polls cost no
    query, also the first one of each device after a restart (20,000 of them had queued a lease query each
    in the one writer, for a minute: bench/scale_out.py part 3)."""

    def __init__(self, store: Store, wakeup: Wakeup):
        self.store, self.wakeup = store, wakeup
        self.known: tuple[int, float, bool] = (-1, -math.inf, True)  # (generation, when, some task open)
        self.asking: tuple[int, asyncio.Future] | None = None

    async def exists(self) -> bool:
        generation, at, some = self.known
        if self.wakeup.quiet_since(generation, at):
            return some
        if self.asking is None or self.asking[0] != self.wakeup.generation:
            self.asking = (self.wakeup.generation, asyncio.ensure_future(self._ask(self.wakeup.generation)))
        return await asyncio.shield(self.asking[1])

    async def _ask(self, generation: int) -> bool:
        """Work committed before the answer is counted; work committed after it raises the generation."""
        at = time.monotonic()
        try:
            some = await asyncio.to_thread(self.store.any_open_task)
        except Exception:
            self.asking = None  # the database is away: the next caller asks again
            raise
        self.known = (generation, at, some)
        return some


class CredentialLookups:
    """Looks up credentials the store does not remember, many to a query: after a restart every device of
    a fleet calls at once, and one query (and one thread hop) each had queued 20,000 of them behind each
    other, starving every other call for half a minute (bench/scale_out.py part 3). Callers that miss
    while a batch is in the database wait for the next one, which takes all of them."""

    def __init__(self, store: Store):
        self.store = store
        self.waiting: dict[str, asyncio.Future] = {}
        self.running = False

    async def agent(self, credential_hash: str):
        future = self.waiting.get(credential_hash)
        if future is None:
            future = self.waiting[credential_hash] = asyncio.get_running_loop().create_future()
            if not self.running:
                self.running = True
                asyncio.get_running_loop().create_task(self._drain())
        return await asyncio.shield(future)  # one caller given up (its deadline) cancels no other's

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, {}
                try:
                    found = await asyncio.to_thread(self.store.agents_by_credentials, list(batch))
                except Exception as exc:  # the database is away: these callers get its error
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for h, future in batch.items():
                    if not future.done():
                        future.set_result(found.get(h))
        finally:
            self.running = False


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer ("ipv4:1.2.3.4:5", "ipv6:[::1]:5", "unix:..."), the port left off."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:rest.find("]")]
    return rest.rpartition(":")[0] if kind == "ipv4" else peer


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, store: Store, wakeup: Wakeup, reports_per_minute: float = 120.0,
                 enrollments_per_hour: float = 120.0, rounds: SecureRounds | None = None, relay=None):
        self.store = store
        self.wakeup = wakeup
        self.rounds = rounds
        self.relay = relay  # coordinator/replicas.Relay: a follower's way to the leader's secure rounds
        self.idle: dict[str, tuple[int, float]] = {}  # agent → (wake-up generation, when) it found nothing
        self.lookups = CredentialLookups(store)
        self.open_work = OpenWork(store, wakeup)
        self.report_limit = RateLimit(reports_per_minute, burst=max(1, int(reports_per_minute // 4)))
        # Per source address and per token, whether the token is right or not: guessing tokens and minting
        # Sybils both cost time. In this process only: replicas each allow as much (see README, security).
        self.enroll_limit = RateLimit(enrollments_per_hour / 60, burst=max(1, int(enrollments_per_hour)))

    async def _agent(self, context) -> str:
        token = auth.bearer_from(context.invocation_metadata())
        if not token:
            raise Unauthenticated("missing agent credential")
        credential_hash = auth.token_hash(token)
        agent = self.store.cached_agent(credential_hash)  # a known agent: no thread hop, no query
        if agent is None:
            agent = await self.lookups.agent(credential_hash)
        if agent is None:
            raise Unauthenticated("unknown agent credential")
        return agent.agent_id

    @rpc
    async def Enroll(self, request, context):
        if not request.enrollment_token:
            raise Unauthenticated("missing enrollment token")
        token_hash = auth.token_hash(request.enrollment_token)
        if len(self.enroll_limit.buckets) > 100_000:  # an address flood must not grow memory without end
            self.enroll_limit.buckets.clear()
        for key in (f"address:{peer_host(context.peer())}", f"token:{token_hash}"):
            if not self.enroll_limit.take(key):
                raise ResourceExhausted(f"enrollment rate limit reached for this {key.partition(':')[0]} "
                                        f"({self.enroll_limit.burst} an hour): retry later")
        if not await asyncio.to_thread(self.store.check_token, "enroll", token_hash):
            raise Unauthenticated("enrollment token is wrong, expired, used up or revoked")
        if len(request.spec_json) > MAX_SPEC_BYTES:
            raise InvalidInput(f"spec_json is larger than {MAX_SPEC_BYTES} bytes")
        spec = SpecSheet.from_json(request.spec_json, "spec_json")
        if len(request.labels) > MAX_LABELS or len(request.name) > 128:
            raise InvalidInput(f"at most {MAX_LABELS} labels and a name of at most 128 characters")
        for key, value in request.labels.items():
            if not 0 < len(key) <= 64 or len(value) > 200:
                raise InvalidInput(f"label {key[:40]!r}: a key of 1..64 and a value of at most 200 characters")
        # A use is spent only by an enrollment that will be stored: a malformed one costs the token nothing.
        if not await asyncio.to_thread(self.store.check_token, "enroll", token_hash, True):
            raise Unauthenticated("enrollment token is wrong, expired, used up or revoked")
        credential = auth.new_token("agent")
        row = await asyncio.to_thread(self.store.enroll, request.name, spec, auth.token_hash(credential),
                                      dict(request.labels), request.agent_version[:64], request.simulated)
        return agent_pb2.EnrollResponse(agent_id=row.agent_id, credential=credential,
                                        hardware_class=row.hardware_class)

    @rpc
    async def Heartbeat(self, request, context):
        agent_id = await self._agent(context)
        self.store.touch_agent(agent_id, request.state[:120] or None)
        return agent_pb2.HeartbeatResponse(server_time_ms=int(time.time() * 1000))

    @rpc
    async def LeaseTask(self, request, context):
        agent_id = await self._agent(context)
        self.store.touch_agent(agent_id, "idle")
        deadline = time.monotonic() + min(request.wait_s, MAX_LEASE_WAIT_S)
        while True:
            event = self.wakeup.current()
            invite = self.rounds.invitation(agent_id) if self.rounds else None
            if invite is not None:  # a secure round waits for this device's values before any new task
                return agent_pb2.LeaseTaskResponse(has_task=True, task=agent_pb2.Task(secure_round=invite))
            seen = self.idle.get(agent_id)
            now = time.monotonic()
            if seen is not None and self.wakeup.quiet_since(*seen):
                leased = None  # nothing has happened since it found nothing
            elif not await self.open_work.exists():
                leased = None  # no device could lease anything
            else:
                generation = self.wakeup.generation
                leased = await self.store.submit_lease(agent_id, asyncio.get_running_loop())
                if leased is None:
                    if len(self.idle) > 1_000_000:
                        self.idle.clear()
                    self.idle[agent_id] = (generation, now)
                else:
                    self.idle.pop(agent_id, None)
            if leased is not None:
                t = leased.task
                return agent_pb2.LeaseTaskResponse(has_task=True, task=agent_pb2.Task(
                    task_id=t.id, campaign_id=t.campaign_id, lease_id=t.lease_id,
                    lease_expires_ms=t.lease_expires_ms, model=convert.model_to_pb(leased.model.to_ref()),
                    setting=convert.setting_to_pb(leased.setting), params=convert.params_to_pb(leased.params),
                    repeat=t.repeat, privacy=convert.privacy_to_pb(leased.privacy)))
            left = deadline - time.monotonic()
            if left <= 0:
                self.store.touch_agent(agent_id)  # it was there all along: a minute's wait is not silence
                return agent_pb2.LeaseTaskResponse(has_task=False)
            try:  # new work wakes it (from any replica); an expiring lease frees work unannounced
                await asyncio.wait_for(event.wait(), timeout=min(left, LEASE_POLL_S))
            except asyncio.TimeoutError:
                pass

    @rpc
    async def FetchModel(self, request, context):
        agent_id = await self._agent(context)
        # One answer for "no such bytes" and "not for you": an agent learns nothing of what else is stored.
        if not await asyncio.to_thread(self.store.fetchable, agent_id, request.sha256):
            raise NotFound(f"no model or reference with sha256 {request.sha256[:16]} for a task of this agent")
        blob = await asyncio.to_thread(self.store.blob, request.sha256)
        if request.offset > blob.size_bytes:
            raise InvalidInput(f"offset {request.offset} is past the end ({blob.size_bytes} bytes)")
        idx, skip = divmod(request.offset, CHUNK_BYTES)
        offset = request.offset
        chunks = self.store.blob_chunks(request.sha256, idx)
        while True:
            data = await asyncio.to_thread(next, chunks, None)
            if data is None:
                break
            data, skip = data[skip:], 0
            yield agent_pb2.ModelChunk(offset=offset, data=data, total_size=blob.size_bytes)
            offset += len(data)

    @rpc
    async def Report(self, request, context):
        agent_id = await self._agent(context)
        if not self.report_limit.take(agent_id):
            raise ResourceExhausted("report rate limit reached for this agent: retry later")
        report = incoming_report(request)
        duplicate = await self.store.submit_report(agent_id, report, asyncio.get_running_loop())
        return agent_pb2.ReportResponse(accepted=True, duplicate=duplicate)

    @rpc
    async def SecureRound(self, request, context):
        agent_id = await self._agent(context)
        if self.rounds is None:
            raise NotFound("this coordinator runs no secure rounds")
        if self.rounds.leading or self.relay is None:
            return await self.rounds.answer(agent_id, request)
        metadata = context.invocation_metadata()
        if any(k == RELAYED for k, _ in metadata):
            raise Unavailable("the secure rounds' leader changed: retry shortly")
        try:  # the leader checks the credential again and answers as if the device had called it
            return await self.relay.secure_round(request, metadata, self.rounds.stage_timeout_s + 10)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "the leader did not answer")


def incoming_report(m: agent_pb2.ReportRequest) -> IncomingReport:
    """Validates a wire report; anything missing, non-finite, negative or absurd is InvalidInput."""
    check_report_id(m.report_id)
    if m.task_id <= 0:
        raise InvalidInput("task_id is missing")
    if not m.lease_id:
        raise InvalidInput("lease_id is missing")
    if m.status == agent_pb2.ReportRequest.STATUS_UNSPECIFIED:
        raise InvalidInput("status is missing (OK, FAILED or DECLINED)")
    status = {agent_pb2.ReportRequest.OK: "ok", agent_pb2.ReportRequest.FAILED: "failed",
              agent_pb2.ReportRequest.DECLINED: "declined"}.get(m.status)
    if status is None:
        raise InvalidInput(f"status {m.status} is not OK, FAILED or DECLINED")
    setting = stats = privacy = None
    released: dict[str, float] = {}
    figures: dict[str, float] = {}
    conditions: dict = {}
    if status == "ok":
        if not m.HasField("setting"):
            raise InvalidInput("setting is missing from an OK report")
        for name in ("target", "runtime", "runtime_version", "execution_provider", "precision", "scenario"):
            if not getattr(m.setting, name):
                raise InvalidInput(f"setting.{name} is missing")
        if m.setting.batch == 0:
            raise InvalidInput("setting.batch is missing")
        setting = convert.setting_from_pb(m.setting)
        check_setting(setting)
        check_privacy_mode(m.privacy_mode)
        if m.privacy_mode == "ldp":
            if m.HasField("stats") or m.figures or m.HasField("conditions") or m.outcome.reason:
                raise InvalidInput("an ldp report must not carry exact stats, figures, conditions or reasons")
            if not m.HasField("privacy") or not m.released:
                raise InvalidInput("an ldp report needs its privacy contract and released values")
            privacy = convert.privacy_from_pb(m.privacy).check()
            released = dict(m.released)
        elif m.privacy_mode == "secure":  # the values wait on the device for its cohort's round
            if m.HasField("stats") or m.figures or m.HasField("conditions") or m.outcome.reason or m.released:
                raise InvalidInput("a secure report carries no values: they leave the device only in a round")
            if not m.HasField("privacy"):
                raise InvalidInput("a secure report needs its privacy contract")
            privacy = convert.privacy_from_pb(m.privacy).check()
        else:
            if not m.HasField("stats"):
                raise InvalidInput("stats are missing from a trusted report")
            stats = convert.stats_from_pb(m.stats)
            check_stats(stats)
            figures = dict(m.figures)
            check_figures(figures)
            conditions = convert.conditions_from_pb(m.conditions)
        if m.outcome.driver not in ("", "loadgen", "native") or m.outcome.verdict not in ("", "VALID", "INVALID"):
            raise InvalidInput(f"outcome {m.outcome.driver!r}/{m.outcome.verdict!r} is not a known driver and verdict")
        if len(m.energy_meter) > 32 or len(m.energy_absent) > 500 or len(m.outcome.reason) > 2000:
            raise InvalidInput("energy_meter, energy_absent or outcome.reason is too long")
        if not m.valid and not m.invalid_reason:
            raise InvalidInput("an invalid run must say why (invalid_reason)")
    elif not m.failure_reason:
        raise InvalidInput(f"a {status.upper()} report must carry failure_reason")
    if len(m.failure_reason) > 2000 or len(m.invalid_reason) > 2000:
        raise InvalidInput("failure_reason and invalid_reason are limited to 2000 characters")
    return IncomingReport(
        report_id=m.report_id, task_id=m.task_id, lease_id=m.lease_id, status=status,
        failure_reason=m.failure_reason, setting=setting, stats=stats, fidelity=convert.fidelity_from_pb(m.fidelity),
        valid=status == "ok" and m.valid, invalid_reason=m.invalid_reason, privacy_mode=m.privacy_mode,
        started_ms=m.started_ms, agent_version=m.agent_version[:64], privacy=privacy, released=released,
        figures=figures, outcome=convert.outcome_from_pb(m.outcome), energy_meter=m.energy_meter,
        energy_absent=m.energy_absent, conditions=conditions)
