"""Associative-memory retrieval on real images: softmax vs Softmax_1 Hopfield updates.

Stores scikit-learn's 8x8 digits (shipped inside the wheel) as unit-norm patterns, corrupts
queries by Gaussian noise and by occlusion, retrieves with one update of each normalizer over
a range of beta, and probes queries that match no memory.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.ops import hopfield
from outeffhop.ops import softmax as sm

NORMALIZERS = ("softmax", "softmax1")


def load_digit_patterns(
    num_patterns: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm digit images [M, 64] (float32) and their labels [M]; a seeded subset when
    ``num_patterns`` is set."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype(np.float32) / 16.0, digits.target
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if num_patterns is not None:
        if not 0 < num_patterns <= len(x):
            raise ValueError(f"num_patterns must be in 1..{len(x)}; got {num_patterns}.")
        idx = np.random.default_rng(seed).permutation(len(x))[:num_patterns]
        x, y = x[idx], y[idx]
    return x, y


def corrupt(patterns, kind: str, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Noisy (``noise``: additive N(0, amount^2 / d)) or occluded (``mask``: a random
    ``amount`` fraction of pixels set to 0) copies of ``patterns`` [N, d]."""
    n, d = patterns.shape
    if kind == "noise":
        return patterns + amount * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    if kind == "mask":
        keep = rng.random((n, d)) >= amount
        return patterns * keep
    raise ValueError(f"corruption kind must be 'noise' or 'mask'; got {kind!r}.")


def unrelated_queries(patterns, num: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Queries that match no stored memory, each of unit norm (except ``zero``).

    ``noise``: isotropic Gaussian directions (mixed-sign overlaps with the memories).
    ``inverted``: negated digits, anti-aligned with every non-negative memory.
    ``zero``: the all-zero state.
    """
    d = patterns.shape[1]
    g = rng.standard_normal((num, d)).astype(np.float32)
    inv = -patterns[rng.integers(0, len(patterns), num)]
    return {
        "noise": g / np.linalg.norm(g, axis=1, keepdims=True),
        "inverted": inv,
        "zero": np.zeros((num, d), np.float32),
    }


@jax.jit
def _retrieve_all(queries, patterns, betas):
    """One update per (normalizer, beta): retrieved states [2, nb, N, d] and memory mass."""

    def one(beta, normalizer):
        w = sm.normalize(beta * queries @ patterns.T, normalizer)
        return w @ patterns, w.sum(-1)

    outs = [jax.vmap(lambda b, n=n: one(b, n))(betas) for n in NORMALIZERS]
    return jnp.stack([o[0] for o in outs]), jnp.stack([o[1] for o in outs])


def retrieval_scores(retrieved, patterns, labels, target_idx) -> dict[str, np.ndarray]:
    """Per beta: ``accuracy`` (the nearest memory by cosine is the target itself),
    ``class_accuracy`` (it shows the target's digit) and the relative L2 error."""
    r = np.asarray(retrieved)
    norms = np.linalg.norm(r, axis=-1, keepdims=True)
    nearest = np.argmax((r / np.maximum(norms, 1e-12)) @ patterns.T, axis=-1)
    err = np.linalg.norm(r - patterns[target_idx], axis=-1) / np.linalg.norm(
        patterns[target_idx], axis=-1
    )
    return {
        "accuracy": (nearest == target_idx).mean(-1),
        "class_accuracy": (labels[nearest] == labels[target_idx]).mean(-1),
        "rel_error": err.mean(-1),
    }


def run(config, workdir: str) -> dict:
    """Runs the retrieval demo; writes metrics.json, report.md and PNGs to ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    patterns, labels = load_digit_patterns(config.num_patterns, config.seed)
    betas = np.asarray(config.betas, np.float32)
    if np.any(betas <= 0):
        raise ValueError(f"betas must be positive; got {list(config.betas)}.")
    m = len(patterns)
    n_q = min(config.num_queries, m)
    target = rng.permutation(m)[:n_q]
    metrics = {"num_patterns": m, "num_queries": n_q, "betas": betas.tolist(), "corrupted": {}}
    examples = {}
    for kind, amount in (("noise", config.noise_std), ("mask", config.mask_fraction)):
        queries = corrupt(patterns[target], kind, amount, rng)
        retrieved, _ = _retrieve_all(jnp.asarray(queries), jnp.asarray(patterns), betas)
        scores = {}
        for i, name in enumerate(NORMALIZERS):
            s = retrieval_scores(retrieved[i], patterns, labels, target)
            scores[name] = {k: v.tolist() for k, v in s.items()}
        metrics["corrupted"][kind] = {"amount": amount, **scores}
        examples[kind] = (queries[:6], np.asarray(retrieved[:, :, :6]))
        logging.info("retrieval %s: %s", kind, scores)

    metrics["unrelated"] = {}
    for kind, q in unrelated_queries(patterns, n_q, rng).items():
        retrieved, mass = _retrieve_all(jnp.asarray(q), jnp.asarray(patterns), betas)
        norms = np.linalg.norm(np.asarray(retrieved), axis=-1).mean(-1)
        metrics["unrelated"][kind] = {
            name: {
                "retrieved_norm": norms[i].tolist(),
                "memory_mass": np.asarray(mass[i]).mean(-1).tolist(),
            }
            for i, name in enumerate(NORMALIZERS)
        }
    # Reference: norm retrieved from a clean stored pattern (a perfect recall has norm 1).
    clean, _ = _retrieve_all(jnp.asarray(patterns[target]), jnp.asarray(patterns), betas)
    metrics["clean_retrieved_norm"] = {
        name: np.linalg.norm(np.asarray(clean[i]), axis=-1).mean(-1).tolist()
        for i, name in enumerate(NORMALIZERS)
    }
    # Energy never increases along the iteration (a check every user can see).
    qs = jnp.asarray(corrupt(patterns[target], "noise", config.noise_std, rng))
    beta_mid = float(betas[len(betas) // 2])
    metrics["energy_check"] = _energy_check(qs, jnp.asarray(patterns), beta_mid)

    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    from outeffhop.experiments.memory import retrieval_report

    retrieval_report.write(metrics, examples, patterns[target[:6]], config, workdir)
    return metrics


def _energy_check(queries, patterns, beta, steps: int = 5) -> dict:
    """Largest energy increase over ``steps`` updates (<= ~0 up to float error), per normalizer."""
    out = {"beta": beta}
    for name in NORMALIZERS:
        x, worst = queries, -np.inf
        e = hopfield.hopfield_energy(x, patterns, beta, name)
        for _ in range(steps):
            x = hopfield.hopfield_retrieve(x, patterns, beta, name)
            e_new = hopfield.hopfield_energy(x, patterns, beta, name)
            worst = max(worst, float(jnp.max(e_new - e)))
            e = e_new
        out[name] = worst
    return out
