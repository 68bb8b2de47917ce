"""No-op behaviour: how much a query unrelated to every memory retrieves.

The extra 1 in Softmax_1 is a memory whose score is always 0 and whose content is 0: a
query whose scores beta * stored @ x are all well below 0 puts its mass there and retrieves
~0, where softmax must return a blend of memories with norm ~1. Query kinds: ``noise``
(random unit directions), ``inverted`` (negated stored patterns), ``anti_mean`` (the
negated mean memory direction plus a little noise: negative scores on most memories),
``orthogonal`` (unit directions orthogonal to every memory; only when M < d), ``zero``;
and ``stored`` (clean memories) as the reference of a full recall. Reports the mean
retrieved norm and the mass sum(xi) on the memories, per beta and number of updates.
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
QUERY_KINDS = ("stored", "noise", "inverted", "anti_mean", "orthogonal", "zero")


@functools.partial(jax.jit, static_argnames=("normalizer", "steps"))
def _probe(queries, stored, betas, normalizer: str, steps: int):
    """Mean retrieved norm and mean memory mass, each [num_betas]."""

    def one(beta):
        xi, _ = memory.associate(
            queries, stored, beta=beta, normalizer=normalizer, update_steps_max=steps,
            update_steps_eps=1e-30,
        )  # fmt: skip
        out = xi @ stored
        return jnp.mean(jnp.linalg.norm(out, axis=-1)), jnp.mean(jnp.sum(xi, axis=-1))

    return jax.lax.map(one, betas)


def queries(kind: str, stored: np.ndarray, num: int, rng) -> np.ndarray | None:
    """``num`` queries of one kind [num, d] (unit norm except ``zero``); None if impossible."""
    m, d = stored.shape
    if kind == "stored":
        return stored[rng.integers(0, m, num)]
    if kind == "inverted":
        return -stored[rng.integers(0, m, num)]
    if kind == "zero":
        return np.zeros((num, d), np.float32)
    g = rng.standard_normal((num, d)).astype(np.float32)
    if kind == "anti_mean":
        mean = stored.mean(0) / np.linalg.norm(stored.mean(0))
        g = -mean + 0.1 * g / np.sqrt(d)
    if kind == "orthogonal":
        if m >= d:
            return None
        basis, _ = np.linalg.qr(stored.T.astype(np.float64))  # [d, m], spans the memories
        g = (g - (g @ basis) @ basis.T).astype(np.float32)
    elif kind not in ("noise", "anti_mean"):
        raise ValueError(f"query kind must be one of {', '.join(QUERY_KINDS)}; got {kind!r}.")
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def run(config, workdir: str) -> dict:
    """Runs the no-op study; writes metrics.json, report.md and PNGs to ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    betas = np.asarray(config.betas, np.float32)
    if np.any(betas <= 0):
        raise ValueError(f"config.betas must be positive; got {list(config.betas)}.")
    results = []
    for kind in config.pattern_sets:
        for m in config.num_patterns[kind]:
            rng = np.random.default_rng(config.seed + m)
            stored = data.patterns(kind, m, config.dim, config.seed + m)
            for qkind in QUERY_KINDS:
                q = queries(qkind, stored, config.num_queries, rng)
                if q is None:
                    continue
                for steps in config.update_steps:
                    for normalizer in NORMALIZERS:
                        norm, mass = _probe(
                            jnp.asarray(q), jnp.asarray(stored), jnp.asarray(betas),
                            normalizer, int(steps),
                        )  # fmt: skip
                        results.append(
                            dict(
                                pattern_set=kind,
                                num_patterns=m,
                                query=qkind,
                                update_steps=int(steps),
                                normalizer=normalizer,
                                betas=betas.tolist(),
                                norm=np.asarray(norm).tolist(),
                                mass=np.asarray(mass).tolist(),
                            )  # fmt: skip
                        )
            logging.info("noop: %s M=%d done", kind, m)
    metrics = {"config": config.to_dict(), "results": results}
    data.write_json(metrics, workdir)
    memory_plots.noop_report(metrics, workdir)
    return metrics
