"""Secure rounds, live: cohorts form from held results, each round's four stages run over the devices'
long-polls with a deadline per stage, and a published sum is folded into its cells.

One process holds a round's state in memory (coordinator/secagg.Round): the leading replica
(coordinator/replicas.Leadership). Its open invitations are in the database, so a member leasing from any
replica is invited, and a follower relays the member's stage calls to the leader. A round that fails
before any masked vector was sent gives its claims on the devices' results back, and they join the next
cohort; after that the ε is spent on the devices, and their results are never summed again. If the leader
dies or restarts mid-round the round is lost and its claims stay: the devices' results of it are not summed
(nothing is learnt twice, and nothing wrong is published).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from edgeatlas.coordinator.secagg import Round, RoundFailed
from edgeatlas.coordinator.store import Store
from edgeatlas.coordinator.store.secure import Cohort
from edgeatlas.protos import convert
from edgeatlas.protos.errors import EdgeAtlasError, InvalidInput, NotFound
from edgeatlas.protos.secure import MAX_CELLS, MAX_COHORT, Advertise, SealedShare, SecureContract, UnmaskShare
from edgeatlas.v1 import agent_pb2

log = logging.getLogger("edgeatlas.coordinator.rounds")

STAGE_TIMEOUT_S = 30.0  # a stage closes this long after it opened, whoever has not answered
MAX_SHARES = 4096


@dataclass
class LiveRound:
    round: Round
    cohort: Cohort
    cells: list[tuple[str, dict]]  # slot → (model sha256, setting)
    invite: agent_pb2.SecureRoundInvite
    closed: dict[int, asyncio.Event] = field(default_factory=lambda: {s: asyncio.Event() for s in range(1, 5)})
    answered: dict[int, set[str]] = field(default_factory=lambda: {s: set() for s in range(1, 5)})
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    holds: dict[str, list[int]] = field(default_factory=dict)  # agent → the slots its reports said it holds
    survivors: list[int] = field(default_factory=list)
    outcome: str = ""
    masked_sent: bool = False
    invited: bool = True  # its invitation is in the database (until stage 1 closes)
    unmask_s: float = 0.0


class SecureRounds:
    """The coordinator's live rounds; `form` runs beside the server, the servicer calls the rest."""

    def __init__(self, store: Store, min_devices: int, stage_timeout_s: float = STAGE_TIMEOUT_S, wakeup=None,
                 bus=None, leadership=None):
        self.store, self.min_devices, self.stage_timeout_s, self.wakeup = store, min_devices, stage_timeout_s, wakeup
        self.bus, self.leadership = bus, leadership
        self.elsewhere: dict[str, bytes] = {}  # agent → its invitation to the leader's open round (a follower's)
        self.rounds: dict[str, LiveRound] = {}
        self.member_of: dict[str, str] = {}  # agent → its live round
        self.finished: dict[str, str] = {}  # round → outcome, for devices that ask after the end

    # ---- forming ----------------------------------------------------------------------------------
    async def form(self) -> list[str]:
        """Opens a round for every cohort that reached its minimum and whose devices are free."""
        opened = []
        for cohort in await asyncio.to_thread(self.store.secure_cohorts):
            members = [a for a in sorted(cohort.reports) if a not in self.member_of][:MAX_COHORT]
            cells = sorted({c for a in members for c in cohort.holds[a]})[:MAX_CELLS]
            slots = {c: i for i, c in enumerate(cells)}
            members = [a for a in members if cohort.holds[a] & slots.keys()]  # a later round takes the rest
            if len(members) < max(cohort.privacy.cohort_min, self.min_devices):
                continue
            contract = SecureContract.for_cohort(cohort.privacy, len(cells), len(members))
            round_id = uuid.uuid4().hex
            rnd = Round(round_id, contract, members)
            invite = agent_pb2.SecureRoundInvite(
                round_id=round_id, privacy=convert.privacy_to_pb(cohort.privacy), cohort=len(members),
                min_survivors=contract.min_survivors, stage_timeout_s=self.stage_timeout_s,
                cells=[agent_pb2.SecureCell(model_sha256=sha, setting_key=key) for sha, key in cells])
            live = LiveRound(rnd, cohort, [(sha, cohort.cells[(sha, key)]) for sha, key in cells], invite,
                             holds={a: sorted(slots[c] for c in cohort.holds[a] if c in slots) for a in members})
            await asyncio.to_thread(self.store.claim_secure, round_id,  # only the cells this round sums
                                    [r for a in members for c, r in cohort.reports[a].items() if c in slots])
            await asyncio.to_thread(self.store.open_invite, round_id, members, invite.SerializeToString())
            self.rounds[round_id] = live
            for a in members:
                self.member_of[a] = round_id
            asyncio.get_running_loop().create_task(self._drive(live))
            log.info("secure round %s: campaign %d, %s, %d devices, %d cells", round_id[:8], cohort.campaign_id,
                     cohort.hardware_class, len(members), len(cells))
            opened.append(round_id)
        if opened:
            self._announce()
            if self.wakeup is not None:
                self.wakeup.notify()  # long-polling members lease their invitations now
        return opened

    def _announce(self) -> None:
        if self.bus is not None:
            self.bus.publish("rounds")

    @property
    def leading(self) -> bool:
        return self.leadership is None or self.leadership.is_leader

    async def refresh(self) -> None:
        """A follower reads the open invitations again (the bus says they changed)."""
        if not self.leading:
            self.elsewhere = await asyncio.to_thread(self.store.open_invites)

    async def lead(self) -> None:
        """This replica leads now: the rounds of the one before it are gone (their claims stay, see above)."""
        self.elsewhere = {}
        await asyncio.to_thread(self.store.close_all_invites)
        self._announce()

    def invitation(self, agent_id: str) -> agent_pb2.SecureRoundInvite | None:
        """The round an agent should join now, if any (it has not advertised yet and stage 1 is open)."""
        if not self.leading:
            invite = self.elsewhere.get(agent_id)
            return agent_pb2.SecureRoundInvite.FromString(invite) if invite is not None else None
        round_id = self.member_of.get(agent_id)
        live = self.rounds.get(round_id) if round_id else None
        if live is None or live.round.stage != 1 or agent_id in live.answered[1]:
            return None
        return live.invite

    # ---- the stages -------------------------------------------------------------------------------
    async def answer(self, agent_id: str, m: agent_pb2.SecureRoundRequest) -> agent_pb2.SecureRoundResponse:
        """Takes one stage's message from a device, waits for the stage to close, returns the next one's input."""
        live = self.rounds.get(m.round_id)
        if live is None:
            if m.round_id in self.finished:
                return agent_pb2.SecureRoundResponse(next_stage=0, outcome=self.finished[m.round_id])
            raise NotFound(f"no secure round {m.round_id[:16]!r}")
        rnd = live.round
        if agent_id not in rnd.members:
            raise NotFound(f"no secure round {m.round_id[:16]!r} for this agent")
        if m.stage == 1:
            holds = tuple(m.holds)
            if sorted(holds) != live.holds[agent_id]:
                raise InvalidInput("a device holds the cells its reports said it holds, no more and no fewer")
            rnd.advertise(agent_id, Advertise(m.encryption_pk, m.masking_pk, m.seed_commitment, m.noise_commitment,
                                              holds))
        elif m.stage == 2:
            if len(m.shares) > MAX_SHARES:
                raise InvalidInput(f"at most {MAX_SHARES} sealed shares")
            rnd.share(agent_id, [SealedShare(s.sender, s.receiver, s.sealed) for s in m.shares])
        elif m.stage == 3:
            if len(m.masked) != 4 * rnd.contract.dim:
                raise InvalidInput(f"a masked vector is {rnd.contract.dim} uint32 values ({4 * rnd.contract.dim} bytes)")
            rnd.masked(agent_id, np.frombuffer(m.masked, dtype="<u4").astype(np.uint32))
            live.masked_sent = True
        elif m.stage == 4:
            if len(m.unmask) > MAX_SHARES:
                raise InvalidInput(f"at most {MAX_SHARES} unmasking shares")
            rnd.unmask(agent_id, [UnmaskShare(s.owner, s.kind, s.share) for s in m.unmask])
        else:
            raise InvalidInput(f"stage {m.stage} is not 1..4")
        live.answered[m.stage].add(agent_id)
        if len(live.answered[m.stage]) >= self._expected(live, m.stage):
            live.all_in.set()
        wait_s = min(max(m.wait_s, 1), self.stage_timeout_s + 5)
        try:
            await asyncio.wait_for(live.closed[m.stage].wait(), timeout=wait_s)
        except asyncio.TimeoutError:
            raise InvalidInput(f"stage {m.stage} of round {m.round_id[:8]} did not close within {wait_s:g} s") from None
        return self._next(live, agent_id, m.stage)

    def _expected(self, live: LiveRound, stage: int) -> int:
        rnd = live.round
        return {1: len(rnd.members), 2: len(rnd.index_of), 3: len(rnd.shares), 4: len(rnd.masked_inputs)}[stage]

    def _next(self, live: LiveRound, agent_id: str, stage: int) -> agent_pb2.SecureRoundResponse:
        rnd = live.round
        if live.outcome and (stage == 4 or rnd.stage < 0):
            return agent_pb2.SecureRoundResponse(next_stage=0, outcome=live.outcome)
        if stage == 1:
            return agent_pb2.SecureRoundResponse(next_stage=2, roster=[
                agent_pb2.RosterEntry(index=e.index, encryption_pk=e.advertise.encryption_pk,
                                      masking_pk=e.advertise.masking_pk, seed_commitment=e.advertise.seed_commitment,
                                      noise_commitment=e.advertise.noise_commitment,
                                      holds=list(e.advertise.holds)) for e in rnd.roster.entries])
        if stage == 2:
            if rnd.index_of.get(agent_id) not in rnd.shares:
                return agent_pb2.SecureRoundResponse(next_stage=0, outcome="dropped: shares came too late")
            return agent_pb2.SecureRoundResponse(next_stage=3, inbox=[
                agent_pb2.SealedShare(sender=s.sender, receiver=s.receiver, sealed=s.sealed)
                for s in rnd.inbox(agent_id)])
        if stage == 3:
            if rnd.index_of[agent_id] not in rnd.masked_inputs:
                return agent_pb2.SecureRoundResponse(next_stage=0, outcome="dropped: masked vector came too late")
            return agent_pb2.SecureRoundResponse(next_stage=4, survivors=live.survivors, denoise=rnd.denoise)
        return agent_pb2.SecureRoundResponse(next_stage=0, outcome=live.outcome)

    async def _drive(self, live: LiveRound) -> None:
        """Closes each stage when every expected device answered or its deadline passed; then publishes."""
        rnd = live.round
        closers = {1: rnd.close_advertise, 2: rnd.close_share, 3: rnd.close_masked}
        try:
            for stage in range(1, 5):
                live.all_in.clear()
                if len(live.answered[stage]) < self._expected(live, stage):
                    try:
                        await asyncio.wait_for(live.all_in.wait(), timeout=self.stage_timeout_s)
                    except asyncio.TimeoutError:
                        pass
                if stage < 4:
                    result = closers[stage]()
                    if stage == 1:
                        await self._close_invite(live)
                    if stage == 3:
                        live.survivors = result
                else:
                    started = time.perf_counter()
                    rnd.close_unmask()  # late shares are refused from here; the arithmetic runs off the loop
                    sums, survivors = await asyncio.to_thread(rnd.result)
                    live.unmask_s = time.perf_counter() - started
                    alive = [a for a, i in rnd.index_of.items() if i in rnd.masked_inputs]
                    holders = [[a for a in alive if slot in live.holds[a]] for slot in range(len(live.cells))]
                    folded = await asyncio.to_thread(
                        self.store.fold_cohort, rnd.contract, live.cohort.hardware_class, live.cohort.simulated,
                        live.cells, sums, holders)
                    live.outcome = f"published: {folded} cells from {survivors} devices"
                    log.info("secure round %s: unmasked in %.3f s, %d bytes received", rnd.round_id[:8],
                             live.unmask_s, rnd.bytes_in)
                live.closed[stage].set()
        except (RoundFailed, EdgeAtlasError) as exc:
            live.outcome = f"nothing published: {exc}"
            rnd.stage = -1
            if not live.masked_sent:
                await asyncio.to_thread(self.store.release_secure, rnd.round_id)
            for event in live.closed.values():
                event.set()
        finally:
            if live.invited:  # it failed in stage 1: its invitation goes too
                await self._close_invite(live)
            log.info("secure round %s: %s", rnd.round_id[:8], live.outcome)
            self.finished[rnd.round_id] = live.outcome
            self.rounds.pop(rnd.round_id, None)
            for a in rnd.members:
                if self.member_of.get(a) == rnd.round_id:
                    del self.member_of[a]
            if len(self.finished) > 10_000:
                self.finished.pop(next(iter(self.finished)))


    async def _close_invite(self, live: LiveRound) -> None:
        live.invited = False
        try:
            await asyncio.to_thread(self.store.close_invite, live.round.round_id)
        except Exception:  # the database is away: a new leader clears every invitation anyway
            log.exception("secure round %s: could not close its invitation", live.round.round_id[:8])
        self._announce()


async def form_rounds(rounds: SecureRounds, every_s: float = 2.0) -> None:
    """Looks for cohorts every few seconds, for as long as the server runs (on the leading replica)."""
    while True:
        if not rounds.leading:
            await asyncio.sleep(every_s)
            continue
        try:
            await rounds.form()
        except Exception:  # a bad cohort must not stop the others' rounds
            log.exception("forming secure rounds failed")
        await asyncio.sleep(every_s)
