"""The coordinator's side of a secure aggregation round: route, collect, unmask only the cohort's sum.

A round moves through four stages; each device answers each stage once (a second answer is a replay and
is refused, the first one stands). A stage closes when every expected device answered or its deadline
passes; whoever did not answer has dropped out. The coordinator never holds a device's exact vector:
what it receives are public keys, sealed shares it cannot open, masked vectors that look uniform, and at
the end one share per (neighbour, device) of either a seed or a masking key, never both of one device,
plus shares of the noise seeds of the survivors whose removable noise the contract lets it take out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeatlas.protos import masking
from edgeatlas.protos.errors import Conflict, InvalidInput
from edgeatlas.protos.noise import discrete_gaussian
from edgeatlas.protos.secure import (
    MODULUS, Advertise, CellSum, Roster, RosterEntry, SealedShare, SecureContract, UnmaskShare, decode,
    removable_noise)

PUBLIC_KEY_BYTES = 32
MAX_RECONSTRUCTION_TRIES = 32  # subsets of shares tried when a device sent a wrong one


class RoundFailed(InvalidInput):
    """The round cannot publish: too few survivors, a secret that cannot be rebuilt, or a tampered sum."""


class Replay(Conflict):
    """A device answered a stage it had already answered."""


@dataclass
class Round:
    """One round for one (campaign, hardware class) cohort. `members` are the devices invited, by id."""

    round_id: str
    contract: SecureContract
    members: list[str]
    stage: int = 1
    advertised: dict[str, Advertise] = field(default_factory=dict)
    roster: Roster | None = None
    index_of: dict[str, int] = field(default_factory=dict)
    shares: dict[int, list[SealedShare]] = field(default_factory=dict)  # sender → its sealed shares
    masked_inputs: dict[int, np.ndarray] = field(default_factory=dict)
    unmasked: dict[int, list[UnmaskShare]] = field(default_factory=dict)
    denoise: list[int] = field(default_factory=list)  # survivors whose removable noise comes out
    bytes_in: int = 0
    sampler: Callable = discrete_gaussian  # the devices' sampler, to redraw removable noise from its seed

    def _expect(self, stage: int, device: str) -> None:
        if self.stage != stage:
            raise InvalidInput(f"secure round {self.round_id} is at stage {self.stage}, not {stage}")
        if device not in self.members:
            raise InvalidInput(f"device {device} is not in secure round {self.round_id}")

    # stage 1 ---------------------------------------------------------------------------------------
    def advertise(self, device: str, adv: Advertise) -> None:
        if device in self.advertised:  # a replay, before or after the stage closed
            raise Replay(f"device {device} already advertised its keys in round {self.round_id}")
        self._expect(1, device)
        if len(adv.encryption_pk) != PUBLIC_KEY_BYTES or len(adv.masking_pk) != PUBLIC_KEY_BYTES or \
                len(adv.seed_commitment) != 32 or len(adv.noise_commitment) != 32:
            raise InvalidInput("advertised keys are 32 bytes each, and each commitment 32")
        if len(set(adv.holds)) != len(adv.holds) or any(not 0 <= c < self.contract.cells for c in adv.holds):
            raise InvalidInput(f"held cells must be distinct slots in 0..{self.contract.cells - 1}")
        known = {k for a in self.advertised.values() for k in (a.encryption_pk, a.masking_pk)}
        if adv.encryption_pk in known or adv.masking_pk in known or adv.encryption_pk == adv.masking_pk:
            raise InvalidInput("an advertised public key is already in the round")
        self.advertised[device] = adv
        self.bytes_in += 2 * PUBLIC_KEY_BYTES + 64 + 4 * len(adv.holds)

    def close_advertise(self) -> Roster:
        """Everyone who advertised, in the order they were invited; the round needs min_survivors of them."""
        self._close(1, len(self.advertised), "advertised keys")
        devices = [d for d in self.members if d in self.advertised]
        self.index_of = {d: i for i, d in enumerate(devices)}
        self.roster = Roster(self.round_id, self.contract,
                             tuple(RosterEntry(i, self.advertised[d]) for i, d in enumerate(devices)))
        return self.roster

    def _close(self, stage: int, answered: int, what: str) -> None:
        if self.stage != stage:
            raise InvalidInput(f"secure round {self.round_id} is at stage {self.stage}, not {stage}")
        if answered < self.contract.min_survivors:
            self.stage = -1
            raise RoundFailed(f"secure round {self.round_id}: {answered} devices {what}, fewer than the "
                              f"{self.contract.min_survivors} it needs; nothing is published")
        self.stage = stage + 1

    # stage 2 ---------------------------------------------------------------------------------------
    def share(self, device: str, sealed: list[SealedShare]) -> None:
        i = self._answering(2, device, self.shares, "shares")
        assert self.roster is not None
        peers = self.roster.neighbours(i)
        if sorted(s.receiver for s in sealed) != peers or any(s.sender != i for s in sealed):
            raise InvalidInput(f"device {device} must send one sealed share to each of its {len(peers)} neighbours")
        if any(len(s.sealed) > 256 for s in sealed):
            raise InvalidInput("a sealed share is longer than any honest one")
        self.shares[i] = list(sealed)
        self.bytes_in += sum(len(s.sealed) + 8 for s in sealed)

    def _answering(self, stage: int, device: str, answered: dict, what: str) -> int:
        """The roster index of a device answering `stage`, whose answers so far are `answered` (by index):
        a second answer is a Replay, before or after the stage closed."""
        if self.index_of.get(device, -1) in answered:
            raise Replay(f"device {device} already sent its {what} in round {self.round_id}")
        self._expect(stage, device)
        return self._index(device)

    def _index(self, device: str) -> int:
        if device not in self.index_of:
            raise InvalidInput(f"device {device} is not on round {self.round_id}'s roster")
        return self.index_of[device]

    def close_share(self) -> None:
        self._close(2, len(self.shares), "sent their shares")

    def inbox(self, device: str) -> list[SealedShare]:
        """Stage 3's input for a device: the shares sealed for it by neighbours that finished stage 2."""
        i = self._index(device)
        if self.stage != 3 or i not in self.shares:
            raise InvalidInput(f"device {device} has no inbox at stage {self.stage}")
        return [s for sender, sent in sorted(self.shares.items()) for s in sent if s.receiver == i]

    # stage 3 ---------------------------------------------------------------------------------------
    def masked(self, device: str, values: np.ndarray) -> None:
        i = self._answering(3, device, self.masked_inputs, "masked vector")
        if i not in self.shares:
            raise InvalidInput(f"device {device} sent no shares, so its masked vector cannot be unmasked")
        values = np.asarray(values)
        if values.shape != (self.contract.dim,) or values.dtype != np.uint32:
            raise InvalidInput(f"a masked vector is {self.contract.dim} uint32 values")
        self.masked_inputs[i] = values.copy()
        self.bytes_in += 4 * self.contract.dim

    def close_masked(self) -> list[int]:
        """The survivors whose masked vectors count; stage 4 asks them for shares, and for the noise seeds of
        `denoise`, the survivors whose removable noise comes out."""
        self._close(3, len(self.masked_inputs), "sent masked vectors")
        survivors = sorted(self.masked_inputs)
        self.denoise = self.contract.denoise(survivors)
        return survivors

    # stage 4 ---------------------------------------------------------------------------------------
    def unmask(self, device: str, shares: list[UnmaskShare]) -> None:
        i = self._answering(4, device, self.unmasked, "unmasking shares")
        if i not in self.masked_inputs:
            raise InvalidInput(f"device {device} is not a survivor of round {self.round_id}")
        alive = set(self.masked_inputs)
        assert self.roster is not None
        shared = [v for v in self.roster.neighbours(i) if v in self.shares]
        expected = {(v, "seed" if v in alive else "key") for v in shared} | \
            {(v, "noise") for v in shared if v in self.denoise}
        if {(s.owner, s.kind) for s in shares} != expected or len(shares) != len(expected):
            raise InvalidInput(f"device {device} must send one seed share per surviving neighbour, one key share "
                               "per neighbour that dropped out, and one noise share per neighbour to denoise")
        self.unmasked[i] = list(shares)
        self.bytes_in += sum(len(s.share) + 8 for s in shares)

    def close_unmask(self) -> None:
        """No more unmasking shares: from here the round only computes (result() may run in a thread)."""
        if self.stage != 4:
            raise InvalidInput(f"secure round {self.round_id} is at stage {self.stage}, not 4")
        self.stage = 5

    def result(self) -> tuple[list[CellSum], int]:
        """Unmasks the sum of the survivors' vectors and decodes it: (cells, survivors)."""
        if self.stage == 4:
            self.close_unmask()
        if self.stage != 5:
            raise InvalidInput(f"secure round {self.round_id} has no result at stage {self.stage}")
        assert self.roster is not None
        alive = sorted(self.masked_inputs)
        dim, threshold = self.contract.dim, self.roster.threshold
        total = np.zeros(dim, dtype=np.uint64)
        for y in self.masked_inputs.values():
            total = (total + y) % MODULUS
        for u in alive:  # survivors' self-masks
            seed = self._rebuild(u, "seed", masking.SEED_BYTES, threshold,
                                 lambda s, u=u: masking.commit(s) == self.roster.entries[u].advertise.seed_commitment)
            total = (total + MODULUS - masking.mask(seed, dim).astype(np.uint64)) % MODULUS
        for u in self.denoise:  # survivors whose removable noise the contract lets come out
            noise_seed = self._rebuild(
                u, "noise", masking.SEED_BYTES, threshold,
                lambda s, u=u: masking.commit(s) == self.roster.entries[u].advertise.noise_commitment)
            noise = removable_noise(self.contract, noise_seed, self.sampler) % MODULUS
            total = (total + MODULUS - noise.astype(np.uint64)) % MODULUS
        for v in sorted(set(self.shares) - set(alive)):  # dropped after sharing: their pairwise masks
            pk = self.roster.entries[v].advertise.masking_pk
            key = masking.KeyPair.from_private(self._rebuild(
                v, "key", masking.KEY_BYTES, threshold, lambda s: masking.KeyPair.from_private(s).public == pk))
            for u in self.roster.neighbours(v):
                if u not in self.masked_inputs:
                    continue
                m = masking.mask(key.agree(self.roster.entries[u].advertise.masking_pk,
                                           masking.pair_info(self.round_id, "mask", u, v)), dim).astype(np.uint64)
                # u added +m if u < v, −m otherwise: take it back out
                total = (total + MODULUS - m) % MODULUS if u < v else (total + m) % MODULUS
        claimed = [sum(1 for u in alive if c in self.roster.entries[u].advertise.holds)
                   for c in range(self.contract.cells)]
        try:
            return decode(self.contract, [int(x) for x in total], claimed, len(alive)), len(alive)
        except InvalidInput as exc:
            raise RoundFailed(f"secure round {self.round_id}: {exc}; nothing is published") from None

    def _rebuild(self, owner: int, kind: str, length: int, threshold: int, valid) -> bytes:
        """A device's secret from its neighbours' shares; subsets are tried until one passes `valid`
        (the seed's commitment, the key's advertised public half), so a wrong share cannot poison it."""
        assert self.roster is not None
        peers = self.roster.neighbours(owner)
        held = []
        for holder, sent in self.unmasked.items():
            for s in sent:
                if s.owner == owner and s.kind == kind and len(s.share) == length:
                    held.append((peers.index(holder) + 1, s.share))  # its slot in the owner's split
        if len(held) < threshold:
            raise RoundFailed(f"secure round {self.round_id}: {len(held)} shares of device {owner}'s {kind}, "
                              f"fewer than {threshold}; nothing is published")
        pick = random.Random(f"{self.round_id}|{owner}|{kind}")  # a search order, not a secret
        subsets = [held[:threshold]] + [pick.sample(held, threshold) for _ in range(MAX_RECONSTRUCTION_TRIES - 1)]
        for subset in subsets:
            secret = masking.combine(dict(subset), length)
            if valid(secret):
                return secret
        raise RoundFailed(f"secure round {self.round_id}: device {owner}'s {kind} does not rebuild from its "
                          "shares (a device sent a wrong one); nothing is published")

