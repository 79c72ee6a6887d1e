"""Exact samplers of integer noise (Canonne, Kamath, Steinke 2020, Algorithms 1-3).

Every draw uses integer randomness and exact rational arithmetic, so no floating-point artefact
(Mironov 2012) can leak the input through the noise's low bits. The randomness is the OS's (`secrets`)
unless a caller passes another source with `randbelow(n)`: a secure round's removable noise share is
drawn from a seeded keystream (protos/masking.Keystream) so that the coordinator can take it back out.
The samplers live in protos/ because both ends draw that share: the device adds it, the coordinator
subtracts it.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction


def bernoulli(p: Fraction, rng=secrets) -> bool:
    """True with probability p ∈ [0, 1]."""
    return rng.randbelow(p.denominator) < p.numerator


def bernoulli_exp(gamma: Fraction, rng=secrets) -> bool:
    """True with probability exp(-gamma), gamma ≥ 0."""
    while gamma > 1:  # exp(-γ) = exp(-1)^⌊γ⌋ · exp(-(γ - ⌊γ⌋))
        if not bernoulli_exp(Fraction(1), rng):
            return False
        gamma -= 1
    k = 1
    while bernoulli(gamma / k, rng):
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction, rng=secrets) -> int:
    """P[x] ∝ exp(-|x| / scale) over the integers."""
    s, t = scale.denominator, scale.numerator  # scale = t / s
    while True:
        u = rng.randbelow(t)
        if not bernoulli_exp(Fraction(u, t), rng):
            continue
        v = 0
        while bernoulli_exp(Fraction(1), rng):
            v += 1
        y = (u + t * v) // s
        negative = bernoulli(Fraction(1, 2), rng)
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(sigma2: Fraction, rng=secrets) -> int:
    """P[x] ∝ exp(-x² / (2σ²)) over the integers."""
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1
    while True:
        y = discrete_laplace(Fraction(t), rng)
        if bernoulli_exp((abs(y) - sigma2 / t) ** 2 / (2 * sigma2), rng):
            return y


def randomized_round(x: Fraction) -> int:
    """⌊x⌋ or ⌈x⌉ with the probabilities that make the result unbiased."""
    floor = x.numerator // x.denominator
    return floor + (1 if bernoulli(x - floor) else 0)
