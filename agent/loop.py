"""The pull loop: enroll once, then heartbeat, lease, fetch, run, report — backing off when away."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from dataclasses import dataclass, field

import grpc

from edgeatlas import __version__
from edgeatlas.agent.cache import ModelCache
from edgeatlas.agent.outbox import Outbox
from edgeatlas.agent.privacy.ledger import Budget, BudgetExceeded, Ledger
from edgeatlas.agent.report import completed, new_report, refused
from edgeatlas.agent.results import LocalResults
from edgeatlas.agent.privacy.release import statistic_logs
from edgeatlas.agent.secagg import HeldValues, drive, participant_for, stages
from edgeatlas.agent.etiquette import Conditions, Rules, Sensors, verdict
from edgeatlas.agent.meters import find_meter
from edgeatlas.agent.runners import ModelFacts, make_runner
from edgeatlas.agent.state import Identity, StateDir
from edgeatlas.protos import PROTOCOL_VERSION, convert
from edgeatlas.protos.errors import EdgeAtlasError, Unauthenticated
from edgeatlas.protos.spec import SpecSheet
from edgeatlas.protos.wire import DEFAULT_DEADLINE_S, MAX_LEASE_WAIT_S, ClientTls, bearer, open_channel
from edgeatlas.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("edgeatlas.agent")

HEARTBEAT_EVERY_S = 30.0  # while it does not long-poll (a LeaseTask tells the coordinator it is there)
ETIQUETTE_WAIT_S = 30.0  # how long to wait before looking at the device's conditions again
# An idle device asks the coordinator once a minute, and new work wakes it at once: a fleet of N idle
# devices costs the coordinator N/60 calls a second (bench/scale_out.py part 3).
LEASE_WAIT_S = MAX_LEASE_WAIT_S
ONCE_LEASE_WAIT_S = 10  # `once`: how long no work must last before the agent stops
MAX_BACKOFF_S = 30.0
# Codes that mean "try again later": the coordinator is away, restarting or overloaded.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
             grpc.StatusCode.UNKNOWN}


class FetchFailed(EdgeAtlasError):
    """The coordinator refused a model download for good (not found, forbidden)."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter."""

    base_s: float = 0.5
    cap_s: float = MAX_BACKOFF_S
    attempt: int = 0

    def next_s(self) -> float:
        self.attempt += 1
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** self.attempt))

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class AgentConfig:
    coordinator: str
    enroll_token: str | None
    state_dir: StateDir
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    once: bool = False  # stop when there is no more work (tests, scripts)
    trusted: bool = False  # the owner's choice: exact values leave the device (a private fleet)
    budget: Budget = field(default_factory=Budget)  # the owner's; the coordinator cannot change it
    tls: ClientTls | None = None
    etiquette: Rules = field(default_factory=Rules)  # the owner's: when to wait, and the rest between tasks
    sysfs_root: str = "/"  # where /sys is read from: energy meters and etiquette sensors (a fake tree in tests)
    superlink: str = ""  # opted in to federated training: the coordinator's Flower SuperLink (agent/federated.py)


class Agent:
    def __init__(self, config: AgentConfig, spec: SpecSheet, stop: threading.Event | None = None):
        self.config = config
        self.spec = spec
        self.stop = stop or threading.Event()
        self.cache = ModelCache(config.state_dir.models)
        self.outbox = Outbox(config.state_dir.outbox)
        self.ledger = Ledger(config.state_dir.root / "privacy-ledger.db", config.budget)
        self.results = LocalResults(config.state_dir.root / "results.jsonl")
        self.held = HeldValues(config.state_dir.root / "held.json")
        self.channel = open_channel(config.coordinator, config.tls)
        self._connectivity = None
        self.channel.subscribe(self._connectivity_changed)
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        self.identity: Identity | None = config.state_dir.identity()
        if self.identity and self.identity.coordinator != config.coordinator:
            log.info("enrolled with %s before; enrolling with %s", self.identity.coordinator, config.coordinator)
            self.identity = None
        self.last_heartbeat = 0.0
        self.current: agent_pb2.Task | None = None
        self.tasks_done = 0
        self.sensors = Sensors(config.sysfs_root)
        self.waiting: str | None = None  # why the device is not taking work now
        self.conditions = Conditions()
        self.clock_percent: float | None = None

    # ---- wire calls -----------------------------------------------------------------------------
    def _md(self):
        return bearer(self.identity.credential)

    def enroll(self) -> None:
        if not self.config.enroll_token:
            raise Unauthenticated("not enrolled yet and no enrollment token given (--token)")
        resp = self.stub.Enroll(agent_pb2.EnrollRequest(
            protocol_version=PROTOCOL_VERSION, enrollment_token=self.config.enroll_token,
            spec_json=self.spec.to_json(), agent_version=__version__, name=self.config.name,
            labels=self.config.labels), timeout=DEFAULT_DEADLINE_S)
        self.identity = Identity(resp.agent_id, resp.credential, self.config.coordinator, resp.hardware_class)
        self.config.state_dir.save_identity(self.identity)
        log.info("enrolled as %s (%s)", resp.agent_id, resp.hardware_class)

    def heartbeat(self, state: str) -> None:
        self.stub.Heartbeat(agent_pb2.HeartbeatRequest(protocol_version=PROTOCOL_VERSION, state=state),
                            metadata=self._md(), timeout=DEFAULT_DEADLINE_S)
        self.last_heartbeat = time.monotonic()

    def lease(self) -> agent_pb2.Task | None:
        wait_s = ONCE_LEASE_WAIT_S if self.config.once else LEASE_WAIT_S
        future = self.stub.LeaseTask.future(
            agent_pb2.LeaseTaskRequest(protocol_version=PROTOCOL_VERSION, wait_s=wait_s),
            metadata=self._md(), timeout=wait_s + DEFAULT_DEADLINE_S)
        while not future.done():
            if self.stop.wait(0.1):
                future.cancel()
                return None
        resp = future.result()
        self.last_heartbeat = time.monotonic()  # the coordinator marked it idle: that call was a heartbeat
        return resp.task if resp.has_task else None

    def fetch(self, sha256: str, suffix: str) -> str:
        if not self.cache.has(sha256, suffix):
            stream = self.stub.FetchModel(agent_pb2.FetchModelRequest(protocol_version=PROTOCOL_VERSION,
                                                                      sha256=sha256),
                                          metadata=self._md(), timeout=600)
            self.cache.store(sha256, (chunk.data for chunk in stream), suffix)
        return str(self.cache.path(sha256, suffix))

    def send(self, report: agent_pb2.ReportRequest) -> None:
        """Sends one outbox report; permanent refusals leave the queue with their reason."""
        try:
            self.stub.Report(report, metadata=self._md(), timeout=DEFAULT_DEADLINE_S)
        except grpc.RpcError as exc:
            if exc.code() in TRANSIENT:
                raise
            log.warning("report %s refused: %s %s", report.report_id, exc.code().name, exc.details())
            self.outbox.rejected(report.report_id, f"{exc.code().name}: {exc.details()}")
            return
        self.outbox.acknowledged(report.report_id)

    # ---- the work -------------------------------------------------------------------------------
    def execute(self, task: agent_pb2.Task) -> agent_pb2.ReportRequest:
        """Runs one task; every failure becomes a FAILED report with its reason, an over-budget task DECLINED."""
        report = new_report(task, self.config.trusted)
        privacy = None
        try:
            if not self.config.trusted:
                privacy = convert.privacy_from_pb(task.privacy).check()
                self.ledger.check(privacy)  # before any work: a declined task costs nothing
            try:
                model_path = self.fetch(task.model.sha256, "." + (task.model.format or "onnx"))
                ref_path = (self.fetch(task.model.reference_sha256, ".npz")
                            if task.model.reference_sha256 else None)
            except grpc.RpcError as exc:
                if exc.code() in TRANSIENT:
                    raise  # the coordinator is away: keep the task and try again after a backoff
                raise FetchFailed(f"model {task.model.name} could not be fetched: {exc.details()}") from None
            runner = make_runner(model_path, convert.setting_from_pb(task.setting, defaults=True), ref_path,
                                 ModelFacts.of(convert.model_from_pb(task.model)))
            meter, absent = find_meter(runner.setting.target, self.config.sysfs_root)
            result = runner.run(convert.params_from_pb(task.params), meter)
            self.clock_percent = self.sensors.clock_percent()  # the clock as the load ends: throttled?
            if meter is None:
                result = dataclasses.replace(result, energy_absent=absent)
        except BudgetExceeded as exc:
            return refused(report, declined=True, reason=str(exc))
        except EdgeAtlasError as exc:
            return refused(report, declined=False, reason=str(exc))
        except MemoryError:
            return refused(report, declined=False, reason="out of memory")
        # exact values stay here, for the owner, with the device's conditions when it ran
        conditions = dict(self.conditions.to_dict(), clock_percent=self.clock_percent)
        self.results.add(task.model.name, task.task_id, result, conditions, task.model.sha256,
                         task.model.format or "onnx", task.model.inputs_json)
        completed(report, result, privacy, conditions)
        if privacy is not None and privacy.mode == "secure":
            # nothing leaves with the report: the values wait here, and the ε is spent by the round
            if result.valid:
                self.held.add(task.model.sha256, result.setting.key(),
                              statistic_logs(result.stats, privacy, result.figures()))
            return report
        self.ledger.record(report.report_id, task.task_id, privacy)  # in the ledger before it can leave
        return report

    def join_round(self, invite: agent_pb2.SecureRoundInvite) -> str:
        """Takes part in a secure round with the values it holds of the invitation's cells; its ε goes in
        the ledger before the masked vector leaves. Returns the round's outcome, as the coordinator said it."""
        try:
            participant = participant_for(invite, self.held.all())
            if participant is None:
                return "declined: this device holds none of the round's cells"
            contract = participant.contract
            self.ledger.check(contract)  # nothing has left yet: its keys are made, not sent
        except BudgetExceeded as exc:
            return str(exc)
        except EdgeAtlasError as exc:
            return f"declined: {exc}"
        spent = []

        def before_masked() -> None:
            self.ledger.record(invite.round_id, 0, contract)
            spent.append(True)

        def call(request: agent_pb2.SecureRoundRequest) -> agent_pb2.SecureRoundResponse:
            return self.stub.SecureRound(request, metadata=self._md(), timeout=request.wait_s + DEFAULT_DEADLINE_S)

        try:
            return drive(stages(participant, invite, before_masked), call)
        except EdgeAtlasError as exc:  # the coordinator sent what an honest one never does: drop out
            return f"dropped out: {exc}"
        except grpc.RpcError as exc:
            if exc.code() in TRANSIENT and not spent:
                raise
            return f"dropped out: {exc.code().name} {exc.details()}"
        finally:
            if spent:  # the masked vector left: these values are summed, or lost, but never sent again
                self.held.consume((c.model_sha256, c.setting_key) for c in invite.cells)

    def step(self) -> bool:
        """One round: drain the outbox, heartbeat when due, lease and run one task; True if it ran one."""
        if self.identity is None:
            self.enroll()
        for pending in self.outbox.pending():
            self.send(pending)
        if time.monotonic() - self.last_heartbeat > HEARTBEAT_EVERY_S:
            self.heartbeat("idle")
        if self._should_wait():  # a task in hand too: the owner's rules hold for it
            return False
        task = self.current or self.lease()
        if task is None:
            return False
        if task.HasField("secure_round"):
            invite = task.secure_round
            log.info("secure round %s: %d cells, %d devices", invite.round_id[:8], len(invite.cells), invite.cohort)
            log.info("secure round %s: %s", invite.round_id[:8], self.join_round(invite))
            return True
        if self.current is None:
            self.current = task  # survives a transient failure below; retried on the next step
            if self._should_wait():  # the conditions changed during the long-poll: kept, run when they allow
                return False
        log.info("task %d: %s (campaign %d)", task.task_id, task.model.name, task.campaign_id)
        report = self.execute(task)
        self.outbox.put(report)
        self.current = None
        self.send(report)
        self.tasks_done += 1
        if report.status == agent_pb2.ReportRequest.OK:
            log.info("task %d: reported (%s), %s", task.task_id, report.privacy_mode,
                     "valid" if report.valid else "INVALID: " + report.invalid_reason)
        elif report.status == agent_pb2.ReportRequest.DECLINED:
            log.info("task %d %s", task.task_id, report.failure_reason)
        else:
            log.info("task %d failed: %s", task.task_id, report.failure_reason)
        if self.config.etiquette.cooldown_s:
            self.stop.wait(self.config.etiquette.cooldown_s)
        return True

    def _should_wait(self) -> bool:
        """Checks the device's etiquette; while it says wait, tells the coordinator why and sleeps a while."""
        self.conditions = self.sensors.read(self.config.etiquette, self.clock_percent)
        reason = verdict(self.config.etiquette, self.conditions)
        if reason and reason != self.waiting:
            log.info("waiting: %s", reason)
            self.heartbeat(f"waiting: {reason}")
        self.waiting = reason
        if reason:
            self.stop.wait(ETIQUETTE_WAIT_S)
        return reason is not None

    def _connectivity_changed(self, state: grpc.ChannelConnectivity) -> None:
        self._connectivity = state

    def _await_coordinator(self, delay_s: float) -> None:
        """Waits up to delay_s, but, where the connection is down, no longer than until it is up again (the
        channel's own health probe): the backoff spares a coordinator that is away and costs nothing once it
        is back. A connected coordinator that answered UNAVAILABLE (overloaded) gets the whole delay."""
        if self._connectivity == grpc.ChannelConnectivity.READY:
            self.stop.wait(delay_s)
            return
        ready = grpc.channel_ready_future(self.channel)
        deadline = time.monotonic() + delay_s
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    ready.result(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
                    return
                except grpc.FutureTimeoutError:
                    continue
        finally:
            ready.cancel()

    def run(self) -> int:
        """Loops until stopped; returns an exit code."""
        backoff = Backoff()
        supernode = None
        if self.config.superlink:
            from edgeatlas.agent.federated import SuperNode

            supernode = SuperNode(self.config.superlink, self.config.state_dir.root, self.spec)
            supernode.start()
        try:
            while not self.stop.is_set():
                try:
                    ran = self.step()
                    backoff.reset()
                    if self.config.once and not ran and not len(self.outbox) and not self.waiting:
                        return 0
                except grpc.RpcError as exc:
                    code = exc.code()
                    if code == grpc.StatusCode.UNAUTHENTICATED:
                        log.error("coordinator refused our credentials: %s", exc.details())
                        return 2
                    if code not in TRANSIENT:
                        log.error("coordinator answered %s: %s", code.name, exc.details())
                    delay = backoff.next_s()
                    log.info("coordinator unavailable (%s); retrying within %.1f s", code.name, delay)
                    self._await_coordinator(delay)
            return 0
        finally:
            if supernode is not None:
                supernode.stop()
            self.channel.close()
            self.ledger.close()
