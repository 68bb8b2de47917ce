"""Capacity vs dimension of softmax and Softmax_1 Hopfield retrieval, with the bounds' checks.

Run:     python scripts/memory_dimension.py --config configs/memory_dimension.py:quick \
             --workdir runs/memory_dimension
Library: outeffhop.experiments.memory.dimension.run(get_config("quick"), workdir)
Runtime: quick ~30 s, cpu ~10-15 min on the busy shared 2-core box (d = 16 at beta 2 sweeps
         M to 2^17).
Expect:  patterns on the sphere of radius K sqrt(d - 1) (the capacity theorem's setting),
         clean stored patterns as queries: the 5%-failure capacity (||T(x) - xi|| >
         0.1 ||xi|| counts as a failure) grows exponentially in d, about 1 bit per dimension
         at beta K^2 = 1 (log2 M* ~ 1 at d = 4, ~11 at d = 16), faster at beta K^2 = 2; the
         theorem's lower bound sqrt(p) c^((d - 1) / 4) lies far below and its proviso fails
         at these beta. The one-step error never exceeds the retrieval-error bound; Softmax_1's
         one-step error exceeds softmax's where retrieval succeeds and can be smaller where it
         fails.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg

PRESETS = ("quick", "cpu")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, presets=PRESETS, default="quick")
    preset = a.preset
    quick = preset == "quick"
    c = ml_collections.ConfigDict()
    c.preset = preset  # name of this preset, recorded in the report
    c.seed = 0  # seeds the patterns, the probed targets and the noise
    c.dims = (4, 6, 8, 10, 12) if quick else tuple(range(4, 17))  # pattern sizes d
    c.radius_scale = 1.0  # K: patterns uniform on the sphere of radius K sqrt(d - 1)
    # Inverse temperatures; only beta K^2 matters (beta 9 at K = 1 is the theorem's own example
    # beta 1, K 3, where its proviso holds from d = 12 on).
    c.betas = (1.0,) if quick else (1.0, 2.0, 9.0)
    c.noises = (0.0,) if quick else (0.0, 0.2, 0.6)  # query noise ||x - xi|| / ||xi||
    c.max_log2_patterns = 12 if quick else 17  # M = 2, 4, ..., 2^max (stops once all fail)
    c.num_queries = 200 if quick else 1000  # probed stored patterns per (d, M)
    c.update_steps = (0, 4) if not quick else (0,)  # extra updates after the first
    c.error_tol = 0.1  # a query fails when ||T^k(x) - xi|| > error_tol ||xi||
    c.error_threshold = 0.05  # capacity M* = largest M before the failure rate exceeds this
    c.failure_prob = 0.05  # p of the capacity theorem (and 1 - the separation share)
    c.chunk = 64  # queries per device call at large M (memory: chunk x M scores)
    return a.apply(c)
