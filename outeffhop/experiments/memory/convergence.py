"""Convergence: energy trajectories and steps to a fixed point, softmax vs Softmax_1.

Iterates the Hopfield update x <- N(beta * x @ stored^T) @ stored (``outeffhop.ops.hopfield``)
from noisy stored patterns for ``max_steps`` updates, recording the energy
E(x) = -(1/beta) lse(beta * stored @ x) + 0.5 x.x (lse_1 for softmax1) after every update.
Checks that E never increases (the CCCP guarantee, up to float error), counts the updates
until max|x_{t+1} - x_t| <= tol (the fixed point) and measures stationarity at the final
states: ||grad E(x_T)|| = ||x_T - T(x_T)|| (``ops.hopfield.stationarity``), 0 exactly at a
fixed point. The same runs for GSH (alpha-entmax, ``ops.entmax.gsh_update``) with its
energy -(1/beta) Psi_alpha(beta xi x) + 0.5 x.x (``ops.entmax.gsh_energy``), per alpha in
``config.gsh_alphas``.
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
from outeffhop.ops import entmax
from outeffhop.ops import hopfield as memory

NORMALIZERS = ("softmax", "softmax1")


def _model(normalizer: str, beta, alpha):
    """(T, E) of one normalizer: softmax / softmax1, or gsh (alpha-entmax)."""
    if normalizer == "gsh":
        return (
            lambda x, xi: entmax.gsh_update(x, xi, beta=beta, alpha=alpha),
            lambda x, xi: entmax.gsh_energy(x, xi, beta=beta, alpha=alpha),
        )
    return (
        lambda x, xi: memory.update(x, xi, beta=beta, normalizer=normalizer),
        lambda x, xi: memory.energy(x, xi, beta=beta, normalizer=normalizer),
    )


@functools.partial(jax.jit, static_argnames=("normalizer", "max_steps"))
def trajectory(queries, stored, beta, normalizer: str, max_steps: int, alpha=1.5):
    """Energies [max_steps + 1, N], changes max|x_{t+1} - x_t| [max_steps, N], final x and
    its stationarity ||x - T(x)|| [N]; ``alpha`` is used by ``normalizer="gsh"`` only."""
    update, energy = _model(normalizer, beta, alpha)

    def step(x, _):
        x_new = update(x, stored)
        return x_new, (energy(x_new, stored), jnp.max(jnp.abs(x_new - x), axis=-1))

    e0 = energy(queries, stored)
    x, (energies, deltas) = jax.lax.scan(step, queries, length=max_steps)
    grad_norm = jnp.linalg.norm(x - update(x, stored), axis=-1)
    return jnp.concatenate([e0[None], energies]), deltas, x, grad_norm


def steps_to_fixed_point(deltas, tol: float) -> np.ndarray:
    """Updates until the first change <= tol, per query [N]; -1 where it never happened."""
    hit = np.asarray(deltas) <= tol
    return np.where(hit.any(0), hit.argmax(0) + 1, -1)


def _row(out, stored, target, config) -> dict:
    """Energy monotonicity, steps to the fixed point, stationarity and recall of one run."""
    e, d, x, grad_norm = (np.asarray(v, np.float64) for v in out)
    steps = steps_to_fixed_point(d, config.tol)
    done = steps[steps > 0]
    increase = np.diff(e, axis=0)
    conv = grad_norm[steps > 0]
    return dict(
        mean_energy=e.mean(1).tolist(),
        max_energy_increase=float(increase.max()),
        energy_monotone=bool(increase.max() <= config.energy_atol),
        converged_fraction=float((steps > 0).mean()),
        median_steps=float(np.median(done)) if done.size else None,
        max_steps_taken=int(done.max()) if done.size else None,
        steps_histogram=np.bincount(np.maximum(steps, 0), minlength=config.max_steps + 1).tolist(),
        stationarity_max=float(grad_norm.max()),
        stationarity_median=float(np.median(grad_norm)),
        stationarity_max_converged=float(conv.max()) if conv.size else None,
        recall=float(np.mean(data.nearest_memory(x, stored) == target)),
        final_norm=float(np.mean(np.linalg.norm(x, axis=-1))),
    )


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
        models = [(n, None) for n in NORMALIZERS] + [("gsh", a) for a in config.gsh_alphas]
        for normalizer, alpha in models:
            for beta in config.betas:
                out = trajectory(
                    jnp.asarray(queries),
                    jnp.asarray(stored),
                    float(beta),
                    normalizer,
                    int(config.max_steps),
                    1.5 if alpha is None else float(alpha),
                )
                row = _row(out, stored, target, config)
                results.append(
                    dict(
                        pattern_set=kind,
                        num_patterns=m,
                        normalizer=normalizer,
                        alpha=alpha,
                        beta=float(beta),
                        **row,
                    )
                )
        logging.info("convergence: %s done", kind)
    metrics = {"config": config.to_dict(), "results": results}
    data.write_json(metrics, workdir)
    memory_plots.convergence_report(metrics, workdir)
    return metrics
