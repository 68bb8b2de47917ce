"""Modern Hopfield energy and retrieval, vanilla (softmax) and outlier-efficient (softmax1).

Patterns are rows ``patterns_MD`` ([M, d]); states are ``x`` of shape [..., d].
  E(x)  = -(1/beta) * lse(beta * patterns @ x) + 0.5 * x.x
  T(x)  = N(beta * patterns @ x) @ patterns        (one CCCP step; E is non-increasing)
with (lse, N) = (lse_1, Softmax_1) for ``softmax1`` and (logsumexp, softmax) for ``softmax``.
The extra 1 in lse_1 is a no-op memory: a state that matches nothing retrieves about 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop import softmax as sm

ENERGY_NORMALIZERS = ("softmax", "softmax1")


def _check(x, patterns, beta, normalizer):
    sm.check_normalizer(normalizer, ENERGY_NORMALIZERS)
    x, patterns = jnp.asarray(x), jnp.asarray(patterns)
    if patterns.ndim != 2:
        raise ValueError(f"patterns must be [M, d]; got shape {patterns.shape}.")
    if x.ndim < 1 or x.shape[-1] != patterns.shape[-1]:
        raise ValueError(
            f"x must be [..., d] with d = patterns.shape[-1] = {patterns.shape[-1]}; "
            f"got shape {x.shape}."
        )
    if jnp.ndim(beta) != 0:
        raise ValueError(f"beta must be a positive scalar; got shape {jnp.shape(beta)}.")
    try:
        bad = not np.asarray(beta) > 0
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        bad = False  # a traced beta cannot be checked here
    if bad:
        raise ValueError(f"beta must be a positive scalar; got {beta}.")
    dtype = jnp.result_type(x, patterns)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.dtype(jnp.float32)
    return x.astype(dtype), patterns.astype(dtype)


def hopfield_energy(x, patterns, beta, normalizer: str = "softmax1") -> jax.Array:
    """E(x) = -(1/beta) lse(beta * patterns @ x) + 0.5 x.x, shape [...]."""
    x, patterns = _check(x, patterns, beta, normalizer)
    scores = beta * (x @ patterns.T)
    lse = sm.lse_1 if normalizer == "softmax1" else sm.logsumexp
    return -lse(scores, axis=-1) / beta + 0.5 * jnp.sum(x * x, axis=-1)


def _step(x, patterns, beta, normalizer):
    scores = beta * (x @ patterns.T)
    return sm.normalize(scores, normalizer, axis=-1) @ patterns


def hopfield_retrieve(x, patterns, beta, normalizer: str = "softmax1", steps: int = 1) -> jax.Array:
    """Applies ``steps`` retrieval updates x <- N(beta * patterns @ x) @ patterns."""
    x, patterns = _check(x, patterns, beta, normalizer)
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}.")
    for _ in range(steps):
        x = _step(x, patterns, beta, normalizer)
    return x


def hopfield_fixed_point(
    x,
    patterns,
    beta,
    normalizer: str = "softmax1",
    *,
    max_steps: int = 100,
    tol: float = 1e-6,
) -> tuple[jax.Array, jax.Array]:
    """Iterates the update until max|x_new - x| <= tol per state or ``max_steps``.

    Returns ``(x, steps)``: the final states [..., d] and the number of updates each
    state took, int32 [...]. A converged state stops moving while others continue.
    """
    x, patterns = _check(x, patterns, beta, normalizer)
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0; got {max_steps}.")
    batch = x.shape[:-1]

    def cond(carry):
        _, _, done, i = carry
        return (i < max_steps) & ~jnp.all(done)

    def body(carry):
        x, steps, done, i = carry
        x_new = _step(x, patterns, beta, normalizer).astype(x.dtype)
        delta = jnp.max(jnp.abs(x_new - x), axis=-1)
        x = jnp.where(done[..., None], x, x_new)
        steps = steps + (~done).astype(jnp.int32)
        return x, steps, done | (delta <= tol), i + 1

    init = (x, jnp.zeros(batch, jnp.int32), jnp.zeros(batch, bool), jnp.int32(0))
    x, steps, _, _ = jax.lax.while_loop(cond, body, init)
    return x, steps
