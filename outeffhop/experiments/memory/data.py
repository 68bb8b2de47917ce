"""Pattern sets, corrupted queries and output files for the associative-memory studies.

Two pattern sets, both unit-norm rows [M, d]: ``random`` (isotropic Gaussian directions)
and ``digits`` (scikit-learn's 8x8 digits, shipped in the wheel: d = 64, M <= 1797).
"""

from __future__ import annotations

import json
import os

import numpy as np

PATTERN_SETS = ("random", "digits")
NUM_DIGITS = 1797


def load_digits_unit(num: int, seed: int) -> np.ndarray:
    """``num`` of scikit-learn's 1797 8x8 digits (a seeded subset), as unit-norm rows [num, 64]."""
    from sklearn.datasets import load_digits

    if not 0 < num <= NUM_DIGITS:
        raise ValueError(f"the number of digit patterns must be in 1..{NUM_DIGITS}; got {num}.")
    x = load_digits().data.astype(np.float32)
    x = x[np.random.default_rng(seed).permutation(len(x))[:num]]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def corrupt(stored, kind: str, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Corrupted copies of ``stored`` [N, d]: ``noise`` adds N(0, amount^2 / d) per entry
    (noise norm ~amount); ``mask`` zeroes a random ``amount`` fraction of the entries."""
    n, d = stored.shape
    if kind == "noise":
        return stored + amount * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    if kind == "mask":
        return stored * (rng.random((n, d)) >= amount)
    raise ValueError(f"corruption kind must be 'noise' or 'mask'; got {kind!r}.")


def patterns(kind: str, num: int, dim: int, seed: int) -> np.ndarray:
    """Unit-norm stored patterns [num, dim] (``dim`` must be 64 for digits)."""
    if kind == "random":
        g = np.random.default_rng(seed).standard_normal((num, dim)).astype(np.float32)
        return g / np.linalg.norm(g, axis=1, keepdims=True)
    if kind == "digits":
        if dim != 64:
            raise ValueError(f"dim must be 64 for the digits pattern set; got {dim}.")
        return load_digits_unit(num, seed)
    raise ValueError(f"pattern set must be one of {', '.join(PATTERN_SETS)}; got {kind!r}.")


def nearest_memory(retrieved, stored, chunk: int = 4096) -> np.ndarray:
    """Index of the stored pattern with the largest cosine to each retrieved state [N]."""
    r = np.asarray(retrieved, np.float32)
    r = r / np.maximum(np.linalg.norm(r, axis=-1, keepdims=True), 1e-12)
    out = [np.argmax(r[i : i + chunk] @ stored.T, axis=-1) for i in range(0, len(r), chunk)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def write_json(metrics: dict, workdir: str) -> str:
    path = os.path.join(workdir, "metrics.json")
    with open(path, "w") as f:
        json.dump(metrics, f, indent=1)
    return path
