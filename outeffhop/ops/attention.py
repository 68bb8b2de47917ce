"""Dot-product attention with a pluggable normalizer, fused kernels and a reference path.

Arrays follow ``jax.nn.dot_product_attention``: q [B, T, H, D], k and v [B, S, H, D];
``mask`` is boolean, broadcastable to [B, H, T, S] (True = attend). ``is_causal`` lets
query i see keys j <= i (top-left aligned, as in jax).

Softmax_1 attention equals softmax attention with one extra key whose logit is 0 and
whose value is 0. The fused paths use that: they prepend a zero key and value at position
0 and hand the rest to ``jax.nn.dot_product_attention`` with ``implementation="cudnn"``
(cuDNN flash attention: GPU, fp16/bf16) or ``"xla"``. Causal without a mask prepends a
dummy query too, so the kernel's own (square, top-left) causal mask lets real query i see
the zero key and keys <= i; with a mask the causal part is folded into it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from outeffhop.ops import softmax as sm

FUSED_NORMALIZERS = ("softmax", "softmax1")
KERNELS = ("cudnn", "xla")  # jax.nn.dot_product_attention(implementation=...)
IMPLEMENTATIONS = ("fused", *KERNELS, "reference")  # fused = cuDNN where it can, else XLA


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


def _zero_key(k, v, n=1):
    """k and v with ``n`` zero keys/values prepended along S."""
    zero = jnp.zeros((k.shape[0], n, *k.shape[2:]), k.dtype)
    return jnp.concatenate([zero, k], axis=1), jnp.concatenate([zero, v], axis=1)


def softmax1_inputs(q, k, v, mask, is_causal, even=False):
    """(q1, k1, v1, mask1, is_causal1, first): softmax attention of these, rows ``first:``,
    is Softmax_1 attention of the inputs (the zero-key trick; module docstring).

    ``even`` pads S (and, with a mask, T) to even lengths with masked keys / extra queries:
    cuDNN's bias (mask) path needs even lengths in training.
    """
    b, t, h, d = q.shape
    s = k.shape[1]
    if mask is None and not is_causal:
        return (q, *_zero_key(k, v), None, False, 0)
    if mask is None:  # dummy query 0 + zero key 0: the square causal mask is the right one
        q1 = jnp.concatenate([jnp.zeros((b, 1, h, d), q.dtype), q], axis=1)
        return (q1, *_zero_key(k, v), None, True, 1)
    mask = combine_mask(mask, is_causal, t, s)
    mask = jnp.broadcast_to(mask, mask.shape[:-1] + (s,))
    pad_s = int(even and (s + 1) % 2)
    k1, v1 = _zero_key(k, v)
    if pad_s:  # a masked key at the end
        k1, v1 = (jnp.concatenate([a, jnp.zeros((b, 1, h, d), a.dtype)], axis=1) for a in (k1, v1))
    ones = jnp.ones(mask.shape[:-1] + (1,), bool)
    mask1 = jnp.concatenate([ones, mask, jnp.zeros(mask.shape[:-1] + (pad_s,), bool)], axis=-1)
    if even and t % 2:  # an extra query whose output is dropped
        q = jnp.concatenate([q, jnp.zeros((b, 1, h, d), q.dtype)], axis=1)
        if mask1.shape[2] != 1:
            mask1 = jnp.concatenate([mask1, mask1[:, :, -1:]], axis=2)
    return q, k1, v1, mask1, False, 0


def cudnn_unsupported(dtype, head_dim: int, t: int, s: int, has_mask: bool, backend=None):
    """Why cuDNN flash attention cannot take these inputs, or None when it can.

    Mirrors jax's checks (jax._src.cudnn.fused_attention_stablehlo): a GPU, fp16/bf16,
    head dim a multiple of 8 and <= 128 (256 from compute capability 9.0), and even T and
    S when a mask (a bias to cuDNN) takes part in training. ``t``, ``s`` are the lengths
    the kernel sees (after ``softmax1_inputs``).
    """
    backend = jax.default_backend() if backend is None else backend
    if backend != "gpu":
        return f"backend is {backend}, cuDNN needs gpu"
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16)):
        return f"dtype {jnp.dtype(dtype).name}, cuDNN needs float16 or bfloat16"
    cc = getattr(jax.devices()[0], "compute_capability", "0")
    h_max = 256 if float(cc) >= 9.0 else 128
    if head_dim % 8 or head_dim > h_max:
        return f"head dim {head_dim}, cuDNN needs a multiple of 8 <= {h_max}"
    if has_mask and (t % 2 or s % 2):
        return f"lengths T={t} S={s} with a mask, cuDNN needs even lengths"
    return None


def fused_kernel(dtype, head_dim, t, s, has_mask, normalizer="softmax", backend=None):
    """("cudnn" | "xla", reason): the kernel the fused path runs for these inputs."""
    if normalizer == "softmax1" and has_mask:
        t, s = t + t % 2, s + 1 + (s + 1) % 2  # softmax1_inputs(even=True)
    elif normalizer == "softmax1":
        t, s = t + 1, s + 1
    why = cudnn_unsupported(dtype, head_dim, t, s, has_mask, backend)
    if why is None:
        return "cudnn", "cuDNN flash attention"
    return "xla", f"XLA attention ({why})"


def _fused(q, k, v, normalizer, mask, is_causal, scale, kernel):
    if q.dtype == jnp.float16 and jax.default_backend() == "cpu":
        # jax's attention asks for F16_F16_F32 dots, which its CPU backward rejects.
        up = (a.astype(jnp.float32) for a in (q, k, v))
        return _fused(*up, normalizer, mask, is_causal, scale, kernel).astype(jnp.float16)
    b, t, h, d = q.shape
    s = k.shape[1]
    sdpa = functools.partial(jax.nn.dot_product_attention, scale=scale, implementation=kernel)
    if normalizer == "softmax1":
        q1, k1, v1, mask1, causal1, first = softmax1_inputs(
            q, k, v, mask, is_causal, even=kernel == "cudnn"
        )
        return sdpa(q1, k1, v1, mask=mask1, is_causal=causal1)[:, first : first + t]
    out = sdpa(q, k, v, mask=mask, is_causal=is_causal)
    if mask is None:
        return out
    # jax gives a fully masked row the mean of v; the reference (and softmax1) give 0.
    keep = jnp.any(combine_mask(mask, is_causal, t, s), axis=-1)  # [B|1, H|1, T|1]
    return out * jnp.swapaxes(keep, 1, 2)[..., None].astype(out.dtype)


def default_implementation(normalizer: str) -> str:
    """The faster path measured on this backend (benchmarks/bench_attention.py).

    On CPU, jax's XLA attention (grouped-head vmap) ran about 2x slower than the explicit
    einsum path for fwd+bwd at B=8 L=512 H=8 D=64, so CPU uses "reference". Elsewhere the
    fused path is the default: cuDNN where ``fused_kernel`` allows it, XLA otherwise.
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
    ``gamma`` and ``zeta``). ``implementation``: "fused" (softmax and softmax1 only: the
    ``fused_kernel`` for the inputs), "cudnn" or "xla" (that ``jax.nn.dot_product_attention``
    implementation), "reference" (explicit weights), or None for
    ``default_implementation(normalizer)``.
    q, k and v are promoted to one dtype, which the output has. Both paths agree
    everywhere; a query with every key masked gets a zero output (and zero gradients).
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    _check_qk(q, k, normalizer)
    _check_v(k, v)
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise ValueError(
            "implementation must be one of fused, cudnn, xla, reference or None; "
            f"got {implementation!r}."
        )
    if implementation in ("fused", *KERNELS) and normalizer not in FUSED_NORMALIZERS:
        raise ValueError(
            f"implementation={implementation!r} supports normalizer softmax or softmax1; "
            f"got {normalizer!r}."
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
        implementation = fused_kernel(dtype, q.shape[-1], t, s, mask is not None, normalizer)[0]
    if implementation in KERNELS:
        return _fused(q, k, v, normalizer, mask, is_causal, scale, implementation)
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


def sink_attention(
    q, k, v, sink_H, *, mask=None, is_causal=False, scale=None, implementation="xla"
) -> jax.Array:
    """Fused sink attention [B, T, H, Dh]: a zero key/value at position 0 with bias s_h.

    Same value as ``sink_weights(...) @ v``; runs through ``jax.nn.dot_product_attention``
    with ``implementation`` (the learned sink is a bias that needs its gradient: XLA's path
    by default, cuDNN's bias gradient has layout limits this project does not test).
    """
    sdpa = functools.partial(jax.nn.dot_product_attention, implementation=implementation)
    b, t, h, d = q.shape
    s = k.shape[1]
    scale = d**-0.5 if scale is None else scale
    zero = jnp.zeros((b, 1, h, d), k.dtype)
    k1 = jnp.concatenate([zero, k], axis=1)
    v1 = jnp.concatenate([zero, v.astype(k.dtype)], axis=1)
    sink = jnp.broadcast_to(sink_H.astype(q.dtype)[None, :, None, None], (1, h, t, 1))
    bias = jnp.concatenate([sink, jnp.zeros((1, h, t, s), q.dtype)], axis=-1)
    if mask is None and not is_causal:
        return sdpa(q, k1, v1, bias=bias, scale=scale)
    if mask is None:
        mask = jnp.ones((1, 1, t, s), bool)
    mask = combine_mask(mask, is_causal, t, s)
    mask = jnp.broadcast_to(mask, jnp.broadcast_shapes(mask.shape, (1, 1, t, s)))
    ones = jnp.ones(mask.shape[:-1] + (1,), bool)
    mask = jnp.concatenate([ones, mask], axis=-1)
    return sdpa(q, k1, v1, bias=bias, mask=mask, scale=scale)
