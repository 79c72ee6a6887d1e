"""A device's part in one secure aggregation round (SecAgg+, Bell et al. 2020, with distributed noise).

The device's exact values never leave it. It sends: two public keys and two commitments (stage 1); shares
of its secrets sealed for its neighbours (stage 2); its vector plus its noise (fixed and removable
components) plus masks that only the whole cohort's sum cancels (stage 3); and, per neighbour, one share
of either its seed or its masking key, never both, plus a share of its noise seed where the coordinator
may take that neighbour's removable noise out, in the number the contract allows and no more (stage 4).
protos/secure.py holds the contract, protos/masking.py the cryptography; this module holds the device's
rules and refuses what an honest coordinator never sends.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path

import numpy as np

from edgeatlas.protos.noise import discrete_gaussian
from edgeatlas.agent.privacy.release import to_grid
from edgeatlas.agent.state import write_private
from edgeatlas.protos import PROTOCOL_VERSION, convert, masking
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.secure import (
    MODULUS, Advertise, Roster, RosterEntry, SealedShare, SecureContract, UnmaskShare, noise_components,
    removable_noise)
from edgeatlas.v1 import agent_pb2

_S, _K = masking.SEED_BYTES, masking.KEY_BYTES
SEED, KEY, NOISE = slice(0, _S), slice(_S, _S + _K), slice(_S + _K, 2 * _S + _K)  # one opened share's parts
SHARE_BYTES = NOISE.stop


def cell_values(contract: SecureContract, logs: dict[str, float]) -> list[int]:
    """One held cell's coordinates before noise: presence, each statistic on its grid, clipped."""
    p = contract.privacy
    grid, clipped = [], False
    for name in contract.statistics:
        lo, hi = p.log_bounds(name)
        value = logs.get(name)
        if value is None or not math.isfinite(value):
            raise InvalidInput(f"a held cell lacks statistic {name}")
        clipped |= not lo <= value <= hi
        grid.append(to_grid(value, p, name))
    return [1, *grid, contract.clip_weight if clipped else 0]


def vector(contract: SecureContract, cells: dict[int, dict[str, float]]) -> np.ndarray:
    """The device's exact vector: its held cells' coordinates, zeros elsewhere (int64, dim)."""
    out = np.zeros(contract.dim, dtype=np.int64)
    for slot, logs in cells.items():
        if not 0 <= slot < contract.cells:
            raise InvalidInput(f"cell slot {slot} is outside the round's {contract.cells}")
        out[slot * contract.width:(slot + 1) * contract.width] = cell_values(contract, logs)
    return out


def noise_share(contract: SecureContract, noise_seed: bytes, sampler=discrete_gaussian) -> np.ndarray:
    """The device's noise on every noised coordinate: its fixed components from the OS's randomness, its
    removable ones from its noise seed (presence carries none)."""
    return noise_components(contract, contract.fixed, sampler=sampler) + \
        removable_noise(contract, noise_seed, sampler)


class Participant:
    """One device in one round, stage by stage; each stage answers once, in order."""

    def __init__(self, round_id: str, contract: SecureContract, cells: dict[int, dict[str, float]],
                 sampler=discrete_gaussian):
        self.round_id, self.contract = round_id, contract.check()
        self.exact = vector(contract, cells)
        self.holds = tuple(sorted(cells))
        self.sampler = sampler
        self.encryption = masking.KeyPair.generate()
        self.masking = masking.KeyPair.generate()
        self.seed = secrets.token_bytes(masking.SEED_BYTES)
        self.noise_seed = secrets.token_bytes(masking.SEED_BYTES)
        self.stage = 0
        self.roster: Roster | None = None
        self.index = -1
        self.shared_with: set[int] = set()  # neighbours whose shares this device holds (stage 2 survivors)
        self.held: dict[int, bytes] = {}  # neighbour index → its share for this device

    def _advance(self, to: int) -> None:
        if self.stage != to - 1:
            raise InvalidInput(f"secure round {self.round_id}: stage {to} asked at stage {self.stage}")
        self.stage = to

    def advertise(self) -> Advertise:
        self._advance(1)
        return Advertise(self.encryption.public, self.masking.public, masking.commit(self.seed),
                         masking.commit(self.noise_seed), self.holds)

    def share(self, roster: Roster) -> list[SealedShare]:
        """Stage 2: checks the roster, then seals one share of its seed, masking key and noise seed per
        neighbour."""
        self._advance(2)
        if roster.round_id != self.round_id or roster.contract != self.contract:
            raise InvalidInput("the roster is for another round or contract")
        mine = [e.index for e in roster.entries if e.advertise.encryption_pk == self.encryption.public
                and e.advertise.masking_pk == self.masking.public]
        if len(mine) != 1 or [e.index for e in roster.entries] != list(range(len(roster.entries))):
            raise InvalidInput("the roster does not list this device exactly once, in order")
        keys = [k for e in roster.entries for k in (e.advertise.encryption_pk, e.advertise.masking_pk)]
        keys += [c for e in roster.entries for c in (e.advertise.seed_commitment, e.advertise.noise_commitment)]
        if len(set(keys)) != len(keys):
            raise InvalidInput("the roster repeats a public key or a commitment")
        if not self.contract.min_survivors <= len(roster.entries) <= self.contract.cohort:
            raise InvalidInput(f"the roster has {len(roster.entries)} devices, not the round's "
                               f"{self.contract.min_survivors}..{self.contract.cohort}")
        self.roster, self.index = roster, mine[0]
        peers = roster.neighbours(self.index)
        seed_shares = masking.split(self.seed, roster.threshold, len(peers))
        key_shares = masking.split(self.masking.private, roster.threshold, len(peers))
        noise_shares = masking.split(self.noise_seed, roster.threshold, len(peers))
        out = []
        for slot, v in enumerate(peers):
            key = self.encryption.agree(roster.entries[v].advertise.encryption_pk,
                                        masking.pair_info(self.round_id, "seal", self.index, v))
            share = seed_shares[slot] + key_shares[slot] + noise_shares[slot]
            out.append(SealedShare(self.index, v, masking.seal(key, share, self._aad(self.index, v))))
        return out

    def _aad(self, sender: int, receiver: int) -> bytes:
        return f"{self.round_id}|{sender}->{receiver}".encode()

    def masked(self, inbox: list[SealedShare]) -> np.ndarray:
        """Stage 3: opens its neighbours' shares, then sends its vector + noise share + masks (uint32).
        The caller records the round's ε in the ledger before this leaves the device."""
        self._advance(3)
        assert self.roster is not None
        peers = set(self.roster.neighbours(self.index))
        for item in inbox:
            if item.receiver != self.index or item.sender not in peers or item.sender in self.held:
                raise InvalidInput(f"a share from {item.sender} to {item.receiver} was not for this device")
            key = self.encryption.agree(self.roster.entries[item.sender].advertise.encryption_pk,
                                        masking.pair_info(self.round_id, "seal", item.sender, self.index))
            opened = masking.unseal(key, item.sealed, self._aad(item.sender, self.index))
            if len(opened) != SHARE_BYTES:
                raise InvalidInput(f"the share from {item.sender} has {len(opened)} bytes, not {SHARE_BYTES}")
            self.held[item.sender] = opened
        if len(self.held) < self.roster.threshold:  # its own seed could not be rebuilt: spend no ε on it
            raise InvalidInput(f"only {len(self.held)} neighbours shared, fewer than the {self.roster.threshold} "
                               "the round needs to finish")
        self.shared_with = set(self.held)
        total = (self.exact + noise_share(self.contract, self.noise_seed, self.sampler)) % MODULUS
        total = (total.astype(np.uint64) + masking.mask(self.seed, self.contract.dim)) % MODULUS
        for v in sorted(self.shared_with):
            pair = self.masking.agree(self.roster.entries[v].advertise.masking_pk,
                                      masking.pair_info(self.round_id, "mask", self.index, v))
            m = masking.mask(pair, self.contract.dim).astype(np.uint64)
            total = (total + m) % MODULUS if self.index < v else (total + MODULUS - m) % MODULUS
        return total.astype(np.uint32)

    def unmask(self, survivors: list[int], denoise: list[int]) -> list[UnmaskShare]:
        """Stage 4: for each neighbour that shared, its seed share if it survived, else its key share; and
        its noise-seed share if it is one of the survivors the contract lets the coordinator denoise."""
        self._advance(4)
        assert self.roster is not None
        alive = set(survivors)
        if len(alive) != len(survivors) or self.index not in alive or \
                len(alive) < self.contract.min_survivors or not alive <= set(range(len(self.roster.entries))):
            raise InvalidInput(f"the survivor list ({len(alive)} devices) is not one this round can publish")
        if list(denoise) != self.contract.denoise(survivors):
            raise InvalidInput(f"the coordinator asks to remove the noise of {len(denoise)} survivors; with "
                               f"{len(alive)} surviving it may remove {self.contract.denoised(len(alive))}, "
                               "the first in roster order")
        out = [UnmaskShare(v, "seed", self.held[v][SEED]) if v in alive else
               UnmaskShare(v, "key", self.held[v][KEY]) for v in sorted(self.shared_with)]
        return out + [UnmaskShare(v, "noise", self.held[v][NOISE]) for v in denoise if v in self.shared_with]


# ---- over the wire: the stages as one generator, driven by the agent (blocking) or the simulator (async) ----

def contract_of(invite) -> SecureContract:
    """The round's contract from its invitation (agent_pb2.SecureRoundInvite), checked."""
    return SecureContract(convert.privacy_from_pb(invite.privacy).check(), len(invite.cells), invite.cohort,
                          invite.min_survivors).check()


def held_cells(invite, held: dict[tuple[str, str], dict[str, float]]) -> dict[int, dict[str, float]]:
    """Slot → statistic logs, for the invitation's cells this device holds ((model sha256, setting key) → logs)."""
    return {slot: held[(c.model_sha256, c.setting_key)] for slot, c in enumerate(invite.cells)
            if (c.model_sha256, c.setting_key) in held}


def participant_for(invite, held: dict[tuple[str, str], dict[str, float]]) -> Participant | None:
    """The device's part in an invited round with the values it holds of the round's cells; None where it
    holds none. InvalidInput for an invitation no honest coordinator sends."""
    cells = held_cells(invite, held)
    return Participant(invite.round_id, contract_of(invite), cells) if cells else None


def stages(p: Participant, invite, before_masked):
    """Yields each stage's SecureRoundRequest, takes the coordinator's answer, returns the round's outcome.
    `before_masked()` runs before the masked vector leaves (the ledger's record)."""
    wait_s = int(invite.stage_timeout_s) + 5

    def request(stage: int, **fields):
        return agent_pb2.SecureRoundRequest(protocol_version=PROTOCOL_VERSION, round_id=invite.round_id,
                                            stage=stage, wait_s=wait_s, **fields)

    adv = p.advertise()
    resp = yield request(1, encryption_pk=adv.encryption_pk, masking_pk=adv.masking_pk,
                         seed_commitment=adv.seed_commitment, noise_commitment=adv.noise_commitment,
                         holds=list(adv.holds))
    if resp.next_stage != 2:
        return resp.outcome
    roster = Roster(invite.round_id, p.contract, tuple(
        RosterEntry(e.index, Advertise(e.encryption_pk, e.masking_pk, e.seed_commitment, e.noise_commitment,
                                       tuple(e.holds)))
        for e in resp.roster))
    sealed = p.share(roster)
    resp = yield request(2, shares=[agent_pb2.SealedShare(sender=s.sender, receiver=s.receiver, sealed=s.sealed)
                                    for s in sealed])
    if resp.next_stage != 3:
        return resp.outcome
    masked = p.masked([SealedShare(s.sender, s.receiver, s.sealed) for s in resp.inbox])
    before_masked()
    resp = yield request(3, masked=masked.astype("<u4").tobytes())
    if resp.next_stage != 4:
        return resp.outcome
    shares = p.unmask(list(resp.survivors), list(resp.denoise))
    resp = yield request(4, unmask=[agent_pb2.UnmaskShare(owner=s.owner, kind=s.kind, share=s.share)
                                    for s in shares])
    return resp.outcome


def drive(protocol, call) -> str:
    """Runs `stages` with a blocking call(request) → response."""
    try:
        request = next(protocol)
        while True:
            request = protocol.send(call(request))
    except StopIteration as done:
        return done.value or ""


async def drive_async(protocol, call) -> str:
    """Runs `stages` with an async call(request) → response."""
    try:
        request = next(protocol)
        while True:
            request = protocol.send(await call(request))
    except StopIteration as done:
        return done.value or ""


class HeldValues:
    """The exact statistics of secure-mode results, waiting on the device for their cohort's round
    (held.json in the state directory, private like the rest of it); one value per (model, setting)."""

    MAX_CELLS = 2000

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []

    def _write(self, cells: list[dict]) -> None:
        write_private(self.path, json.dumps(cells[-self.MAX_CELLS:]))

    def add(self, model_sha256: str, setting_key: str, logs: dict[str, float]) -> None:
        cells = [c for c in self._read() if (c["model_sha256"], c["setting_key"]) != (model_sha256, setting_key)]
        self._write(cells + [{"model_sha256": model_sha256, "setting_key": setting_key, "logs": logs}])

    def all(self) -> dict[tuple[str, str], dict[str, float]]:
        return {(c["model_sha256"], c["setting_key"]): c["logs"] for c in self._read()}

    def consume(self, keys) -> None:
        """Forgets values a round has summed: they are never sent again."""
        gone = set(keys)
        self._write([c for c in self._read() if (c["model_sha256"], c["setting_key"]) not in gone])
