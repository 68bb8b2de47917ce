"""The study's statistics against brute force and scipy on small cases."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from outeffhop.experiments.outlier_study import stats


def brute_sign_flip(x):
    """Two-sided sign-flip p by looping over every sign pattern."""
    obs = abs(sum(x) / len(x))
    hits = 0
    for signs in itertools.product((-1, 1), repeat=len(x)):
        m = abs(sum(s * abs(v) for s, v in zip(signs, x, strict=True)) / len(x))
        hits += m >= obs - 1e-12
    return hits / 2 ** len(x)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_sign_flip_matches_brute_force(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        x = rng.normal(0.3, 1.0, n)
        assert stats.sign_flip_p(x) == pytest.approx(brute_sign_flip(list(x)))
    assert stats.sign_flip_p(np.full(n, -2.0)) == pytest.approx(stats.min_sign_flip_p(n))


def test_sign_flip_matches_scipy_permutation_test():
    x = np.array([-0.4, -0.1, -0.25, 0.05, -0.3, -0.2])
    ref = sps.permutation_test(
        (x,), np.mean, permutation_type="samples", alternative="two-sided", n_resamples=np.inf
    )
    assert stats.sign_flip_p(x) == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("x", [[-1, -2, -3], [-1, 2, -3, -4, -5], [1, 0, -2, 3, 4, 5, 6]])
def test_sign_test_matches_binomtest(x):
    nz = [v for v in x if v != 0]
    k = sum(v < 0 for v in nz)
    assert stats.sign_test_p(x) == pytest.approx(sps.binomtest(k, len(nz)).pvalue)


def test_t_interval_matches_scipy_and_covers():
    x = np.array([-0.3, -0.1, -0.5])
    ci = sps.ttest_1samp(x, 0.0).confidence_interval(0.95)
    np.testing.assert_allclose(stats.t_interval(x), (ci.low, ci.high))
    rng = np.random.default_rng(0)
    draws = rng.normal(1.0, 2.0, size=(4000, 3))
    hits = [lo <= 1.0 <= hi for lo, hi in map(stats.t_interval, draws)]
    assert abs(np.mean(hits) - 0.95) < 0.015  # nominal coverage at n = 3
    assert all(math.isnan(v) for v in stats.t_interval([1.0]))


def brute_bootstrap(x, level):
    means = sorted(
        sum(x[i] for i in idx) / len(x) for idx in itertools.product(range(len(x)), repeat=len(x))
    )
    return np.quantile(means, (1 - level) / 2), np.quantile(means, (1 + level) / 2)


def test_bootstrap_exact_and_sampled(monkeypatch):
    x = [0.5, -1.0, 2.0, 0.25]
    np.testing.assert_allclose(stats.bootstrap_interval(x), brute_bootstrap(x, 0.95))
    monkeypatch.setattr(stats, "EXACT_BOOTSTRAP_MAX", 1)  # force the random resamples
    sampled = stats.bootstrap_interval(x, num_resamples=50_000)
    np.testing.assert_allclose(sampled, brute_bootstrap(x, 0.95), atol=0.05)


def test_paired_changes_pair_by_seed():
    base = {0: 10.0, 1: 20.0, 2: 0.0, 3: 5.0}
    ours = {0: 5.0, 1: 30.0, 2: 1.0, 5: 1.0}
    seeds, r = stats.paired_relative_change(base, ours)
    assert seeds == [0, 1]  # seed 2: baseline 0; seeds 3, 5: unpaired
    np.testing.assert_allclose(r, [-0.5, 0.5])
    seeds, d = stats.paired_difference(base, ours)
    assert seeds == [0, 1, 2] and list(d) == [-5.0, 10.0, 1.0]


def test_verdicts():
    s = stats.summarize([-10.0, -12.0, -11.0])
    assert stats.verdict(s) == "improves" and stats.verdict(s, lower_is_better=False) == "worsens"
    assert stats.verdict(stats.summarize([-10.0, 5.0, -11.0])) == "not shown"
    assert stats.verdict(stats.summarize([-1.0, -50.0, -2.0])) == "not shown"  # wide interval
    assert stats.verdict(stats.summarize([-1.0])) == "untested"
    with pytest.raises(ValueError, match="level must lie"):
        stats.t_interval([1.0, 2.0], level=1.5)
