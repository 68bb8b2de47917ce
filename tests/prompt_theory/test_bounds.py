"""Capacity bounds against brute force: the packings they count, and the construction's length."""

import itertools
import math

import numpy as np
import pytest

from prompt_theory import bounds
from prompt_theory import universality as U


@pytest.mark.parametrize(
    "d,L,eps,C", [(1, 1, 0.1, 1.0), (1, 2, 0.1, 1.0), (2, 1, 0.12, 1.0), (1, 1, 0.1, 2.0)]
)
def test_bump_family_is_a_lipschitz_packing_of_the_counted_size(d, L, eps, C):
    centres, radius, height = bounds.bump_family(d, L, eps, lipschitz=C)
    n = math.floor(C / (4 * eps))
    assert centres.shape == (n ** (d * L), L, d)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(2, 400, L, d))
    members = []
    for bits in itertools.product((-1.0, 1.0), repeat=len(centres) * L):
        signs = np.asarray(bits).reshape(len(centres), L, 1)
        fx, fy = (bounds.bump_member(a, signs, centres, radius, height) for a in (x, y))
        gap = np.abs(x - y).max((-2, -1))[:, None, None]
        assert np.all(np.abs(fx - fy) <= C * gap + 1e-12)  # C-Lipschitz in the sup norm
        members.append(bounds.bump_member(centres, signs, centres, radius, height))
    dist = min(np.abs(a - b).max() for a, b in itertools.combinations(members, 2))
    assert dist == pytest.approx(4 * eps)  # pairwise 4 eps apart: > 2 eps, so distinguishable
    log2_count = math.log2(len(members))  # every sign pattern is a member
    for kappa in (1.0, 7.0, 32.0 * 5):
        assert bounds.lipschitz_tokens(d, L, eps, kappa, d_out=1, lipschitz=C) == pytest.approx(
            log2_count / kappa
        )
    assert bounds.entry_tokens(d, L, eps, lipschitz=C) == pytest.approx(log2_count)  # kappa = 1


def test_memorization_bound_counts_the_separated_datasets():
    N, L, d_out, eps, r = 1, 2, 1, 0.2, 1.0
    levels = np.arange(0, r + 1e-9, 2 * eps)  # 0, 0.4, 0.8: m = floor(r / 2 eps) + 1
    sets = list(itertools.product(levels, repeat=N * L * d_out))
    sep = min(np.abs(np.subtract(a, b)).max() for a, b in itertools.combinations(sets, 2))
    assert sep >= 2 * eps - 1e-12 and len(sets) == (math.floor(r / (2 * eps)) + 1) ** (N * L)
    for kappa in (1.0, 3.0, 64.0):
        got = bounds.memorization_tokens(N, L, d_out, eps, kappa, r)
        assert got == pytest.approx(math.log2(len(sets)) / kappa)


@pytest.mark.parametrize("d,L,eps,C", [(1, 2, 0.1, 1.0), (2, 2, 0.125, 1.0), (1, 3, 0.05, 2.0)])
def test_construction_count_is_the_built_prompt_and_above_the_entry_bound(d, L, eps, C):
    want = bounds.construction_tokens(d, L, eps, lipschitz=C)
    assert U.plan(d, L, 2 * eps / C)["prompt_len"] == want  # delta = 2 eps / C: error C delta/2
    entry = bounds.entry_tokens(d, L, eps, lipschitz=C)
    x = C / (4 * eps)
    assert entry <= want <= entry * (math.ceil(2 * x) / math.floor(x)) ** (d * L) + 1e-9
    if d**L <= 4:  # small enough to build: the length of the real prompt
        con = U.build(d, L, 2 * eps / C)
        assert con.prompt_len == want


def test_entry_bound_grows_exponentially_in_dL_and_as_a_power_of_one_over_eps():
    vals = [bounds.entry_tokens(d, 1, 0.05) for d in range(1, 6)]  # n = 5 cells per axis
    assert [b / a for a, b in zip(vals, vals[1:], strict=False)] == pytest.approx([5.0] * 4)
    e1, e2 = bounds.entry_tokens(2, 2, 0.01), bounds.entry_tokens(2, 2, 0.005)
    assert e2 / e1 == pytest.approx(2.0**4)  # degree dL = 4 in 1/eps
    with pytest.raises(ValueError, match="eps"):
        bounds.entry_tokens(2, 2, 0.0)
    with pytest.raises(ValueError, match="eps"):
        bounds.bump_family(1, 1, 0.3)
