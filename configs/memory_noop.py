"""No-op behaviour of softmax vs Softmax_1 retrieval for queries unrelated to every memory.

Run:     python scripts/run.py --config configs/memory_noop.py:quick \
             --workdir runs/memory_noop
Library: outeffhop.experiments.memory.noop.run(get_config("quick"), workdir)
Runtime: quick 8 s CPU, cpu 14 s CPU on one core (25 s / 70 s wall on the busy shared box).
Expect:  clean stored queries retrieve norm ~1 with both. Queries whose scores are all
         clearly negative (inverted or anti-mean digits, beta >= 16) retrieve ~0 with
         softmax1 (norm 0.08 -> 0 as beta grows) but a blend of norm ~0.8-1 with softmax.
         Where some memory scores >= 0 (random signed patterns, zero queries) the extra 1
         is outvoted and both retrieve alike; after 3 more updates softmax1 climbs back to
         ~1 (T(0) is the mean memory): the no-op is a one-step property.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg

PRESETS = ("quick", "cpu")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, presets=PRESETS, default="quick")
    preset = a.preset
    quick = preset == "quick"
    c = ml_collections.ConfigDict()
    c.experiment = "outeffhop.experiments.memory.noop"  # run by scripts/run.py
    c.preset = preset  # name of this preset, recorded in the report
    c.seed = 0  # seeds the patterns and the queries
    c.dim = 64  # pattern size (64 = 8x8 digits; the random set uses the same)
    c.pattern_sets = ("random", "digits")  # which pattern sets to run
    # Stored-pattern counts per set; random M < dim admits exactly orthogonal queries.
    c.num_patterns = {"random": (16, 1000), "digits": (1797,)}
    c.num_queries = 200 if quick else 2000  # queries per kind
    c.betas = (1.0, 4.0, 16.0, 64.0, 256.0) if quick else (0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)
    c.update_steps = (0, 3)  # extra updates after the first (hflayers' update_steps_max)
    return a.apply(c)
