"""Statistics of the outlier study: mean ± std over seeds, paired changes, intervals, exact tests.

A Softmax_1 variant and its baseline are trained with the same seeds (same init draw and
data order up to the variant's own parameters), so each seed gives one paired relative
change ``r_s = (ours_s - base_s) / |base_s|``. On the ``n`` paired changes:

- a 95% t interval for their mean (normal errors assumed; with 3 seeds its quantile is
  t_{0.975, 2} = 4.30, so it is wide);
- the exact paired permutation (sign-flip) test: under "no effect" each r_s is as likely
  +|r_s| as -|r_s|; the two-sided p is the share of the 2^n sign patterns whose mean is at
  least as far from 0 as the observed one. Its smallest possible value is 2 / 2^n: 0.25 at
  3 seeds, 0.0625 at 5, 0.031 at 6; fewer than 6 seeds can never reach p < 0.05;
- the exact sign test (binomial, two-sided) on the number of seeds with r_s < 0;
- optionally a percentile bootstrap interval (exact over all n^n resamples for small n).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

EXACT_BOOTSTRAP_MAX = 100_000  # enumerate every resample while n^n is at most this


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std with ddof=1); std 0 for a single value."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        raise ValueError("values must hold at least one number; got none.")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def paired_relative_change(
    base: dict[int, float], ours: dict[int, float]
) -> tuple[list[int], np.ndarray]:
    """(seeds in both, r_s = (ours_s - base_s) / |base_s|) over the seeds both variants ran.

    Seeds whose baseline is 0 are dropped (no relative change exists).
    """
    seeds = sorted(s for s in set(base) & set(ours) if base[s] != 0)
    r = np.asarray([(ours[s] - base[s]) / abs(base[s]) for s in seeds], np.float64)
    return seeds, r


def paired_difference(
    base: dict[int, float], ours: dict[int, float]
) -> tuple[list[int], np.ndarray]:
    """(seeds in both, d_s = ours_s - base_s): for columns that are already percentages."""
    seeds = sorted(set(base) & set(ours))
    return seeds, np.asarray([ours[s] - base[s] for s in seeds], np.float64)


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (scipy)."""
    if df < 1:
        raise ValueError(f"df must be >= 1; got {df}.")
    from scipy import stats

    return float(stats.t.ppf(p, df))


def t_interval(x: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """mean ± t_{(1+level)/2, n-1} s / sqrt(n); (nan, nan) for fewer than 2 values."""
    x = np.asarray(x, np.float64)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); got {level}.")
    if x.size < 2:
        return math.nan, math.nan
    half = t_quantile((1.0 + level) / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def sign_flip_p(x: Sequence[float]) -> float:
    """Exact two-sided paired permutation p: P(|mean(e * |x|)| >= |mean(x)|), e uniform in {±1}^n.

    Enumerates all 2^n sign patterns (n <= 20); a tolerance of 1e-12 relative counts ties.
    nan for no values.
    """
    x = np.asarray(x, np.float64)
    n = x.size
    if n == 0:
        return math.nan
    if n > 20:
        raise ValueError(f"x must hold at most 20 values for the exact test; got {n}.")
    signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # [2^n, n]
    means = np.abs(signs @ np.abs(x)) / n
    observed = abs(x.mean())
    tol = 1e-12 * max(1.0, float(np.abs(x).max()))
    return float(np.mean(means >= observed - tol))


def sign_test_p(x: Sequence[float]) -> float:
    """Exact two-sided binomial sign test on the signs of x (zeros dropped); nan if none left.

    p = min(1, 2 P(K <= min(k, n - k))), K ~ Binomial(n, 1/2), k = #negative values.
    """
    x = np.asarray(x, np.float64)
    x = x[x != 0]
    n = x.size
    if n == 0:
        return math.nan
    k = int(min((x < 0).sum(), (x > 0).sum()))
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2.0 * tail))


def bootstrap_interval(
    x: Sequence[float], level: float = 0.95, *, num_resamples: int = 20_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean.

    Exact (every one of the n^n ordered resamples, equally weighted) while n^n <=
    ``EXACT_BOOTSTRAP_MAX``, else ``num_resamples`` seeded random resamples. The
    percentiles use numpy's default linear interpolation.
    """
    x = np.asarray(x, np.float64)
    n = x.size
    if n < 2:
        return math.nan, math.nan
    if n**n <= EXACT_BOOTSTRAP_MAX:
        idx = np.asarray(list(itertools.product(range(n), repeat=n)))
    else:
        idx = np.random.default_rng(seed).integers(0, n, size=(num_resamples, n))
    means = x[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


def summarize(x: Sequence[float], level: float = 0.95) -> dict:
    """Everything the report shows about paired changes x: n, mean, std, interval, p values."""
    x = np.asarray(x, np.float64)
    lo, hi = t_interval(x, level)
    m, s = mean_std(x) if x.size else (math.nan, math.nan)
    return {
        "n": int(x.size),
        "mean": m,
        "std": s,
        "ci": (lo, hi),
        "p_sign_flip": sign_flip_p(x),
        "p_sign": sign_test_p(x),
        "negative": int((x < 0).sum()),
        "positive": int((x > 0).sum()),
    }


def verdict(summary: dict, lower_is_better: bool = True) -> str:
    """A paired change's verdict: improves | worsens | not shown | untested (n < 2).

    improves / worsens: the t interval excludes 0 on that side and every seed agrees in
    sign; anything else is not shown.
    """
    n, (lo, hi) = summary["n"], summary["ci"]
    if n < 2 or not math.isfinite(lo):
        return "untested"
    all_neg = summary["negative"] == n
    all_pos = summary["positive"] == n
    if hi < 0 and all_neg:
        return "improves" if lower_is_better else "worsens"
    if lo > 0 and all_pos:
        return "worsens" if lower_is_better else "improves"
    return "not shown"


def min_sign_flip_p(n: int) -> float:
    """The smallest two-sided p the exact sign-flip test can give with n pairs: 2 / 2^n."""
    return min(1.0, 2.0 / 2**n) if n > 0 else math.nan
