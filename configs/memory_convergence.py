"""Convergence of softmax vs Softmax_1 Hopfield updates: energy trajectories, fixed points.

Run:     python scripts/run.py --config configs/memory_convergence.py:quick \
             --workdir runs/memory_convergence
Library: outeffhop.experiments.memory.convergence.run(get_config("quick"), workdir)
Runtime: quick 5 s CPU, cpu 11 s CPU on one core (15 s / 95 s wall on the busy shared box).
Expect:  the energy never increases along the iteration (max increase <= ~1e-6, float
         error) for both normalizers; most queries reach a fixed point within a few updates
         at large beta (one memory wins) and need more at small beta (metastable blends).
"""

import ml_collections

from outeffhop.launch.configs import parse_arg

PRESETS = ("quick", "cpu")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, presets=PRESETS, default="quick")
    preset = a.preset
    quick = preset == "quick"
    c = ml_collections.ConfigDict()
    c.experiment = "outeffhop.experiments.memory.convergence"  # run by scripts/run.py
    c.preset = preset  # name of this preset, recorded in the report
    c.seed = 0  # seeds the patterns, the probed targets and the noise
    c.dim = 64  # pattern size (64 = 8x8 digits; the random set uses the same)
    c.pattern_sets = ("random", "digits")  # which pattern sets to run
    # Stored patterns per set (digits: at most 1797).
    c.num_patterns = {"random": 1000, "digits": 500 if quick else 1797}
    c.num_queries = 200 if quick else 1000  # noisy stored patterns iterated
    c.noise = 0.5  # additive noise norm relative to the unit patterns
    c.betas = (1.0, 4.0, 16.0, 64.0)  # inverse temperatures
    c.max_steps = 30 if quick else 100  # updates per trajectory
    c.tol = 1e-5  # fixed point: max|x_{t+1} - x_t| <= tol
    c.energy_atol = 1e-5  # energy increases below this count as float error
    return a.apply(c)
