"""Dot-product attention with a pluggable normalizer, a fused and a reference path.

Arrays follow ``jax.nn.dot_product_attention``: q [B, T, H, D], k and v [B, S, H, D];
``mask`` is boolean, broadcastable to [B, H, T, S] (True = attend). ``is_causal`` lets
query i see keys j <= i (top-left aligned, as in jax).

Softmax_1 attention equals softmax attention with one extra key whose logit is 0 and
whose value is 0. The fused path uses that: it prepends a zero key and value at
position 0 and hands the rest to ``jax.nn.dot_product_attention`` (cuDNN / XLA kernels).
The causal mask then becomes a local window (T, 1) so every query sees the zero key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from outeffhop import softmax as sm

FUSED_NORMALIZERS = ("softmax", "softmax1")
IMPLEMENTATIONS = ("fused", "reference")


def _check(q, k, v, normalizer, implementation):
    sm.check_normalizer(normalizer)
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of fused, reference or None; got {implementation!r}."
        )
    if implementation == "fused" and normalizer not in FUSED_NORMALIZERS:
        raise ValueError(
            f"implementation='fused' supports normalizer softmax or softmax1; got {normalizer!r}."
        )
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"q, k, v must be [B, L, H, D]; got shapes {q.shape}, {k.shape}, {v.shape}."
        )
    if k.shape[:3] != v.shape[:3] or q.shape[0] != k.shape[0]:
        raise ValueError(f"k and v must share [B, S, H]; got {k.shape} and {v.shape}.")
    if q.shape[2] != k.shape[2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q and k must share H and D; got {q.shape} and {k.shape}.")


def _full_mask(mask, is_causal, t, s):
    """Combined boolean mask [B|1, H|1, T, S] or None."""
    if is_causal:
        causal = jnp.tril(jnp.ones((t, s), bool))[None, None]
        mask = causal if mask is None else jnp.logical_and(mask, causal)
    return mask


def attention_weights(
    q,
    k,
    *,
    normalizer="softmax",
    mask=None,
    is_causal=False,
    scale=None,
    gamma=None,
    zeta=None,
) -> jax.Array:
    """Normalized scores N(scale * q k^T) of shape [B, H, T, S] (the reference path)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = jnp.einsum("bthd,bshd->bhts", q, k) * scale
    mask = _full_mask(mask, is_causal, *logits.shape[-2:])
    if mask is not None:
        mask = jnp.broadcast_to(mask, logits.shape)
    return sm.normalize(logits, normalizer, axis=-1, where=mask, gamma=gamma, zeta=zeta)


def _fused(q, k, v, normalizer, mask, is_causal, scale):
    b, t, h, d = q.shape
    if normalizer == "softmax":
        return jax.nn.dot_product_attention(q, k, v, scale=scale, mask=mask, is_causal=is_causal)
    zero = jnp.zeros((b, 1, h, d), k.dtype)
    k1, v1 = jnp.concatenate([zero, k], axis=1), jnp.concatenate([zero, v.astype(k.dtype)], 1)
    if mask is None:
        window = (t, 1) if is_causal else None
        return jax.nn.dot_product_attention(q, k1, v1, scale=scale, local_window_size=window)
    mask = _full_mask(mask, is_causal, t, k.shape[1])
    mask = jnp.broadcast_to(mask, jnp.broadcast_shapes(mask.shape, (1, 1, t, k.shape[1])))
    ones = jnp.ones(mask.shape[:-1] + (1,), bool)
    return jax.nn.dot_product_attention(
        q, k1, v1, scale=scale, mask=jnp.concatenate([ones, mask], -1)
    )


def dot_product_attention(
    q,
    k,
    v,
    *,
    normalizer: str = "softmax",
    mask=None,
    is_causal: bool = False,
    scale: float | None = None,
    gamma: float | None = None,
    zeta: float | None = None,
    implementation: str | None = None,
) -> jax.Array:
    """Attention N(scale * q k^T) v, output [B, T, H, D].

    ``normalizer``: softmax, softmax1, clipped or clipped_softmax1 (the clipped ones need
    ``gamma`` and ``zeta``). ``implementation``: "fused" (softmax and softmax1 only),
    "reference" (explicit weights), or None for fused where possible. The paths agree
    except on fully masked rows under plain softmax, where the reference gives 0.
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    _check(q, k, v, normalizer, implementation)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if implementation is None:
        implementation = "fused" if normalizer in FUSED_NORMALIZERS else "reference"
    if implementation == "fused":
        return _fused(q, k, v, normalizer, mask, is_causal, scale)
    w = attention_weights(
        q,
        k,
        normalizer=normalizer,
        mask=mask,
        is_causal=is_causal,
        scale=scale,
        gamma=gamma,
        zeta=zeta,
    )
    return jnp.einsum("bhts,bshd->bthd", w.astype(v.dtype), v)
