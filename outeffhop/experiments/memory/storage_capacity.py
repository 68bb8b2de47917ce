"""Storage capacity: retrieval error against the number of stored patterns M.

For each pattern set (random unit vectors up to >= 10^4, all 1797 digits), each M, beta,
normalizer (softmax, softmax1), corruption (additive noise, occlusion) and number of extra
updates, stores M patterns, corrupts ``num_queries`` of them and retrieves with the plain
API (``outeffhop.ops.hopfield.retrieve``). A query fails when the memory nearest (by cosine) to
what it retrieves is not the one it came from. The capacity estimate is the largest M in
the sweep whose error rate is at most ``error_threshold``.
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


@functools.partial(jax.jit, static_argnames=("normalizer", "steps"))
def _retrieve(queries, stored, betas, normalizer: str, steps: int):
    """Retrieved states [num_betas, N, d] after ``steps`` + 1 updates, for every beta."""
    one = lambda b: memory.retrieve(  # noqa: E731
        queries, stored, beta=b, normalizer=normalizer, update_steps_max=steps,
        update_steps_eps=1e-30,
    )  # fmt: skip
    return jax.lax.map(one, betas)


def _score(retrieved, stored, target) -> dict:
    """Error rate (nearest memory != target), mean relative L2 error and mean norm."""
    r = np.asarray(retrieved)
    t = stored[target]
    rel = np.linalg.norm(r - t, axis=-1) / np.linalg.norm(t, axis=-1)
    return {
        "error_rate": float(np.mean(data.nearest_memory(r, stored) != target)),
        "rel_error": float(np.mean(rel)),
        "norm": float(np.mean(np.linalg.norm(r, axis=-1))),
    }


def _capacity(curve_m, curve_err, threshold):
    ok = [m for m, e in zip(curve_m, curve_err, strict=True) if e <= threshold]
    return max(ok) if ok else None


def run(config, workdir: str) -> dict:
    """Runs the capacity sweep; writes metrics.json, report.md and PNGs to ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    betas = np.asarray(config.betas, np.float32)
    if np.any(betas <= 0):
        raise ValueError(f"config.betas must be positive; got {list(config.betas)}.")
    sizes = {
        "random": tuple(config.num_patterns_random),
        "digits": tuple(config.num_patterns_digits),
    }
    if any(m > data.NUM_DIGITS for m in sizes["digits"]):
        raise ValueError(f"config.num_patterns_digits must be <= {data.NUM_DIGITS}.")
    results = []
    for kind in config.pattern_sets:
        for m in sizes[kind]:
            rng = np.random.default_rng(config.seed + m)
            stored = data.patterns(kind, m, config.dim, config.seed + m)
            target = rng.integers(0, m, config.num_queries)
            for corruption, amount in config.corruptions:
                queries = data.corrupt(stored[target], corruption, amount, rng)
                for steps in config.update_steps:
                    for normalizer in NORMALIZERS:
                        out = _retrieve(
                            jnp.asarray(queries), jnp.asarray(stored), jnp.asarray(betas),
                            normalizer, int(steps),
                        )  # fmt: skip
                        for beta, r in zip(betas.tolist(), out, strict=True):
                            row = dict(
                                pattern_set=kind, num_patterns=m, corruption=corruption,
                                amount=amount, update_steps=int(steps), normalizer=normalizer,
                                beta=beta, **_score(r, stored, target),
                            )  # fmt: skip
                            results.append(row)
            logging.info("capacity: %s M=%d done", kind, m)

    capacity = []
    for kind in config.pattern_sets:
        for corruption, _ in config.corruptions:
            for steps in config.update_steps:
                for normalizer in NORMALIZERS:
                    for beta in betas.tolist():
                        rows = [
                            r for r in results
                            if (r["pattern_set"], r["corruption"], r["update_steps"],
                                r["normalizer"], r["beta"]) == (kind, corruption, steps,
                                                                normalizer, beta)
                        ]  # fmt: skip
                        ms = [r["num_patterns"] for r in rows]
                        errs = [r["error_rate"] for r in rows]
                        capacity.append(
                            dict(
                                pattern_set=kind,
                                corruption=corruption,
                                update_steps=steps,
                                normalizer=normalizer,
                                beta=beta,
                                capacity=_capacity(ms, errs, config.error_threshold),
                                error_at_max_m=errs[-1],
                                max_m=ms[-1],
                            )  # fmt: skip
                        )
    metrics = {
        "config": config.to_dict(),
        "results": results,
        "capacity": capacity,
        "error_threshold": config.error_threshold,
    }
    data.write_json(metrics, workdir)
    memory_plots.capacity_report(metrics, workdir)
    return metrics
