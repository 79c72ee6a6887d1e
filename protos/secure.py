"""Secure aggregation with distributed noise, the shared contract: a round's vector, its noise, its privacy.

A cohort of devices of one hardware class sums one vector each; the coordinator learns only the sum.
Each device's vector holds, for every cell slot of the round, [presence, statistic₁..d, clipped]:
- presence: 1 where the device holds a valid result of the cell. It is public already (the device's
  report said so), so it carries no noise, and its exact sum checks the cohort's honesty;
- each statistic: the log value clipped to the campaign's public bounds and unbiasedly rounded onto the
  grid 0..2^bits (agent/privacy/release.py), plus the device's share of the noise;
- clipped: `clip_weight` if any statistic fell outside the bounds, plus the noise share: its sum
  tells how often the bounds bit, in units of `clip_weight`.

Noise (Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning with
Secure Aggregation", ICML 2021): every noised coordinate of the published sum keeps at least M
independent discrete Gaussian components of variance v, M·v ≥ σ², where σ² is what a trusted curator
adds for the campaign's ε (δ) per cell under the gaussian mechanism of protos/privacy.py. The sum of
discrete Gaussians is not exactly one, and the round's Rényi curve (KLS21, Prop. 14, over the M kept
components) pays for the difference; more components than M only add noise (post-processing).

How many each device adds, so that dropouts cost neither privacy nor accuracy (in the spirit of Dordis's
"add, then remove" noise, Jiang et al., EuroSys 2024): v = σ²/2N, and each of the N devices adds
`per_device` = ⌈M/t⌉ components, where t is the fewest survivors the round accepts, so that t survivors
alone carry M. `fixed` of them come from the OS's randomness; the rest, `removable`, come from a seeded
keystream whose seed the device secret-shares with its neighbours, like its mask seed. Once the coordinator
knows the S survivors, it rebuilds the noise seeds of the first `denoised(S)` of them and takes their
removable components back out, leaving `kept(S)` ≥ M. With every device surviving that leaves σ² (to
rounding), the central floor; with a third gone, nothing is removed. The coordinator learns the removed
components, which is why they never count towards M.

Neighbouring inputs are any two devices (one device's whole vector replaced), as for a local report.
Arithmetic is modulo 2^32: the masks are uniform there, and the true sum with its noise stays far inside.
"""

from __future__ import annotations

import functools
import math
import secrets
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.masking import Keystream
from edgeatlas.protos.noise import discrete_gaussian
from edgeatlas.protos.privacy import ORDERS, PrivacyParams, gaussian_tail, rdp_to_epsilon, rho_for, round_up

MODULUS_BITS = 32
MODULUS = 2 ** MODULUS_BITS
PROTOCOL = "edgeatlas.secagg/v1"
DEFAULT_COHORT_MIN = 10
DEFAULT_MAX_DROPOUT = Fraction(1, 3)  # a round still yields its sum when up to a third vanish after key exchange
MAX_COHORT = 5_000
MAX_CELLS = 256  # cell slots in one round's vector
MIN_DEVICE_SIGMA = 1.0  # below this the sum of components drifts from a discrete Gaussian (τ of KLS21 grows)
FIXED_PER_DEVICE = 2  # components of σ²/(2N) each: with every device surviving, the fixed ones alone are σ²
CLIP_SHARE = 1 / 32  # the clip-rate coordinate's part of a cell's ρ


@dataclass(frozen=True)
class SecureContract:
    """One aggregation round's public parameters: the campaign's privacy contract, the vector's size,
    the cohort and the fewest survivors whose sum is published. The noise's sizes derive from them once
    (cached: decoding a sum asks for them per cell and statistic)."""

    privacy: PrivacyParams
    cells: int
    cohort: int
    min_survivors: int
    mechanism: str = field(default="gaussian", init=False)  # for the ledger's composition rule

    def check(self) -> "SecureContract":
        self.privacy.check()
        if self.privacy.mechanism != "gaussian":
            raise InvalidInput("secure aggregation adds discrete Gaussian shares: the campaign's mechanism "
                               f"must be gaussian, not {self.privacy.mechanism}")
        if not 1 <= self.cells <= MAX_CELLS:
            raise InvalidInput(f"a secure round holds 1..{MAX_CELLS} cells, not {self.cells}")
        if not 2 <= self.cohort <= MAX_COHORT:
            raise InvalidInput(f"a secure cohort has 2..{MAX_COHORT} devices, not {self.cohort}")
        if not 2 <= self.min_survivors <= self.cohort:
            raise InvalidInput(f"a round's minimum survivors {self.min_survivors} is not in 2..{self.cohort}")
        reach = self.cohort * max(self.privacy.steps, self.clip_weight) + \
            8 * math.sqrt(self.cohort * self.per_device * float(self.unit_sigma2))
        if reach >= MODULUS // 2:
            raise InvalidInput(f"a cohort of {self.cohort} devices would overflow the {MODULUS_BITS}-bit sum")
        return self

    @classmethod
    def for_cohort(cls, privacy: PrivacyParams, cells: int, cohort: int,
                   max_dropout: Fraction = DEFAULT_MAX_DROPOUT) -> "SecureContract":
        """A round that tolerates `max_dropout` of the cohort vanishing after key exchange."""
        survivors = max(2, math.ceil(cohort * (1 - max_dropout)))
        return cls(privacy, cells, cohort, min(survivors, cohort)).check()

    @property
    def statistics(self) -> tuple[str, ...]:
        return self.privacy.statistics

    @property
    def width(self) -> int:
        """Coordinates per cell: presence, the statistics, clipped."""
        return len(self.statistics) + 2

    @property
    def dim(self) -> int:
        return self.cells * self.width

    @property
    def clip_weight(self) -> int:
        """The clipped coordinate's value when a device clipped: its share of ρ is CLIP_SHARE, at the noise
        the statistics need (one σ for every noised coordinate, as KLS21's bound assumes)."""
        d, steps = len(self.privacy.statistics), self.privacy.steps
        return max(1, math.floor(math.sqrt(CLIP_SHARE / (1 - CLIP_SHARE) * d) * steps))

    def _sensitivity_sq(self) -> int:
        """One cell's squared L2 change when a device's vector is replaced by another's."""
        return len(self.statistics) * self.privacy.steps ** 2 + self.clip_weight ** 2

    @functools.cached_property
    def sigma2(self) -> float:
        """Variance of the total noise on each noised coordinate (grid units), at least what a trusted
        curator adds for the campaign's ρ per cell."""
        return self._sensitivity_sq() / (2 * rho_for(self.privacy.epsilon, self.privacy.delta))

    @functools.cached_property
    def unit_sigma2(self) -> Fraction:
        """One noise component's variance: σ²/(2N), never below MIN_DEVICE_SIGMA², rounded up to a fraction
        (exact sampling)."""
        share = Fraction(self.sigma2) / (FIXED_PER_DEVICE * self.cohort)  # exact: M must come out at 2N
        return round_up(max(share, Fraction(MIN_DEVICE_SIGMA) ** 2))

    @functools.cached_property
    def needed(self) -> int:
        """M: the components every published coordinate keeps, M·v ≥ σ²."""
        return math.ceil(Fraction(self.sigma2) / self.unit_sigma2)

    @functools.cached_property
    def per_device(self) -> int:
        """Components each device adds: the fewest survivors, t, carry M between them."""
        return -(-self.needed // self.min_survivors)

    @functools.cached_property
    def fixed(self) -> int:
        """Components from the OS's randomness, never removed: with every device surviving they are M."""
        return min(self.per_device, -(-self.needed // self.cohort))

    @property
    def removable(self) -> int:
        """Components from the device's noise seed, which the coordinator may take back out."""
        return self.per_device - self.fixed

    def denoised(self, survivors: int) -> int:
        """How many of S survivors have their removable components taken out: as many as leave ≥ M."""
        if self.removable == 0 or survivors < self.min_survivors:
            return 0
        return min(survivors, (survivors * self.per_device - self.needed) // self.removable)

    def denoise(self, survivors: list[int]) -> list[int]:
        """The survivors whose removable noise is taken out: the first denoised(S) of them, in roster order.
        One rule, so that every device can check the list it is sent."""
        return sorted(survivors)[:self.denoised(len(survivors))]

    def kept(self, survivors: int) -> int:
        """Components left on each coordinate of the published sum of S survivors."""
        return survivors * self.per_device - self.denoised(survivors) * self.removable

    def noise_variance_log(self, statistic: str, survivors: int) -> float:
        """Variance of a statistic's published noise in (natural log)² units, for S survivors."""
        return self.kept(survivors) * float(self.unit_sigma2) * self.privacy.step_log(statistic) ** 2

    def tau(self) -> float:
        """KLS21's distance of a sum of M discrete Gaussians from one discrete Gaussian."""
        s2 = float(self.unit_sigma2)
        return 10 * sum(math.exp(-2 * math.pi ** 2 * s2 * k / (k + 1)) for k in range(1, self.needed))

    def rdp(self, alpha: float) -> float:
        """Rényi DP of the published sum at order alpha: it keeps M honest components whatever the survivors
        (KLS21, Prop. 14, with n = M components of variance v)."""
        n, s2, tau = self.needed, float(self.unit_sigma2), self.tau()
        d, steps, w = len(self.statistics), self.privacy.steps, self.clip_weight
        l2_sq = self.cells * self._sensitivity_sq()
        l1 = self.cells * (d * steps + w)
        noised = self.cells * (d + 1)
        scale = math.sqrt(n * s2)
        return min(alpha * l2_sq / (2 * n * s2) + tau * noised,
                   alpha / 2 * (l2_sq / (n * s2) + 2 * l1 * tau / scale + tau ** 2 * noised),
                   alpha / 2 * (math.sqrt(l2_sq) / scale + tau * math.sqrt(noised)) ** 2)

    def epsilon(self, delta: float | None = None) -> float:
        """The round's ε at δ (the campaign's by default)."""
        return rdp_to_epsilon({a: self.rdp(a) for a in ORDERS}, delta or self.privacy.delta)

    def describe(self) -> str:
        return (f"secure gaussian ε={self.privacy.epsilon:g} δ={self.privacy.delta:g} per cell, "
                f"{self.cohort} devices, published with ≥ {self.min_survivors}")

    def to_dict(self) -> dict:
        return {"privacy": self.privacy.to_dict(), "cells": self.cells, "cohort": self.cohort,
                "min_survivors": self.min_survivors}

    @classmethod
    def from_dict(cls, d: dict) -> "SecureContract":
        try:
            return cls(PrivacyParams.from_dict(d["privacy"]), int(d["cells"]), int(d["cohort"]),
                       int(d["min_survivors"])).check()
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"secure contract is malformed: {exc}") from None


@dataclass(frozen=True)
class CellSum:
    """One cell of a decoded cohort sum: how many devices hold it, each statistic's noised log mean and
    its noise variance, and how many of them clipped (noised, may be fractional or negative)."""

    devices: int
    log_means: dict[str, float]
    noise_var_log: dict[str, float]  # of each mean, (natural log)²
    clipped: float


def signed(value: int) -> int:
    """A sum modulo 2^32 read as a signed integer."""
    value %= MODULUS
    return value - MODULUS if value >= MODULUS // 2 else value


class Tampered(InvalidInput):
    """A decoded sum no honest cohort can produce: some device sent values outside the protocol's range."""


def decode(contract: SecureContract, total: list[int], claimed: list[int], survivors: int) -> list[CellSum]:
    """The cohort's sum (dim values modulo 2^32) → one CellSum per cell slot with devices.

    `claimed[c]` is how many survivors told the coordinator they hold cell c: the presence coordinates carry
    no noise, so their sum must equal it exactly. A statistic's mean must lie on its grid, give or take the
    noise's tail; anything else is a device sending values outside the range, and nothing is published."""
    if len(total) != contract.dim or len(claimed) != contract.cells:
        raise InvalidInput(f"a sum of {len(total)} values for a contract of {contract.dim}")
    p, steps = contract.privacy, contract.privacy.steps
    sigma = math.sqrt(contract.kept(survivors) * float(contract.unit_sigma2))
    tail = gaussian_tail(sigma)  # an honest sum's noise stays inside but with probability FALSE_REFUSAL
    cells = []
    for c in range(contract.cells):
        row = [signed(v) for v in total[c * contract.width:(c + 1) * contract.width]]
        presence, stats, clipped = row[0], row[1:-1], row[-1]
        if presence != claimed[c]:
            raise Tampered(f"cell {c}: presence sums to {presence}, but {claimed[c]} devices hold it")
        if presence == 0:
            cells.append(CellSum(0, {}, {}, 0.0))
            continue
        if not -tail <= clipped <= presence * contract.clip_weight + tail:
            raise Tampered(f"cell {c}: the clipped count {clipped / contract.clip_weight:.3g} is outside 0..{presence}")
        means, variances = {}, {}
        for name, s in zip(contract.statistics, stats):
            if not -tail <= s <= presence * steps + tail:
                raise Tampered(f"cell {c}: {name} sums outside its grid ({s} for {presence} devices)")
            lo, _ = p.log_bounds(name)
            means[name] = lo + s / presence * p.step_log(name)
            variances[name] = contract.noise_variance_log(name, survivors) / presence ** 2
        cells.append(CellSum(presence, means, variances, clipped / contract.clip_weight))
    return cells


def noise_components(contract: SecureContract, count: int, rng=secrets, sampler=discrete_gaussian) -> np.ndarray:
    """The sum of `count` components of variance v on every noised coordinate (presence carries none)."""
    v = contract.unit_sigma2
    out = np.zeros(contract.dim, dtype=np.int64)
    for c in range(contract.cells):
        for j in range(1, contract.width):
            out[c * contract.width + j] = sum(sampler(v, rng) for _ in range(count))
    return out


def removable_noise(contract: SecureContract, noise_seed: bytes, sampler=discrete_gaussian) -> np.ndarray:
    """A device's removable components, from its noise seed: the device adds them, the coordinator (having
    rebuilt the seed) subtracts the very same numbers."""
    return noise_components(contract, contract.removable, Keystream(noise_seed, b"noise"), sampler)


def neighbours(index: int, cohort: int, degree: int) -> list[int]:
    """Roster indices a device masks and shares with (SecAgg+, Bell et al. 2020): everyone in a small
    cohort, else the `degree` nearest on the roster's ring."""
    if degree >= cohort - 1:
        return [v for v in range(cohort) if v != index]
    half = degree // 2
    return sorted({(index + k) % cohort for k in range(-half, half + 1) if k})


def degree_for(cohort: int) -> int:
    """Neighbours per device: all of a cohort up to 64, else 8·⌈log₂ N⌉ (SecAgg+'s O(log N) graph)."""
    return cohort - 1 if cohort <= 64 else min(cohort - 1, 8 * math.ceil(math.log2(cohort)))


def share_threshold(degree: int, max_dropout: Fraction = DEFAULT_MAX_DROPOUT) -> int:
    """Shares that rebuild a device's secrets: half its neighbours expected to survive, plus one. The
    coordinator would need this many of a device's neighbours colluding to learn its vector."""
    return min(degree, math.ceil(degree * (1 - max_dropout) / 2) + 1)


@dataclass(frozen=True)
class Advertise:
    """Stage 1, device → coordinator: two X25519 public keys, commitments to its self-mask seed and its
    noise seed, and the cell slots it holds a valid result of (public already: its reports said so)."""

    encryption_pk: bytes
    masking_pk: bytes
    seed_commitment: bytes
    noise_commitment: bytes
    holds: tuple[int, ...]


@dataclass(frozen=True)
class RosterEntry:
    index: int
    advertise: Advertise


@dataclass(frozen=True)
class Roster:
    """Stage 2, coordinator → devices: the round, its contract, everyone who advertised, in ring order."""

    round_id: str
    contract: SecureContract
    entries: tuple[RosterEntry, ...]

    @property
    def degree(self) -> int:
        return degree_for(len(self.entries))

    @property
    def threshold(self) -> int:
        return share_threshold(self.degree)

    def neighbours(self, index: int) -> list[int]:
        return neighbours(index, len(self.entries), self.degree)


@dataclass(frozen=True)
class SealedShare:
    """Stage 2, device → device through the coordinator: shares of the sender's seed, masking key and
    noise seed, sealed for the receiver (AES-GCM; the coordinator cannot open it)."""

    sender: int
    receiver: int
    sealed: bytes


@dataclass(frozen=True)
class UnmaskShare:
    """Stage 4, device → coordinator: a neighbour's share, of its seed (it survived) or of its masking key
    (it dropped out after sharing), never both of one device; and of its noise seed where the coordinator
    takes that survivor's removable noise out."""

    owner: int
    kind: str  # "seed" | "key" | "noise"
    share: bytes
