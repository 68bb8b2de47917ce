"""Capacity vs dimension of softmax and Softmax_1 Hopfield retrieval, with the bounds' checks.

Run:     python scripts/run.py --config configs/memory_dimension.py:quick \
             --workdir runs/memory_dimension
Library: outeffhop.experiments.memory.dimension.run(get_config("quick"), workdir)
Runtime: quick ~30 s; cpu 20.7 min wall, 380 s CPU under nice -n 19 on the shared 2-core box
         at load average 12-16. The cpu preset was cut to fit 25 min there: noise 0 and 0.6
         (0.2 dropped), M up to 2^16 (was 2^17), 500 probed targets (was 1000).
Expect:  patterns on the sphere of radius K sqrt(d - 1) (the capacity theorem's setting),
         clean stored patterns as queries: the 5%-failure capacity (||T(x) - xi|| >
         0.1 ||xi|| counts as a failure) grows exponentially in d: cpu measured 1.15 bits per
         dimension at beta K^2 = 1 (M* = 2 at d = 7, 2048 at d = 16, one update), 1.7 at
         beta K^2 = 2 (>= 2^16 from d = 14), >= 2^16 from d = 5 at beta K^2 = 9; softmax and
         Softmax_1 give the same M* in every cell. The theorem's lower bound
         sqrt(p) c^((d - 1) / 4) lies far below (slope 0.04-0.37 bits per dimension) and its
         proviso holds only at beta K^2 = 9 from d = 12. The one-step error never exceeds the
         retrieval-error bound (0 of 321k queries); Softmax_1's one-step error exceeds
         softmax's where retrieval succeeds and is smaller on ~1% of the failed queries.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg

PRESETS = ("quick", "cpu")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, presets=PRESETS, default="quick")
    preset = a.preset
    quick = preset == "quick"
    c = ml_collections.ConfigDict()
    c.experiment = "outeffhop.experiments.memory.dimension"  # run by scripts/run.py
    c.preset = preset  # name of this preset, recorded in the report
    c.seed = 0  # seeds the patterns, the probed targets and the noise
    c.dims = (4, 6, 8, 10, 12) if quick else tuple(range(4, 17))  # pattern sizes d
    c.radius_scale = 1.0  # K: patterns uniform on the sphere of radius K sqrt(d - 1)
    # Inverse temperatures; only beta K^2 matters (beta 9 at K = 1 is the theorem's own example
    # beta 1, K 3, where its proviso holds from d = 12 on).
    c.betas = (1.0,) if quick else (1.0, 2.0, 9.0)
    c.noises = (0.0,) if quick else (0.0, 0.6)  # query noise ||x - xi|| / ||xi||
    c.max_log2_patterns = 12 if quick else 16  # M = 2, 4, ..., 2^max (stops once all fail)
    c.num_queries = 200 if quick else 500  # probed stored patterns per (d, M)
    c.update_steps = (0, 4) if not quick else (0,)  # extra updates after the first
    c.error_tol = 0.1  # a query fails when ||T^k(x) - xi|| > error_tol ||xi||
    c.error_threshold = 0.05  # capacity M* = largest M before the failure rate exceeds this
    c.failure_prob = 0.05  # p of the capacity theorem (and 1 - the separation share)
    c.chunk = 64  # queries per device call at large M (memory: chunk x M scores)
    return a.apply(c)
