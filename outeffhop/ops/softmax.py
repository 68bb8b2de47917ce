"""Normalizers for attention and Hopfield retrieval: softmax, Softmax_1, clipped softmax.

All functions are pure JAX. Low-precision floats (fp16, bf16) are computed in fp32 and
returned in their own dtype. ``where`` is a boolean mask broadcastable to ``x``: entries
where it is False contribute nothing and come out exactly 0; a fully masked row gives
zeros with finite gradients.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

NORMALIZERS = ("softmax", "softmax1", "clipped", "clipped_softmax1")
_LOW_PRECISION = (jnp.float16, jnp.bfloat16)


def check_normalizer(normalizer: str, allowed: tuple[str, ...] = NORMALIZERS) -> str:
    """Returns ``normalizer`` or raises ValueError naming the accepted values."""
    if normalizer not in allowed:
        raise ValueError(f"normalizer must be one of {', '.join(allowed)}; got {normalizer!r}.")
    return normalizer


def _concrete(flag) -> bool:
    """True iff ``flag`` is concretely true anywhere; traced values count as False."""
    try:
        return bool(jnp.any(flag))
    except jax.errors.ConcretizationTypeError:
        return False


def _upcast(x: jax.Array) -> tuple[jax.Array, jnp.dtype]:
    x = jnp.asarray(x)
    dtype = x.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        return x.astype(jnp.float32), jnp.dtype(jnp.float32)
    if dtype in _LOW_PRECISION:
        return x.astype(jnp.float32), dtype
    return x, dtype


def _check_axis(x, axis) -> None:
    """ValueError unless ``x`` has a non-empty ``axis`` to normalize over."""
    if x.ndim == 0:
        raise ValueError("x must have an axis to normalize over; got a 0-d array (try x[None]).")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"axis must be in [-{x.ndim}, {x.ndim}) for x of shape {x.shape}; got {axis}."
        )
    if x.shape[axis] == 0:
        raise ValueError(
            f"x has no entries along axis {axis} (shape {x.shape}): nothing to normalize."
        )


def _prepare(x, where, axis):
    """Upcasts ``x`` and sets entries where ``where`` is False to -inf."""
    x, dtype = _upcast(x)
    _check_axis(x, axis)
    if where is not None:
        where = jnp.asarray(where)
        try:
            where = jnp.broadcast_to(where.astype(bool), x.shape)
        except ValueError:
            raise ValueError(
                f"where must be a boolean mask broadcastable to x's shape {x.shape}; "
                f"got shape {where.shape}."
            ) from None
        x = jnp.where(where, x, -jnp.inf)
    return x, dtype


def _parts(x, axis):
    """m = max_j x_j (0 for rows that are all -inf), e = exp(x - m) and s = sum_j e_j.

    So logsumexp(x) = m + log(s); nothing overflows, and fully masked rows give s = 0.
    """
    m = jnp.max(x, axis=axis, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.exp(x - m)
    return m, e, jnp.sum(e, axis=axis, keepdims=True)


# Softmax and Softmax_1 share the Jacobian diag(y) - y y^T, so one custom JVP serves
# both: it keeps only y for the backward pass and is finite at -inf (masked) entries.
@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _normalized(x, axis, one):
    m, e, s = _parts(x, axis)
    scale = 1.0 / jnp.where(s > 0, s, 1.0)
    if one:
        # S / (1 + S) = sigmoid(log S): Softmax_1 is softmax times a per-row factor, so it
        # makes the same passes over x as softmax (measured faster than exp(-m) in the sum).
        scale = scale * jax.nn.sigmoid(m + jnp.log(s))
    return e * scale


@_normalized.defjvp
def _normalized_jvp(axis, one, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    y = _normalized(x, axis, one)
    return y, y * (x_dot - jnp.sum(y * x_dot, axis=axis, keepdims=True))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _lse(x, axis, one):
    m, _, s = _parts(x, axis)
    lse = jnp.squeeze(m + jnp.log(s), axis=axis)
    return jax.nn.softplus(lse) if one else lse  # log(1 + S) = softplus(log S)


@_lse.defjvp
def _lse_jvp(axis, one, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    y = _normalized(x, axis, one)
    return _lse(x, axis, one), jnp.sum(y * x_dot, axis=axis)


def softmax(x: jax.Array, axis: int = -1, where: jax.Array | None = None) -> jax.Array:
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j); a fully masked row gives zeros."""
    x, dtype = _prepare(x, where, axis)
    return _normalized(x, axis, False).astype(dtype)


def softmax_1(x: jax.Array, axis: int = -1, where: jax.Array | None = None) -> jax.Array:
    """Softmax_1(x)_i = exp(x_i) / (1 + sum_j exp(x_j)).

    Equals softmax over ``[x, 0]`` with the last entry dropped; the outputs sum to less
    than 1. Computed stably as ``softmax(x) * sigmoid(lse(x))`` with lse = m + log sum_j
    exp(x_j - m), m = max_j x_j: the same value as the form
    ``exp(x - m') / (exp(-m') + sum_j exp(x_j - m'))``, m' = max(m, 0), and like it never
    exponentiates a large positive number, so very negative, +-1e4 or fully masked rows
    stay finite (masked rows give 0). The backward pass uses y only (custom JVP).
    """
    x, dtype = _prepare(x, where, axis)
    return _normalized(x, axis, True).astype(dtype)


def lse_1(x: jax.Array, axis: int = -1, where: jax.Array | None = None) -> jax.Array:
    """lse_1(x) = log(1 + sum_j exp(x_j)), reduced over ``axis``; its gradient is Softmax_1."""
    x, dtype = _prepare(x, where, axis)
    return _lse(x, axis, True).astype(dtype)


def logsumexp(x: jax.Array, axis: int = -1, where: jax.Array | None = None) -> jax.Array:
    """log(sum_j exp(x_j)) over ``axis``; -inf (zero gradient) for a fully masked row."""
    x, dtype = _prepare(x, where, axis)
    return _lse(x, axis, False).astype(dtype)


def clipped_softmax(
    x: jax.Array,
    *,
    gamma: float,
    zeta: float,
    axis: int = -1,
    where: jax.Array | None = None,
    normalizer: str = "softmax",
) -> jax.Array:
    """clip((zeta - gamma) * N(x) + gamma, 0, 1) with N softmax or softmax1.

    Bondarenko et al. (2023): gamma < 0 lets a head give exact zeros; zeta > 1 exact ones.
    Masked entries come out 0 whatever gamma is.
    """
    base = {"softmax": softmax, "softmax1": softmax_1}
    if normalizer not in base:
        raise ValueError(f"normalizer must be one of softmax, softmax1; got {normalizer!r}.")
    if _concrete(zeta <= gamma):
        raise ValueError(f"zeta must be greater than gamma; got gamma={gamma}, zeta={zeta}.")
    x, dtype = _upcast(x)
    p = base[normalizer](x, axis=axis, where=where)
    where = None if where is None else jnp.asarray(where, bool)
    out = jnp.clip((zeta - gamma) * p + gamma, 0.0, 1.0)
    if where is not None:
        out = jnp.where(where, out, 0.0)
    return out.astype(dtype)


def normalize(
    x: jax.Array,
    normalizer: str,
    *,
    axis: int = -1,
    where: jax.Array | None = None,
    gamma: float | None = None,
    zeta: float | None = None,
) -> jax.Array:
    """Applies a normalizer by name: softmax, softmax1, clipped or clipped_softmax1."""
    check_normalizer(normalizer)
    if normalizer == "softmax":
        return softmax(x, axis=axis, where=where)
    if normalizer == "softmax1":
        return softmax_1(x, axis=axis, where=where)
    if gamma is None or zeta is None:
        raise ValueError(f"normalizer={normalizer!r} needs gamma and zeta; got {gamma}, {zeta}.")
    base = "softmax1" if normalizer == "clipped_softmax1" else "softmax"
    return clipped_softmax(x, gamma=gamma, zeta=zeta, axis=axis, where=where, normalizer=base)
