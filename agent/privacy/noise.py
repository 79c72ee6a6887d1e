"""Exact samplers of integer noise (Canonne, Kamath, Steinke 2020, Algorithms 1-3).

Every draw uses integer randomness from the OS and exact rational arithmetic, so no floating-point
artefact (Mironov 2012) can leak the input through the noise's low bits.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

_rand = secrets.SystemRandom()


def bernoulli(p: Fraction) -> bool:
    """True with probability p ∈ [0, 1]."""
    return secrets.randbelow(p.denominator) < p.numerator


def bernoulli_exp(gamma: Fraction) -> bool:
    """True with probability exp(-gamma), gamma ≥ 0."""
    while gamma > 1:  # exp(-γ) = exp(-1)^⌊γ⌋ · exp(-(γ - ⌊γ⌋))
        if not bernoulli_exp(Fraction(1)):
            return False
        gamma -= 1
    k = 1
    while bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction) -> int:
    """P[x] ∝ exp(-|x| / scale) over the integers."""
    s, t = scale.denominator, scale.numerator  # scale = t / s
    while True:
        u = secrets.randbelow(t)
        if not bernoulli_exp(Fraction(u, t)):
            continue
        v = 0
        while bernoulli_exp(Fraction(1)):
            v += 1
        y = (u + t * v) // s
        negative = bernoulli(Fraction(1, 2))
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(sigma2: Fraction) -> int:
    """P[x] ∝ exp(-x² / (2σ²)) over the integers."""
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1
    while True:
        y = discrete_laplace(Fraction(t))
        if bernoulli_exp((abs(y) - sigma2 / t) ** 2 / (2 * sigma2)):
            return y


def randomized_round(x: Fraction) -> int:
    """⌊x⌋ or ⌈x⌉ with the probabilities that make the result unbiased."""
    floor = x.numerator // x.denominator
    return floor + (1 if bernoulli(x - floor) else 0)
