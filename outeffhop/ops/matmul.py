"""Batched products for the Hopfield association, with backward passes shaped for XLA's CPU.

Autodiff of ``a @ b`` gives one gradient as ``a^T g``, a dot contracting the row axis of
both operands; XLA's CPU backend gives such dots (and transposes folded into dots) to its
generic Eigen path, 10-15x slower than the YNNPACK matmuls of row-major products. Here
every backward product is row-major: the transpose of the smaller operand is materialized
behind an optimization barrier (as ``outeffhop.nn.dense`` does for Dense layers).
``normalize_read`` fuses N(scores) @ v with the flash-attention backward
dS = P * (dP - rowsum(dO * O)) for softmax and Softmax_1 (both have the Jacobian
diag(y) - y y^T), which saves a pass over the [..., L, S] matrices. Off CPU the products are
plain ``lax.dot_general``. Shapes: a [..., M, K]; batch axes equal (broadcast them first).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from outeffhop.ops import softmax as sm

READ_NORMALIZERS = ("softmax", "softmax1")  # the ones with Jacobian diag(y) - y y^T


def _nn(a, b):
    """a [..., M, K] @ b [..., K, N] -> [..., M, N]."""
    batch = tuple(range(a.ndim - 2))
    return lax.dot_general(a, b, (((a.ndim - 1,), (b.ndim - 2,)), (batch, batch)))


def _nt(a, b):
    """a [..., M, K] @ b[..., N, K]^T -> [..., M, N]."""
    batch = tuple(range(a.ndim - 2))
    return lax.dot_general(a, b, (((a.ndim - 1,), (b.ndim - 1,)), (batch, batch)))


def _t(x):
    """x^T over the last two axes, materialized (a barrier keeps XLA from folding it)."""
    return lax.optimization_barrier(jnp.swapaxes(x, -1, -2))


def _tn(x, g):
    """x^T @ g for x [..., M, K], g [..., M, N] -> [..., K, N], with row-major products only:
    transposes the smaller of the two (the result's transpose then is a small copy)."""
    if x.size <= g.size:
        return _nn(_t(x), g)
    return jnp.swapaxes(lax.optimization_barrier(_nn(_t(g), x)), -1, -2)


def _cpu() -> bool:
    return jax.default_backend() == "cpu"


@jax.custom_vjp
def _matmul(a, b):
    return _nn(a, b)


def _matmul_fwd(a, b):
    return _nn(a, b), (a, b)


def _matmul_bwd(res, g):
    a, b = res
    return _nt(g, b).astype(a.dtype), _tn(a, g).astype(b.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


@jax.custom_vjp
def _matmul_t(a, b):
    return _nt(a, b)


def _matmul_t_fwd(a, b):
    return _nt(a, b), (a, b)


def _matmul_t_bwd(res, g):
    a, b = res
    return _nn(g, b).astype(a.dtype), _tn(g, a).astype(b.dtype)


_matmul_t.defvjp(_matmul_t_fwd, _matmul_t_bwd)


def matmul(a, b) -> jax.Array:
    """a @ b over the last two axes: [..., M, K] x [..., K, N] -> [..., M, N]."""
    a, b = _common(a, b)
    return _matmul(a, b) if _cpu() else _nn(a, b)


def matmul_t(a, b) -> jax.Array:
    """a @ b^T over the last two axes: [..., M, K] x [..., N, K] -> [..., M, N]."""
    a, b = _common(a, b)
    return _matmul_t(a, b) if _cpu() else _nt(a, b)


def _common(a, b):
    """Both operands in one dtype with their batch axes broadcast to each other."""
    dtype = jnp.result_type(a, b)
    a, b = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    lead = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return jnp.broadcast_to(a, lead + a.shape[-2:]), jnp.broadcast_to(b, lead + b.shape[-2:])


def normalize_read(scores, v, normalizer: str = "softmax", mask=None) -> jax.Array:
    """N(scores) @ v over the last axis of ``scores`` [..., L, S] and v [..., S, P].

    N is softmax or Softmax_1 (``mask``: True = keep, broadcastable to scores; masked
    entries and fully masked rows weigh 0). The backward pass keeps P = N(scores) and the
    output O and forms dS = P * (dP - rowsum(dO * O)) with dP = dO v^T.
    """
    sm.check_normalizer(normalizer, READ_NORMALIZERS)
    scores, v = _common(scores, v)
    mask = None if mask is None else jnp.broadcast_to(jnp.asarray(mask, bool), scores.shape)
    return _normalize_read(normalizer, scores, v, mask)


def _probabilities(normalizer, scores, mask):
    return sm.normalize(scores, normalizer, axis=-1, where=mask).astype(scores.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _normalize_read(normalizer, scores, v, mask):
    return _nn(_probabilities(normalizer, scores, mask), v)


def _read_fwd(normalizer, scores, v, mask):
    p = _probabilities(normalizer, scores, mask)
    out = _nn(p, v)
    return out, (p, v, out)


def _read_bwd(normalizer, res, g):
    p, v, out = res
    d = jnp.sum(g * out, axis=-1, keepdims=True)  # = rowsum(P * dP)
    ds = p * (_nt(g, v) - d)
    dv = _tn(p, g) if _cpu() else _nn(jnp.swapaxes(p, -1, -2), g)
    return ds.astype(p.dtype), dv.astype(v.dtype), None


_normalize_read.defvjp(_read_fwd, _read_bwd)
