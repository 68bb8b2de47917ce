"""Memorization capacity of prompt tuning: counting lower bounds and the construction's length.

Counting argument. A prompt of L_p tokens, each contributing at most kappa bits (float32 tokens
of width D: kappa = 32 D), takes at most 2^{L_p kappa} values, so the frozen model realises at
most that many functions. If a family of targets is pairwise >= 2 eps apart in sup norm, a
single function is within < eps of at most one of them, so eps-approximating every member
needs 2^{L_p kappa} >= |family|, i.e. L_p >= log2|family| / kappa.
 * Memorising N sequence pairs with outputs in [0, r]^{L x d_out}: outputs on the levels
   0, 2 eps, 4 eps, ... (m = floor(r / (2 eps)) + 1 of them) give m^{N L d_out} datasets:
   L_p >= N L d_out log2(m) / kappa.
 * All C-Lipschitz f: [0,1]^{L x d} -> R^{L x d_out} (entrywise sup norms): bumps of height
   2 eps and radius 2 eps / C on a grid of n = floor(C / (4 eps)) points per coordinate
   (``bump_family``: disjoint supports, each bump C-Lipschitz) with independent signs per output
   entry give 2^{n^{dL} L d_out} targets pairwise 4 eps apart: L_p >= n^{dL} L d_out / kappa.

Which kappa. In exact arithmetic one real number holds any number of bits, so no bound on the
number of tokens holds without a bound on what one token carries. Two choices:
 * kappa = 32 D (``lipschitz_tokens``, bits_per_token = 32 D): assumes only float32 tokens. It
   divides the exponential n^{dL} by 32 D, and D is free (the construction's width grows as
   G^{d(L-1)}), so at small dL it asks far fewer tokens than any construction uses.
 * kappa = d_out (``entry_tokens``): a token carries one table entry, the d_out outputs of one
   cell at one position (one sign bit each in the bump family). This is how a 1-layer readout
   uses its prompt in the construction (prompt_theory.universality: a token's payload is one
   entry f(centre)_l; the rest of its width is the key). It gives L_p >= L n^{dL}: the form of
   the paper's statement, exponential in dL (for C > 4 eps) and of degree dL in 1/eps, i.e.
   exp(dL ln(1/eps)), with no division by D.
The explicit construction uses L ceil(C / (2 eps))^{dL} tokens (``construction_tokens``): the
same exponent, (ceil(2x) / floor(x))^{dL} times the entry bound (x = C / (4 eps); -> 2^{dL}).
A real-valued prompt has unbounded bits; a finite b (float32: 32, or log2(m): numbers held to
the targets' precision, which gives the degrees-of-freedom count L_p D >= N L d_out) makes the
bound concrete.
"""

from __future__ import annotations

import itertools
import math
import numbers

import numpy as np


def _check(name, value, *, integer=False, low=0.0):
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and value > low
    if not ok or (not integer and not math.isfinite(value)):
        kind = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} > {low:g}; got {value!r}.")


def _ratio(numerator: int, bits: float) -> float:
    try:
        return numerator / bits
    except OverflowError:
        return math.inf


def memorization_tokens(n_pairs, L, d_out, eps, bits_per_token, value_range=1.0) -> float:
    """L_p >= N L d_out log2(floor(r / (2 eps)) + 1) / b_tok for N pairs, outputs in [0, r]."""
    for name, v in (("n_pairs", n_pairs), ("L", L), ("d_out", d_out)):
        _check(name, v, integer=True)
    for name, v in (("eps", eps), ("bits_per_token", bits_per_token), ("value_range", value_range)):
        _check(name, v)
    levels = math.floor(value_range / (2 * eps)) + 1
    return n_pairs * L * d_out * math.log2(levels) / bits_per_token


def lipschitz_tokens(d, L, eps, bits_per_token, *, d_out=None, lipschitz=1.0) -> float:
    """L_p >= floor(C / (4 eps))^{dL} L d_out / b_tok for all C-Lipschitz seq-to-seq maps."""
    d_out = d if d_out is None else d_out
    for name, v in (("d", d), ("L", L), ("d_out", d_out)):
        _check(name, v, integer=True)
    for name, v in (("eps", eps), ("bits_per_token", bits_per_token), ("lipschitz", lipschitz)):
        _check(name, v)
    n = math.floor(lipschitz / (4 * eps))
    return _ratio(n ** (d * L) * L * d_out, bits_per_token)


def construction_tokens(d, L, eps, *, lipschitz=1.0) -> int:
    """Tokens the explicit construction uses for error eps: L G^{dL}, G = ceil(C / (2 eps))."""
    for name, v in (("d", d), ("L", L)):
        _check(name, v, integer=True)
    for name, v in (("eps", eps), ("lipschitz", lipschitz)):
        _check(name, v)
    return L * max(1, math.ceil(lipschitz / (2 * eps))) ** (d * L)


def entry_tokens(d, L, eps, *, lipschitz=1.0) -> float:
    """L_p >= L floor(C / (4 eps))^{dL}: the counting bound at kappa = d_out bits per token
    (one table entry per token; see the module docstring for the assumption)."""
    for name, v in (("d", d), ("L", L)):
        _check(name, v, integer=True)
    for name, v in (("eps", eps), ("lipschitz", lipschitz)):
        _check(name, v)
    return float(L * math.floor(lipschitz / (4 * eps)) ** (d * L))


def bump_family(d, L, eps, *, lipschitz=1.0):
    """The packing behind the Lipschitz bounds: (centres [n^{dL}, L, d], radius, height).

    n = floor(C / (4 eps)) points (i + 1/2) / n per coordinate, bumps
    phi(u) = max(0, height - C |u|_inf) with height 2 eps and radius 2 eps / C <= 1 / (2 n):
    supports are disjoint and a member f_sigma(X)_{lj} = sum_c sigma_{clj} phi(X - centre_c)
    (``bump_member``) is C-Lipschitz; members with different signs are 4 eps apart.
    """
    for name, v in (("d", d), ("L", L)):
        _check(name, v, integer=True)
    n = math.floor(lipschitz / (4 * eps))
    if n < 1:
        raise ValueError(f"eps must be <= C / 4 = {lipschitz / 4:g} for a bump family; got {eps}.")
    axis = (np.arange(n) + 0.5) / n
    cells = np.array(list(itertools.product(axis, repeat=d * L))).reshape(-1, L, d)
    return cells, 2 * eps / lipschitz, 2 * eps


def bump_member(x, signs, centres, radius, height):
    """f_sigma(x) [..., L, d_out] for x [..., L, d], signs [cells, L, d_out] in {-1, +1}."""
    dist = np.abs(np.asarray(x)[..., None, :, :] - centres).max((-2, -1))  # [..., cells]
    phi = np.maximum(0.0, height - height / radius * dist)
    return np.einsum("...c,cle->...le", phi, signs)
