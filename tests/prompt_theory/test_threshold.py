"""B_crit against brute force: the degree-cap-free formula, its ingredients and its limit."""

import math

import pytest

from prompt_theory import threshold as th
from prompt_theory.poly_attention import (
    log_taylor_rel_error,
    poly_rank,
    taylor_degree,
    taylor_rel_error,
)


def _degree(b, eps):
    """taylor_degree without its cap: the smallest g with relative error <= eps."""
    g = 0
    while taylor_rel_error(b, g) > eps:
        g += 1
    return g


def _brute_b_crit(n, d, eps, iters=40):
    """The definition: the largest B with rank(smallest degree for B^2) < n, by bisection."""

    def ok(b):
        return poly_rank(d, _degree(b * b, eps)) < n

    lo, hi = 0.0, 1.0
    while ok(hi):
        lo, hi = hi, 2 * hi
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


@pytest.mark.parametrize("p", [6, 10, 16])
@pytest.mark.parametrize("d", [3, 8, None])
@pytest.mark.parametrize("eps", [1e-2, 1e-4, "1/n"])
def test_b_crit_equals_the_bisection_of_its_definition(p, d, eps):
    n, d = 2**p, p if d is None else d
    e = math.exp(th.log_eps(eps, n))
    assert th.b_crit(n, d, eps) == pytest.approx(_brute_b_crit(n, d, e), rel=1e-6)


@pytest.mark.parametrize("n,d", [(2, 3), (5, 1), (7, 2), (100, 3), (10**6, 5), (2**40, 40)])
def test_max_degree_below_matches_a_linear_scan(n, d):
    g = -1
    while math.comb(d + g + 1, g + 1) < n:
        g += 1
    assert th.max_degree_below(n, d) == g


@pytest.mark.parametrize("eps", [0.5, 1e-3, 1e-9])
def test_b_max_is_the_edge_of_the_error_and_grows_with_the_degree(eps):
    prev = -1.0
    for g in range(0, 41, 3):
        b, ln_eps = th.max_range(g, math.log(eps)), math.log(eps)
        assert log_taylor_rel_error(b, g) <= ln_eps < log_taylor_rel_error(b * (1 + 1e-9), g)
        assert b <= g + 1 and b >= prev  # the two facts the module docstring proves
        prev = b


def test_b_crit_grid_brute_force_on_both_sides():
    for n, d, eps in ((2**12, 6, 1e-3), (2**20, 20, 2.0**-20)):
        crit = th.b_crit(n, d, eps)
        below = [crit * t for t in (0.2, 0.6, 0.99)]
        above = [crit * t for t in (1.01, 1.5, 3.0)]
        assert all(poly_rank(d, taylor_degree(b * b, eps)) < n for b in below)
        assert all(poly_rank(d, taylor_degree(b * b, eps)) >= n for b in above)


@pytest.mark.parametrize("eps,k", [(1e-4, 0), ("1/n", 1), ("1/n^2", 2)])
def test_finite_n_ratio_approaches_the_limit(eps, k):
    ratio = [th.b_crit(2**p, p, eps) / math.sqrt(p * math.log(2)) for p in (64, 1024, 4096)]
    limit = th.b_crit_limit_ratio(k)
    gaps = [abs(r - limit) for r in ratio]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.02 * limit


def test_limit_ratio_orders_and_degree_fraction():
    assert th.b_crit_limit_ratio(0) > th.b_crit_limit_ratio(1) > th.b_crit_limit_ratio(2) > 0
    a = th.degree_fraction(1.0)  # g* / log2 n at d = log2 n: the rank C(d+g, g) just below n
    p = 4096
    assert th.max_degree_below(2**p, p) / p == pytest.approx(a, rel=0.01)


@pytest.mark.parametrize("eps", [0.0, 1.0, "1/m", "1/n^x", -1e-3])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        th.b_crit(1024, 10, eps)
