"""Convergence of softmax vs Softmax_1 Hopfield updates: energy trajectories, fixed points.

Run:     python scripts/run.py --config configs/memory_convergence.py:quick \
             --workdir runs/memory_convergence
Library: outeffhop.experiments.memory.convergence.run(get_config("quick"), workdir)
Runtime: quick 85 s wall, 42 s CPU (load 6-7). cpu 16.7 min wall, 416 s CPU under
         nice -n 19 on the shared 2-core box at load average 7-15 (GSH's 50-step bisection
         dominates); the cpu preset was cut to 500 queries (from 1000: 41 min wall, 784 s CPU
         at load 12-15) to fit 25 min.
Expect:  the energy never increases along the iteration (cpu: largest increase 9.5e-7 over
         all 32 runs, float32 round-off) for softmax, Softmax_1 and GSH (alpha 1.5, 2); most
         queries reach a fixed point within a few updates at large beta (one memory wins) and
         need more at small beta or on the correlated digits (metastable blends); at the states
         that met the tolerance ||grad E|| = ||x - T(x)|| <= sqrt(d) tol (cpu: at most 3.3e-5
         against 8e-5), i.e. they are stationary points of E.
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
    c.num_queries = 200 if quick else 500  # noisy queries iterated (cpu: 1000 took 41 min)
    c.noise = 0.5  # additive noise norm relative to the unit patterns
    c.betas = (1.0, 4.0, 16.0, 64.0)  # inverse temperatures
    c.max_steps = 30 if quick else 100  # updates per trajectory
    c.tol = 1e-5  # fixed point: max|x_{t+1} - x_t| <= tol
    c.energy_atol = 1e-5  # energy increases below this count as float error
    c.gsh_alphas = (1.5, 2.0)  # GSH (alpha-entmax) runs next to softmax / softmax1
    return a.apply(c)
