"""Convergence: energy trajectories and steps to a fixed point, softmax vs Softmax_1.

Iterates the Hopfield update x <- N(beta * x @ stored^T) @ stored (``outeffhop.ops.hopfield``)
from noisy stored patterns for ``max_steps`` updates, recording the energy
E(x) = -(1/beta) lse(beta * stored @ x) + 0.5 x.x (lse_1 for softmax1) after every update.
Checks that E never increases (the CCCP guarantee, up to float error) and counts the
updates until max|x_{t+1} - x_t| <= tol (the fixed point).
"""

from __future__ import annotations

import functools
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.experiments.memory import data
from outeffhop.experiments.memory import plots as memory_plots
from outeffhop.ops import hopfield as memory

NORMALIZERS = ("softmax", "softmax1")


@functools.partial(jax.jit, static_argnames=("normalizer", "max_steps"))
def trajectory(queries, stored, beta, normalizer: str, max_steps: int):
    """Energies [max_steps + 1, N], changes max|x_{t+1} - x_t| [max_steps, N], final x."""

    def step(x, _):
        x_new = memory.retrieve(x, stored, beta=beta, normalizer=normalizer)
        e = memory.energy(x_new, stored, beta=beta, normalizer=normalizer)
        return x_new, (e, jnp.max(jnp.abs(x_new - x), axis=-1))

    e0 = memory.energy(queries, stored, beta=beta, normalizer=normalizer)
    x, (energies, deltas) = jax.lax.scan(step, queries, length=max_steps)
    return jnp.concatenate([e0[None], energies]), deltas, x


def steps_to_fixed_point(deltas, tol: float) -> np.ndarray:
    """Updates until the first change <= tol, per query [N]; -1 where it never happened."""
    hit = np.asarray(deltas) <= tol
    return np.where(hit.any(0), hit.argmax(0) + 1, -1)


def run(config, workdir: str) -> dict:
    """Runs the convergence study; writes metrics.json, report.md and PNGs to ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    if config.max_steps < 1:
        raise ValueError(f"config.max_steps must be >= 1; got {config.max_steps}.")
    if any(b <= 0 for b in config.betas):
        raise ValueError(f"config.betas must be positive; got {list(config.betas)}.")
    results = []
    for kind in config.pattern_sets:
        m = config.num_patterns[kind]
        rng = np.random.default_rng(config.seed)
        stored = data.patterns(kind, m, config.dim, config.seed)
        target = rng.integers(0, m, config.num_queries)
        queries = data.corrupt(stored[target], "noise", config.noise, rng)
        for normalizer in NORMALIZERS:
            for beta in config.betas:
                e, d, x = trajectory(
                    jnp.asarray(queries), jnp.asarray(stored), float(beta), normalizer,
                    int(config.max_steps),
                )  # fmt: skip
                e, d = np.asarray(e, np.float64), np.asarray(d)
                steps = steps_to_fixed_point(d, config.tol)
                done = steps[steps > 0]
                increase = np.diff(e, axis=0)
                results.append(
                    dict(
                        pattern_set=kind,
                        num_patterns=m,
                        normalizer=normalizer,
                        beta=float(beta),
                        mean_energy=e.mean(1).tolist(),
                        max_energy_increase=float(increase.max()),
                        energy_monotone=bool(increase.max() <= config.energy_atol),
                        converged_fraction=float((steps > 0).mean()),
                        median_steps=float(np.median(done)) if done.size else None,
                        max_steps_taken=int(done.max()) if done.size else None,
                        steps_histogram=np.bincount(
                            np.maximum(steps, 0), minlength=config.max_steps + 1
                        ).tolist(),
                        recall=float(np.mean(data.nearest_memory(x, stored) == target)),
                        final_norm=float(np.mean(np.linalg.norm(np.asarray(x), axis=-1))),
                    )  # fmt: skip
                )
        logging.info("convergence: %s done", kind)
    metrics = {"config": config.to_dict(), "results": results}
    data.write_json(metrics, workdir)
    memory_plots.convergence_report(metrics, workdir)
    return metrics
