"""Almost-linear poly attention in the theorem regime: d = c log2 n, eps = 1/n, degree by the bound.

Command:
  .venv/bin/python scripts/run.py --config configs/almost_linear.py:quick \
      --workdir runs/almost_linear
Presets: quick (n = 2^8..2^18, ~2 min idle, 5 min at load 20), cpu (n = 2^8..2^21, ~10 min
idle, 26 min at load 18).
Overrides: ``bound_kind=sqrt_log,bound=0.1`` (B = 0.1 sqrt(ln n): the boundary regime).
Expected (c = 1/2, B = 0.5, eps = 1/n): the degree grows 2 -> 5 and the rank 15 -> 2002 over
n = 2^8..2^18 (3003 at 2^21); fitted over n >= 2^12 the poly path's CPU-time exponent is ~1.8,
as its operation count n r (d + 3) (1.77): n^{1+o(1)} with an o(1) that is not small at these
n; exact attention ~1.8-2.2 (count 2.15); exact attention of the last L = 8 rows ~1.1-1.2;
the float64 error stays below the bound. Wall-time exponents move +-0.3 under load: read the
CPU-time ones.
Writes metrics.json, report.md, almost_linear.png; prints the fitted exponents.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, presets=("quick", "cpu"), default="cpu")
    quick = a.preset == "quick"
    c = ml_collections.ConfigDict()
    c.experiment = "prompt_theory.experiments.almost_linear"  # run by scripts/run.py
    c.seed = 0  # PRNG seed of the random Q, K, V
    c.log2_n = tuple(range(8, 19 if quick else 22))  # n = 2^p
    c.c = 0.5  # head width d = max(1, round(c log2 n))
    c.eps = "1/n"  # target relative kernel error: "1/n^k" or a fixed number
    c.bound_kind = "const"  # const: B = bound; sqrt_log: B = bound * sqrt(ln n)
    c.bound = 0.5  # max-norm B of Q and K (entries +-B, scale 1/d: b = B^2)
    c.exact_max_log2_n = 15 if quick else 16  # full exact attention timed up to this n
    c.dense_max_bytes = 2**31  # dense n x n logits below this size, query-blocked above
    c.block = 1024  # queries per block of the blocked exact loop
    c.rows = 8  # L: exact attention of the last L rows (the 1-layer prompted readout)
    c.err_rows = 256  # rows on which the poly error is measured against exact attention
    c.chunk = 256  # positions per chunk of the poly path
    c.repeats = 50  # at most this many timed runs per point after a warm-up (best is kept)
    c.min_time_s = 0.2  # ... or until they add up to this (one run if it takes > 2 s)
    c.fit_min_log2_n = 12  # exponents are fitted over n >= 2^this (smaller n: overhead-bound)
    return a.apply(c)
