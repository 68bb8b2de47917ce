"""Universality by explicit construction: error vs delta, prompt length vs 1/delta.

Command: .venv/bin/python scripts/run.py --config configs/universality.py:quick \
    --workdir runs/universality
Runtime (2 CPU cores shared with other jobs): quick ~60 s wall (~15 s CPU); cpu ~4 min.
Expected: every error within the stated bound (sup <= C delta/2 + ~1e-4, below the theory's
C delta (dL)^(1/p)); realisation error against the grid table below 1e-6; fitted exponent of the
prompt length in 1/delta equal to d*L (2, 3, 4, 6); sup-error slope in delta about 1.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, presets=("quick", "cpu"), default="cpu")
    c = ml_collections.ConfigDict()
    c.experiment = "prompt_theory.experiments.universality"  # run by scripts/run.py
    c.seed = 0  # PRNG seed for evaluation inputs and the random_cos target
    c.shapes = ((1, 2), (1, 3), (2, 2), (2, 3))  # (d, L): d*L = 2, 3, 4, 6
    c.grids = (2, 3, 4, 6, 8, 16, 32, 64)  # G = 1/delta cells per coordinate
    c.max_cells = 4096  # keep grids with G^(dL) <= max_cells (prompt = L * cells tokens)
    c.max_bytes = 2.0**31  # refuse constructions whose prompt + weights exceed this
    c.targets = ("prefix_max", "mean_sin", "neighbour_product", "random_cos")  # see TARGETS
    c.n_eval = 1024  # uniform random inputs per (shape, grid)
    c.p = 2.0  # L^p error exponent
    if a.preset == "quick":
        c.shapes = ((1, 2), (2, 2), (2, 3))
        c.grids = (2, 3, 4, 8, 16)
        c.max_cells = 729
        c.targets = ("prefix_max", "mean_sin", "random_cos")
        c.n_eval = 256
    return a.apply(c)
