"""Memorization capacity of prompt tuning: counting lower bounds and the construction's length.

Counting argument. A prompt of L_p tokens, each stored in b_tok bits (width D at b bits per
number: b_tok = D b), takes at most 2^{L_p b_tok} values, so the frozen model realises at
most that many functions. If a family of targets is pairwise >= 2 eps apart in sup norm, a
single function is within < eps of at most one of them, so eps-approximating every member
needs 2^{L_p b_tok} >= |family|, i.e. L_p >= log2|family| / b_tok.
 * Memorising N sequence pairs with outputs in [0, r]^{L x d_out}: outputs on the levels
   0, 2 eps, 4 eps, ... (m = floor(r / (2 eps)) + 1 of them) give m^{N L d_out} datasets:
   L_p >= N L d_out log2(m) / b_tok.
 * All C-Lipschitz f: [0,1]^{L x d} -> R^{L x d_out} (entrywise sup norms): bumps of height
   2 eps and radius 2 eps / C on a grid of n = floor(C / (4 eps)) points per coordinate
   (disjoint supports, each bump C-Lipschitz) with independent signs per output entry give
   2^{n^{dL} L d_out} targets pairwise 4 eps apart: L_p >= n^{dL} L d_out / b_tok. This is
   exponential in d L (for C > 4 eps) and grows as (1/eps)^{dL}; the explicit construction
   (prompt_theory.universality) uses L ceil(C / (2 eps))^{dL} tokens: the same exponent.
A real-valued prompt has unbounded bits; a finite b (float32: 32, or log2(m): numbers held to
the targets' precision, which gives the degrees-of-freedom count L_p D >= N L d_out) makes the
bound concrete.
"""

from __future__ import annotations

import math
import numbers


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
