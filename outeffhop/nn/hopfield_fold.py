"""One association step of ``Hopfield`` reassociated around batch-shared learned patterns.

The input LayerNorms' affines and the projections are linear, so one step can be computed
without passing the big [B, N, D] input through a projection. With x^ the two-pass
normalized input without affine, W' = diag(scale) W and c = bias_ln W + b (the LayerNorm
affine folded into the projection) and beta_h per head:

- lookup (HopfieldLayer: stored patterns and projections shared over the batch):
  scores_h = beta_h (R^ W'_q,h + c_q,h) K_h^T = R^ M_h + m_h with M_h = beta_h W'_q,h K_h^T,
  m_h = beta_h c_q,h K_h^T; out = sum_h A_h (V_h W_O,h) + b_O.
- pooling (HopfieldPooling: state patterns shared):
  scores_h = beta_h q_h (Y^ W'_k,h + c_k,h)^T = Q~_h Y^^T + m_h with Q~_h = beta_h q_h W'_k,h^T,
  A_h V_h = (A_h C^) W'_v,h + rowsum(A_h) c_v,h.

``lookup_cost`` / ``pooling_cost`` count multiply-adds of the plain and the folded order;
the layer folds where that is fewer. Values agree with the plain order up to rounding.
The fold reads the projections' params instead of calling them, so it is never taken while
Linen method interceptors or intermediate capture are active (``observed``): quantizer
sites and outlier statistics then see every Dense call, as in the plain order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax.linen import module as linen_module

from outeffhop.ops import matmul as products
from outeffhop.ops import softmax as sm


def observed() -> bool:
    """True inside ``nn.intercept_methods`` or ``capture_intermediates`` (Linen's own state:
    no public accessor exists), where every submodule call must really happen."""
    capture = linen_module._context.capture_stack
    return bool(linen_module._global_interceptor_stack) or bool(capture and capture[-1])


def normalized(x, eps: float):
    """(x - mean) / sqrt(mean((x - mean)^2) + eps) over the last axis (two-pass)."""
    acc = jnp.promote_types(x.dtype, jnp.float32)
    xf = x.astype(acc)
    centered = xf - jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
    return (centered * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def folded_input(x, norm: dict | None, eps: float, dense: dict):
    """(x^, W', c): the input a projection sees with its LayerNorm affine folded in.

    ``norm``: the LayerNorm's params ({} without affine; None: no LayerNorm); ``dense``:
    the projection's params (kernel [D, F], optional bias [F]).
    """
    w = dense["kernel"]
    c = dense.get("bias", jnp.zeros(w.shape[-1], w.dtype))
    if norm is None:
        return x, w, c
    x = normalized(x, eps)
    if "bias" in norm:
        c = c + norm["bias"].astype(w.dtype) @ w
    if "scale" in norm:
        w = norm["scale"].astype(w.dtype)[:, None] * w
    return x, w, c


def _beta_h(beta, h: int, dtype):
    return jnp.broadcast_to(jnp.asarray(beta, dtype).reshape(-1), (h,))


def lookup_cost(d_in: int, heads: int, hd: int, pd: int, keys: int, out: int):
    """Multiply-adds per state row: (plain, folded)."""
    plain = d_in * heads * hd + heads * keys * (hd + pd) + heads * pd * out
    return plain, d_in * heads * keys + heads * keys * out


def lookup_read(r, q_in, k_HSD, v_HSP, out_proj: dict, beta, normalizer: str, mask):
    """sum_h N(beta_h q_h K_h^T) V_h W_O,h + b_O for shared k [1, H, S, hd], v [1, H, S, pd].

    ``r`` [B, L, D]: the state patterns; ``q_in`` = (norm params, eps, q_proj params).
    ``mask`` broadcastable to [B, H, L, S] or None. Returns [B, L, out].
    """
    x, w, c = folded_input(r, *q_in)
    b, length, d = x.shape
    k, v = k_HSD[0], v_HSP[0]
    h, s, hd = k.shape
    beta = _beta_h(beta, h, k.dtype)
    m = jnp.einsum("dhk,hsk->dhs", w.reshape(d, h, hd), k) * beta[:, None]  # [D, H, S]
    bias = jnp.einsum("hk,hsk->hs", c.reshape(h, hd), k) * beta[:, None]
    wo = out_proj["kernel"]
    n = jnp.einsum("hsp,hpo->hso", v, wo.reshape(h, v.shape[-1], wo.shape[-1]))  # [H, S, out]
    scores = products.matmul(x.reshape(b * length, d), m.reshape(d, h * s)) + bias.reshape(-1)
    scores = scores.reshape(b * length, h, s)
    if mask is not None:
        mask = jnp.broadcast_to(mask, (b, h, length, s)).transpose(0, 2, 1, 3)
        mask = mask.reshape(b * length, h, s)
    if h == 1:  # one normalized axis, one product: the fused read
        mask = None if mask is None else mask[:, 0]
        out = products.normalize_read(scores[:, 0], n[0], normalizer, mask)
    else:
        a = sm.normalize(scores, normalizer, axis=-1, where=mask).astype(scores.dtype)
        out = products.matmul(a.reshape(b * length, h * s), n.reshape(h * s, -1))
    out = out + out_proj.get("bias", 0.0)
    return out.reshape(b, length, -1)


def pooling_cost(d_k: int, d_v: int, heads: int, hd: int, pd: int, queries: int, keys: int):
    """Multiply-adds per batch element: (plain, folded)."""
    plain = keys * heads * (d_k * hd + d_v * pd) + heads * queries * keys * (hd + pd)
    return plain, heads * queries * keys * (d_k + d_v + 1)


def pooling_ctx(q_HQD, stored, projection, k_in, v_in, beta, normalizer: str, mask):
    """[B, Q, H * pd] = concat_h N(beta_h q_h K_h^T) V_h for shared q [1, H, Q, hd].

    ``k_in`` / ``v_in`` = (norm params, eps, projection params) of the stored patterns
    [B, S, Dk] and the pattern projections [B, S, Dv]; ``mask`` broadcastable to
    [B, H, Q, S] or None.
    """
    y, wk, ck = folded_input(stored, *k_in)
    cv_in, wv, cv = folded_input(projection, *v_in)
    q = q_HQD[0]
    h, nq, hd = q.shape
    b, s, dk = y.shape
    beta = _beta_h(beta, h, q.dtype)[:, None, None]
    q_t = jnp.einsum("hqk,dhk->hqd", q, wk.reshape(dk, h, hd)) * beta  # [H, Q, Dk]
    bias = jnp.einsum("hqk,hk->hq", q, ck.reshape(h, hd)) * beta[..., 0]  # [H, Q]
    scores = products.matmul_t(q_t.reshape(1, h * nq, dk), y) + bias.reshape(-1, 1)
    if mask is not None:
        mask = jnp.broadcast_to(mask, (b, h, nq, s)).reshape(b, h * nq, s)
    ones = jnp.ones(cv_in.shape[:-1] + (1,), cv_in.dtype)  # its read is rowsum(A)
    read = products.normalize_read(scores, jnp.concatenate([cv_in, ones], -1), normalizer, mask)
    read = read.reshape(b, h, nq, -1)
    dv = cv_in.shape[-1]
    ctx = jnp.einsum("bhqe,ehp->bqhp", read[..., :dv], wv.reshape(dv, h, -1))
    ctx = ctx + jnp.swapaxes(read[..., dv:], 1, 2) * cv.reshape(h, -1)
    return ctx.reshape(b, nq, -1)
