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

from outeffhop.ops import softmax as sm

FUSED_NORMALIZERS = ("softmax", "softmax1")
IMPLEMENTATIONS = ("fused", "reference")


def _check_qk(q, k, normalizer):
    sm.check_normalizer(normalizer)
    if q.ndim != 4 or k.ndim != 4:
        raise ValueError(f"q and k must be [B, L, H, D]; got shapes {q.shape} and {k.shape}.")
    if q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"q and k must share B, H and D; got shapes {q.shape} and {k.shape}.")


def _check_v(k, v):
    if v.shape != k.shape:
        raise ValueError(f"v must have k's shape [B, S, H, D] = {k.shape}; got {v.shape}.")


def _check_mask(mask, b, h, t, s):
    """Returns ``mask`` as a 4-d boolean array broadcastable to [B, H, T, S]."""
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_ or mask.ndim > 4:
        raise ValueError(
            f"mask must be boolean, broadcastable to [B, H, T, S] = {(b, h, t, s)}; "
            f"got {mask.dtype} of shape {mask.shape}."
        )
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    try:
        jnp.broadcast_shapes(mask.shape, (b, h, t, s))
    except ValueError:
        raise ValueError(
            f"mask must be broadcastable to [B, H, T, S] = {(b, h, t, s)}; got shape {mask.shape}."
        ) from None
    return mask


def combine_mask(mask, is_causal: bool, t: int, s: int):
    """Boolean mask [B|1, H|1, T|1, S] (True = attend) with the causal mask folded in, or None.

    Causal: query i sees keys j <= i (top-left aligned, as in jax).
    """
    if is_causal:
        causal = jnp.tril(jnp.ones((t, s), bool))[None, None]
        mask = causal if mask is None else jnp.logical_and(mask, causal)
    return mask


def attention_logits(q, k, *, scale=None) -> jax.Array:
    """Scores ``scale * q k^T`` [B, H, T, S] in at least float32 (the normalizer's input)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    acc = jnp.promote_types(q.dtype, jnp.float32)
    return jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=acc) * scale


def normalize_logits(
    logits, *, normalizer="softmax", mask=None, is_causal=False, gamma=None, zeta=None
) -> jax.Array:
    """Attention weights N(logits) over the last axis, masked keys excluded (True = attend).

    ``mask`` broadcasts to [B, H, T, S]; ``is_causal`` folds in the causal mask.
    """
    b, h, t, s = logits.shape
    if mask is not None:
        mask = _check_mask(mask, b, h, t, s)
    mask = combine_mask(mask, is_causal, t, s)
    return sm.normalize(logits, normalizer, axis=-1, where=mask, gamma=gamma, zeta=zeta)


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
    """Normalized scores N(scale * q k^T) of shape [B, H, T, S] (the reference path).

    Logits are computed in at least fp32; the weights come back in q's dtype.
    """
    q, k = jnp.asarray(q), jnp.asarray(k)
    _check_qk(q, k, normalizer)
    logits = attention_logits(q, k, scale=scale)
    w = normalize_logits(
        logits, normalizer=normalizer, mask=mask, is_causal=is_causal, gamma=gamma, zeta=zeta
    )
    return w.astype(q.dtype)


def _fused(q, k, v, normalizer, mask, is_causal, scale):
    if q.dtype == jnp.float16 and jax.default_backend() == "cpu":
        # jax's attention asks for F16_F16_F32 dots, which its CPU backward rejects.
        up = (a.astype(jnp.float32) for a in (q, k, v))
        return _fused(*up, normalizer, mask, is_causal, scale).astype(jnp.float16)
    b, t, h, d = q.shape
    s = k.shape[1]
    if normalizer == "softmax":
        out = jax.nn.dot_product_attention(q, k, v, scale=scale, mask=mask, is_causal=is_causal)
    else:
        zero = jnp.zeros((b, 1, h, d), k.dtype)
        k1, v1 = jnp.concatenate([zero, k], axis=1), jnp.concatenate([zero, v], axis=1)
        if mask is None:
            # Window (T, 1) around query i covers keys 0..i+1: the zero key and keys <= i.
            window = (t, 1) if is_causal else None
            return jax.nn.dot_product_attention(q, k1, v1, scale=scale, local_window_size=window)
        mask = combine_mask(mask, is_causal, t, s)
        mask = jnp.broadcast_to(mask, mask.shape[:-1] + (s,))
        ones = jnp.ones(mask.shape[:-1] + (1,), bool)
        mask1 = jnp.concatenate([ones, mask], axis=-1)
        return jax.nn.dot_product_attention(q, k1, v1, scale=scale, mask=mask1)
    if mask is None:
        return out
    # jax gives a fully masked row the mean of v; the reference (and softmax1) give 0.
    keep = jnp.any(combine_mask(mask, is_causal, t, s), axis=-1)  # [B|1, H|1, T|1]
    return out * jnp.swapaxes(keep, 1, 2)[..., None].astype(out.dtype)


def default_implementation(normalizer: str) -> str:
    """The faster path measured on this backend (benchmarks/bench_attention.py).

    On CPU, jax's XLA attention (grouped-head vmap) ran about 2x slower than the explicit
    einsum path for fwd+bwd at B=8 L=512 H=8 D=64, so CPU uses "reference". Elsewhere the
    fused path is the default: it is the one that reaches cuDNN / TPU kernels.
    """
    if normalizer not in FUSED_NORMALIZERS or jax.default_backend() == "cpu":
        return "reference"
    return "fused"


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
    "reference" (explicit weights), or None for ``default_implementation(normalizer)``.
    q, k and v are promoted to one dtype, which the output has. Both paths agree
    everywhere; a query with every key masked gets a zero output (and zero gradients).
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    _check_qk(q, k, normalizer)
    _check_v(k, v)
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of fused, reference or None; got {implementation!r}."
        )
    if implementation == "fused" and normalizer not in FUSED_NORMALIZERS:
        raise ValueError(
            f"implementation='fused' supports normalizer softmax or softmax1; got {normalizer!r}."
        )
    dtype = jnp.result_type(q, k, v)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.dtype(jnp.float32)
    q, k, v = q.astype(dtype), k.astype(dtype), v.astype(dtype)
    (b, t, h, _), s = q.shape, k.shape[1]
    if mask is not None:
        mask = _check_mask(mask, b, h, t, s)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if implementation is None:
        implementation = default_implementation(normalizer)
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
    return jnp.einsum("bhts,bshd->bthd", w, v)


# ---------------------------------------------------------------- a learned sink
# The sink normalizer (one learned logit s_h per head in place of Softmax_1's fixed 0).


def sink_normalize(logits, sink_H, *, mask=None, is_causal=False) -> jax.Array:
    """Sink attention weights from scores [B, H, T, S]: Softmax_1(logits - s_h), masked."""
    logits = logits - sink_H.astype(logits.dtype)[None, :, None, None]
    mask = combine_mask(mask, is_causal, *logits.shape[-2:])
    if mask is not None:
        mask = jnp.broadcast_to(mask, logits.shape)
    return sm.softmax_1(logits, axis=-1, where=mask)


def sink_weights(q, k, sink_H, *, mask=None, is_causal=False, scale=None) -> jax.Array:
    """Attention weights with a learned sink logit s_h per head, [B, H, T, S].

    w_ij = exp(l_ij) / (exp(s_h) + sum_j exp(l_ij)) with l = scale q k^T, i.e. softmax over
    the scores plus one extra key of logit s_h whose value is 0. Equals Softmax_1(l - s_h);
    s_h = 0 is Softmax_1 exactly. Scores in at least float32; weights in q's dtype.
    """
    logits = attention_logits(q, k, scale=scale)
    return sink_normalize(logits, sink_H, mask=mask, is_causal=is_causal).astype(q.dtype)


def sink_attention(q, k, v, sink_H, *, mask=None, is_causal=False, scale=None) -> jax.Array:
    """Fused sink attention [B, T, H, Dh]: a zero key/value at position 0 with bias s_h.

    Same value as ``sink_weights(...) @ v``; runs through ``jax.nn.dot_product_attention``.
    """
    b, t, h, d = q.shape
    s = k.shape[1]
    scale = d**-0.5 if scale is None else scale
    zero = jnp.zeros((b, 1, h, d), k.dtype)
    k1 = jnp.concatenate([zero, k], axis=1)
    v1 = jnp.concatenate([zero, v.astype(k.dtype)], axis=1)
    sink = jnp.broadcast_to(sink_H.astype(q.dtype)[None, :, None, None], (1, h, t, 1))
    bias = jnp.concatenate([sink, jnp.zeros((1, h, t, s), q.dtype)], axis=-1)
    if mask is None and not is_causal:
        return jax.nn.dot_product_attention(q, k1, v1, bias=bias, scale=scale)
    if mask is None:
        mask = jnp.ones((1, 1, t, s), bool)
    mask = combine_mask(mask, is_causal, t, s)
    mask = jnp.broadcast_to(mask, jnp.broadcast_shapes(mask.shape, (1, 1, t, s)))
    ones = jnp.ones(mask.shape[:-1] + (1,), bool)
    mask = jnp.concatenate([ones, mask], axis=-1)
    return jax.nn.dot_product_attention(q, k1, v1, bias=bias, mask=mask, scale=scale)
