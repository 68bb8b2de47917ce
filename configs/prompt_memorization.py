"""Memorization capacity: minimal prompt length for N random pairs vs N, L, d, and the bound.

Command: .venv/bin/python scripts/run.py \
    --config configs/prompt_memorization.py:quick --workdir runs/prompt_memorization
Runtime (2 CPU cores shared with other jobs): quick ~2 min wall idle (6 min at load 20-28);
cpu ~40 min.
Expected: the measured minimal prompt length grows roughly linearly in N (1, 2, 8, 12, 16
for N = 2..32 at L = 2, d = 8), falls with the width d, and stays 1.5-4x above the counting
bound N L d_out / d (numbers held to the targets' precision) and ~18x above the float32
bound; single points are noisy (fresh model and data each; raise `seeds`). With every output
coordinate scored (quick: N = 1, 2, 4 x 2 seeds) 1/6 points reach eps = 0.05 (N = 1, seed 0,
L_p = 8), the one point where F_post can reach the targets from a free attention output and
the needed prompt gradients are monotone; N >= 2 fails at sup error 0.3-0.8 for every length up
to 64. The calculator: construction / entry bound = 4 (dL = 2) and 16 (dL = 4), construction /
counting bound (32 D bits per token) 2e3-2e6.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, presets=("quick", "cpu"), default="cpu")
    c = ml_collections.ConfigDict()
    c.experiment = "prompt_theory.experiments.memorization"  # run by scripts/run.py
    c.seed = 0  # PRNG seed for frozen weights, data and prompt inits
    c.base_N, c.base_L, c.base_d = 8, 2, 8  # the point the three sweeps vary around
    c.sweep_N = (2, 4, 8, 16, 32)  # number of random pairs
    c.sweep_L = (1, 2, 3, 4)  # tokens per sequence
    c.sweep_d = (4, 6, 8, 12, 16)  # model width (head width = d)
    c.d_out = 1  # target coordinates per output token (the first d_out of width d)
    c.value_range = 1.0  # targets Y ~ U[0, value_range]
    c.eps = 0.05  # success: max |tau([P,X])[L_p:, :d_out] - Y| < eps
    c.lengths = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # prompt lengths tried (one vmap)
    c.steps = 4000  # Adam steps at most per sweep point
    c.check_every = 250  # steps between sup-error checks (early stop when all succeed)
    c.learning_rate = 0.1  # Adam learning rate on the prompt
    c.restarts = 2  # random prompt inits per length; success if any succeeds
    c.seeds = 1  # fresh random models and datasets per point; the median length is reported
    c.scale = "1/sqrt(d)"  # score scale of the frozen model
    c.ffn_mult, c.ffn_layers = 4, 2  # frozen post-attention FFN: hidden d*ffn_mult, layers
    c.calc_eps = (0.25, 0.1, 0.05)  # eps values for the calculator table
    # every output coordinate scored (d_out = base_d): the N sweep and its diagnostics
    c.all_coordinates = True
    c.all_sweep_N = (1, 2, 4, 8)
    c.all_seeds = 4  # fresh model and data per seed (each reported)
    c.all_lengths = (1, 2, 4, 8, 16, 32, 64)
    c.all_steps = 4000  # Adam steps at most per point
    c.all_reach_steps = 3000  # Adam steps for the free attention output per row
    # the bound calculator against 1/eps and dL (C = 1) and built constructions
    c.calc_shapes = ((1, 2), (2, 2))  # (d, L) curves against 1/eps
    c.calc_inv_eps = (4, 8, 16, 32, 64, 128)  # 1/eps values of the curves
    c.calc_dL = (1, 2, 3, 4, 5, 6, 8)  # dL values (d = 1, L = dL) at calc_eps_fixed
    c.calc_eps_fixed = 0.05
    c.calc_built = ((1, 2, 2), (1, 2, 4), (1, 2, 8), (1, 2, 16), (2, 2, 2), (2, 2, 3), (2, 2, 4))
    if a.preset == "quick":
        c.sweep_N = (2, 4, 8)
        c.sweep_L = ()
        c.sweep_d = ()
        c.lengths = (1, 2, 4, 8, 16)
        c.steps = 2000
        c.check_every = 500
        c.all_sweep_N = (1, 2, 4)
        c.all_seeds = 2
        c.all_steps = 2000
    return a.apply(c)
