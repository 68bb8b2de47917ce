"""B_crit: the largest max-norm B of Q, K whose worst-case polynomial-attention rank stays below n.

Worst case. At score scale s with entries of max-norm B_Q, B_K, b = max |s q.k| <= s d B_Q B_K
<= B_eff^2, B_eff = sqrt(s d) max(B_Q, B_K) (= B at the Alman-Song scale 1/d, with equality for
+-B entries). Degree g reaches relative kernel error eps on [-b, b] iff
    R_g(b) = int_0^b e^y y^g / g! dy <= eps                  (poly_attention.taylor_rel_error).
R_g grows with b, so b_max(g, eps) = sup{b : R_g(b) <= eps} is well defined. For eps < 1,
b_max(g, eps) <= g + 1 and b_max is nondecreasing in g: if b > g + 1 then
R_g(b) >= e^{b-1} (b-1)^g / g! >= g^g / g! >= 1 > eps, so R_g(b) <= eps forces b <= g + 1, and
there the integrand ratio y / (g + 1) <= 1 gives R_{g+1}(b) <= R_g(b). Hence, with
    g*(n, d) = max{g : C(d+g, g) < n},     B_crit(n, d, eps) = sqrt(b_max(g*(n, d), eps)),
which is the bisection "largest B with rank(taylor_degree(B^2, eps)) < n", with no degree cap.

Limit (d = c log2 n, eps = n^{-k}; k = 0 stands for any fixed eps). Leading order in log n:
log2 C(d+g, g) ~ (d+g) H2(g/(d+g)) gives g* ~ a log2 n with (c+a) H2(a/(c+a)) = 1, and Stirling
gives ln R_g(b) ~ b - g ln(g / (e b)) for g > b, so b_max ~ beta ln n with
    gamma ln(gamma / (e beta)) = beta + k,   gamma = a / ln 2,
and B_crit / sqrt(ln n) -> sqrt(beta): a constant for every k (B_crit = Theta(sqrt(log n))), but
a smaller one for eps = 1/poly(n) than for fixed eps, approached slowly (corrections are
O(log log n / log n)).
"""

from __future__ import annotations

import math
import numbers

from prompt_theory.poly_attention import log_taylor_rel_error


def log_eps(eps, n: int) -> float:
    """ln(eps) for eps a number in (0, 1) or "1/n^k" (also "1/n"): -k ln n; exact for any n."""
    if isinstance(eps, str):
        text = eps.replace(" ", "")
        if text == "1/n":
            return -math.log(n)
        if text.startswith("1/n^"):
            try:
                return -float(text[4:]) * math.log(n)
            except ValueError:
                pass
        raise ValueError(f"eps must be a number in (0, 1), '1/n' or '1/n^k'; got {eps!r}.")
    if not (isinstance(eps, numbers.Real) and 0 < eps < 1):
        raise ValueError(f"eps must be a number in (0, 1), '1/n' or '1/n^k'; got {eps!r}.")
    return math.log(eps)


def max_degree_below(n: int, d: int) -> int:
    """g*(n, d) = max{g : C(d+g, g) < n}; -1 when even g = 0 (rank 1) is not below n."""
    if not (isinstance(d, numbers.Integral) and d >= 1):
        raise ValueError(f"d must be a positive int; got {d!r}.")
    if n <= 1:
        return -1
    hi = 1
    while math.comb(d + hi, hi) < n:
        hi *= 2
    lo = hi // 2 if hi > 1 else 0  # C(d+lo, lo) < n (lo = 0: rank 1 < n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if math.comb(d + mid, mid) < n else (lo, mid)
    return lo


def max_range(degree: int, ln_eps: float, iters: int = 60) -> float:
    """b_max(g, eps) = sup{b : R_g(b) <= eps} by bisection on [0, g + 1] (needs eps < 1)."""
    if not ln_eps < 0:
        raise ValueError(f"ln_eps must be negative (eps < 1); got {ln_eps!r}.")
    lo, hi = 0.0, float(degree) + 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if log_taylor_rel_error(mid, degree) <= ln_eps else (lo, mid)
    return lo


def b_crit(n: int, d: int, eps) -> float:
    """B_crit(n, d, eps) = sqrt(b_max(g*(n, d), eps)); 0 when no degree has rank below n.

    ``eps`` is a number in (0, 1) or "1/n^k" (resolved at this n, in log space).
    """
    g = max_degree_below(n, d)
    return 0.0 if g < 0 else math.sqrt(max_range(g, log_eps(eps, n)))


def _bisect(f, lo: float, hi: float, iters: int = 200) -> float:
    """The root of an increasing f on [lo, hi] (f(lo) <= 0 <= f(hi))."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) <= 0 else (lo, mid)
    return (lo + hi) / 2


def degree_fraction(c: float = 1.0) -> float:
    """a with (c + a) H2(a / (c + a)) = 1: g* / log2 n as n -> inf at d = c log2 n."""
    if not c > 0:
        raise ValueError(f"c must be positive; got {c!r}.")

    def f(a):
        return a * math.log2((c + a) / a) + c * math.log2((c + a) / c) - 1.0

    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    return _bisect(f, 1e-300, hi)


def b_crit_limit_ratio(k: float = 0.0, c: float = 1.0) -> float:
    """lim B_crit / sqrt(ln n) at d = c log2 n, eps = n^{-k} (k = 0: fixed eps); see module doc."""
    if not k >= 0:
        raise ValueError(f"k must be >= 0; got {k!r}.")
    gamma = degree_fraction(c) / math.log(2)
    beta = _bisect(lambda b: b + k - gamma * math.log(gamma / (math.e * b)), 1e-300, gamma / math.e)
    return math.sqrt(beta)
