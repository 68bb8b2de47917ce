"""alpha-entmax by bisection, with exact gradients in x and alpha (the GSH normalizer).

  entmax_alpha(z)_i = [(alpha - 1) z_i - tau]_+ ^ (1 / (alpha - 1)),  tau such that sum_i p_i = 1.

alpha -> 1 gives softmax, alpha = 2 sparsemax; 1 < alpha < 2 interpolates and gives exact
zeros. STanHop-Net's Generalized Sparse Hopfield (GSH) layer learns alpha = 1 + sigmoid(a).

Gradients (derived from the support equations, g_i = p_i^(2 - alpha) on the support,
g_hat = g / sum g, H = sum_i p_i log p_i):
  dp/dz     = diag(g) - g g^T / sum(g)
  dp_i/dalpha = (p_i - g_hat_i) / (alpha - 1)^2 - (p_i log p_i - g_hat_i H) / (alpha - 1)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _xlogx(p):
    return jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)


def _forward(z, alpha, n_iter):
    """Bisection on tau over [max - 1, max - n^(1 - alpha)] (on the scaled logits)."""
    am1 = alpha - 1.0
    x = z * am1
    n = z.shape[-1]
    hi_p = jnp.max(x, axis=-1, keepdims=True)
    lo = hi_p - 1.0  # p_max = 1 here: sum >= 1
    hi = hi_p - (1.0 / n) ** am1  # every p <= 1/n here: sum <= 1

    def p_of(tau):
        return jnp.maximum(x - tau, 0.0) ** (1.0 / am1)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        big = jnp.sum(p_of(mid), axis=-1, keepdims=True) >= 1.0
        return jnp.where(big, mid, lo), jnp.where(big, hi, mid)

    lo, hi = jax.lax.fori_loop(0, n_iter, body, (lo, hi))
    p = p_of(lo)
    return p / jnp.sum(p, axis=-1, keepdims=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _entmax(z, alpha, n_iter):
    return _forward(z, alpha, n_iter)


def _entmax_fwd(z, alpha, n_iter):
    p = _forward(z, alpha, n_iter)
    return p, (p, alpha)


def _entmax_bwd(n_iter, res, dp):
    del n_iter
    p, alpha = res
    am1 = alpha - 1.0
    g = jnp.where(p > 0, p ** (2.0 - alpha), 0.0)
    g_sum = jnp.sum(g, axis=-1, keepdims=True)
    dz = g * dp - g * jnp.sum(g * dp, axis=-1, keepdims=True) / g_sum
    g_hat = g / g_sum
    ent = jnp.sum(_xlogx(p), axis=-1, keepdims=True)
    dp_dalpha = (p - g_hat) / am1**2 - (_xlogx(p) - g_hat * ent) / am1
    dalpha = jnp.sum(dp * dp_dalpha, axis=-1, keepdims=True)
    return dz, dalpha


_entmax.defvjp(_entmax_fwd, _entmax_bwd)


def entmax_bisect(z: jax.Array, alpha, axis: int = -1, n_iter: int = 50) -> jax.Array:
    """alpha-entmax of ``z`` along ``axis``; ``alpha`` > 1 is a scalar or broadcastable to
    ``z`` with size 1 along ``axis``. Low-precision inputs are computed in fp32."""
    z = jnp.asarray(z)
    dtype = z.dtype
    zf = jnp.moveaxis(z.astype(jnp.float32), axis, -1)
    a = jnp.asarray(alpha, jnp.float32)
    if a.ndim:
        a = jnp.moveaxis(jnp.broadcast_to(a, z.shape), axis, -1)[..., :1]
    try:
        bad = bool(jnp.any(a <= 1.0))
    except jax.errors.ConcretizationTypeError:
        bad = False
    if bad:
        raise ValueError(f"alpha must be greater than 1; got {alpha}.")
    a = jnp.broadcast_to(a, zf.shape[:-1] + (1,))
    return jnp.moveaxis(_entmax(zf, a, n_iter), -1, axis).astype(dtype)


def sparsemax(z: jax.Array, axis: int = -1) -> jax.Array:
    """Sparsemax (Martins and Astudillo, 2016) by sorting: the Euclidean projection of z onto
    the simplex. Used as an independent check of ``entmax_bisect`` at alpha = 2."""
    z = jnp.moveaxis(jnp.asarray(z, jnp.float32), axis, -1)
    zs = jnp.flip(jnp.sort(z, axis=-1), axis=-1)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cs = jnp.cumsum(zs, axis=-1)
    support = 1 + k * zs > cs
    k_max = jnp.sum(support, axis=-1, keepdims=True)
    tau = (jnp.take_along_axis(cs, k_max.astype(jnp.int32) - 1, axis=-1) - 1) / k_max
    return jnp.moveaxis(jnp.maximum(z - tau, 0.0), -1, axis)


def gsh_alpha(param: jax.Array) -> jax.Array:
    """The GSH layer's learnable alpha = 1 + sigmoid(param), in (1, 2)."""
    return 1.0 + jax.nn.sigmoid(param)
