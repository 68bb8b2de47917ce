"""Storage capacity of softmax vs Softmax_1 Hopfield retrieval (random patterns and digits).

Run:     python scripts/run.py --config configs/memory_capacity.py:quick \
             --workdir runs/memory_capacity
Library: outeffhop.experiments.memory.storage_capacity.run(get_config("quick"), workdir)
Runtime: quick 15 s CPU, cpu 30 s CPU on one core (1-1.5 min wall on the busy shared box).
Expect:  random patterns (d = 64) are recalled after one update with error <= 2% up to
         10^4 (quick) and 3 * 10^4 (cpu) at every beta; digits (strongly correlated) reach
         5% error only up to M = 300 at beta >= 64 (noise) and never when half-masked.
         After one update softmax1's output is softmax's scaled by its memory mass, so
         nearest-memory errors agree exactly; they differ in relative L2 error (small beta:
         softmax1 shrinks the output) and after extra updates.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg

PRESETS = ("quick", "cpu")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, presets=PRESETS, default="quick")
    preset = a.preset
    quick = preset == "quick"
    c = ml_collections.ConfigDict()
    c.experiment = "outeffhop.experiments.memory.storage_capacity"  # run by scripts/run.py
    c.preset = preset  # name of this preset, recorded in the report
    c.seed = 0  # seeds the patterns, the probed targets and the corruptions
    c.dim = 64  # pattern size (64 = 8x8 digits; the random set uses the same)
    c.pattern_sets = ("random", "digits")  # which pattern sets to sweep
    # Numbers of stored patterns M swept, per pattern set (digits: at most 1797 = all).
    c.num_patterns_random = (
        (10, 100, 1000, 10000) if quick else (10, 30, 100, 300, 1000, 3000, 10000, 30000)
    )
    c.num_patterns_digits = (30, 100, 300, 1797) if quick else (10, 30, 100, 300, 1000, 1797)
    c.num_queries = 100 if quick else 1000  # corrupted stored patterns probed per M
    c.betas = (4.0, 16.0, 64.0, 256.0)  # inverse temperatures swept
    # (kind, amount): additive noise of norm ~amount, or a fraction of entries zeroed.
    c.corruptions = (("noise", 0.5), ("mask", 0.5))
    c.update_steps = (0, 3)  # extra updates after the first (hflayers' update_steps_max)
    c.error_threshold = 0.05  # capacity = largest M whose error rate is at most this
    return a.apply(c)
