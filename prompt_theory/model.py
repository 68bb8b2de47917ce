"""The frozen 1-layer, 1-head transformer tau run on a prompted input [P, X].

  tau(Z)  = F_post(A(F_pre(Z)))                      Z = [P, X] of shape [..., n, D], n = L_p + L
  F(Z)    = Z + MLP(Z)                               (identity when the MLP has no layers)
  MLP(Z)  = W_k relu(... relu(Z W_1 + b_1) ...) + b_k (ReLU between layers, none after the last)
  A(Z)    = Z + softmax(s * (Z W_Q)(Z W_K)^T) (Z W_V) W_O    (one head, optional causal mask)

The score scale ``s`` is 1/d (Alman and Song), 1/sqrt(d) or 1, with d the head width.
The prompted output is ``tau([P, X])[L_p:]``: the last L positions. One layer means those rows
need only their own queries: ``prompted_rows`` computes them alone, exact attention in
O(L n d) instead of O(n^2 d) (``exact_rows``), or through a rows hook such as poly attention.
Params are a plain dict pytree; prompt tuning differentiates with respect to P only.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

SCALES = ("1/d", "1/sqrt(d)", "1")

# attention_fn(q, k, v, scale, causal) -> [..., n, d_v]
AttentionFn = Callable[..., jax.Array]


def score_scale(scale: str | float, d: int) -> float:
    """The numeric score scale for a name in SCALES, or a positive float as is."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)} or a float; got {scale!r}.")
        return {"1/d": 1.0 / d, "1/sqrt(d)": d**-0.5, "1": 1.0}[scale]
    if not scale > 0:
        raise ValueError(f"scale must be positive; got {scale}.")
    return float(scale)


def exact_attention(q, k, v, scale: float, causal: bool = False, mask=None) -> jax.Array:
    """softmax(scale * q k^T) v for q, k [..., n, d], v [..., n, d_v]; forms the n x n matrix.

    ``mask`` (bool, broadcastable to [..., n, m], True = attend) leaves keys out.
    """
    logits = jnp.einsum("...id,...jd->...ij", q, k) * scale
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
    if causal:
        n, m = logits.shape[-2:]
        logits = jnp.where(jnp.tril(jnp.ones((n, m), bool)), logits, -jnp.inf)
    return jax.nn.softmax(logits, axis=-1) @ v


def exact_rows(q, k, v, scale: float, causal: bool = False) -> jax.Array:
    """softmax(scale q k^T) v for the last L = q.shape[-2] of the n = k.shape[-2] positions.

    O(L n d); causal: query j (position n - L + j) attends to keys <= n - L + j.
    """
    n_rows, n = q.shape[-2], k.shape[-2]
    mask = None
    if causal:
        mask = jnp.arange(n)[None, :] <= (n - n_rows + jnp.arange(n_rows))[:, None]
    return exact_attention(q, k, v, scale, mask=mask)


def mlp(layers: list[dict], z: jax.Array) -> jax.Array:
    """W_k relu(... relu(z W_1 + b_1) ...) + b_k; ``layers`` is a list of {"w", "b"}."""
    for i, layer in enumerate(layers):
        z = z @ layer["w"] + layer["b"]
        if i < len(layers) - 1:
            z = jax.nn.relu(z)
    return z


def attention_block(
    attn: dict, z: jax.Array, *, scale="1/sqrt(d)", causal=False, attention_fn=None
) -> jax.Array:
    """Z + Attn(Z) with one head; ``attn`` holds wq, wk [D, d], wv [D, d_v], wo [d_v, D]."""
    q, k, v = z @ attn["wq"], z @ attn["wk"], z @ attn["wv"]
    s = score_scale(scale, q.shape[-1])
    fn = exact_attention if attention_fn is None else attention_fn
    return z + fn(q, k, v, s, causal) @ attn["wo"]


def transformer(params: dict, z: jax.Array, *, scale="1/sqrt(d)", causal=False, attention_fn=None):
    """tau(Z) = F_post(A(F_pre(Z))) on Z of shape [..., n, D]."""
    pre = params.get("ffn_pre", [])
    if pre:
        z = z + mlp(pre, z)
    z = attention_block(params["attn"], z, scale=scale, causal=causal, attention_fn=attention_fn)
    post = params.get("ffn", [])
    if post:
        z = z + mlp(post, z)
    return z


def prepend_prompt(prompt: jax.Array, x: jax.Array) -> jax.Array:
    """[P, X]: prompt [L_p, D] (shared) before x [..., L, D]."""
    if prompt.ndim != 2 or prompt.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"prompt must be [L_p, D] with D = x.shape[-1] = {x.shape[-1]}; got {prompt.shape}."
        )
    p = jnp.broadcast_to(prompt.astype(x.dtype), x.shape[:-2] + prompt.shape)
    return jnp.concatenate([p, x], axis=-2)


def prompted(params, prompt, x, *, scale="1/sqrt(d)", causal=False, attention_fn=None):
    """tau([P, X])[L_p:]: the frozen transformer's output on the input positions, [..., L, D]."""
    z = transformer(
        params, prepend_prompt(prompt, x), scale=scale, causal=causal, attention_fn=attention_fn
    )
    return z[..., prompt.shape[0] :, :]


def prompted_rows(params, prompt, x, *, scale="1/sqrt(d)", causal=False, rows_fn=None):
    """tau([P, X])[L_p:] computing only the L output rows (equal to ``prompted``).

    rows_fn(q [..., L, d], k [..., n, d], v, scale, causal) -> [..., L, d_v] attends from the
    last L positions; None is ``exact_rows``. F_pre still runs on all n tokens (keys, values).
    """
    z = prepend_prompt(prompt, x)
    pre = params.get("ffn_pre", [])
    if pre:
        z = z + mlp(pre, z)
    a, zl = params["attn"], z[..., prompt.shape[0] :, :]
    q, k, v = zl @ a["wq"], z @ a["wk"], z @ a["wv"]
    fn = exact_rows if rows_fn is None else rows_fn
    out = zl + fn(q, k, v, score_scale(scale, q.shape[-1]), causal) @ a["wo"]
    post = params.get("ffn", [])
    return out + mlp(post, out) if post else out


def _dense(key, d_in, d_out, std):
    return {"w": std * jax.random.normal(key, (d_in, d_out)), "b": jnp.zeros((d_out,))}


def init_params(
    key: jax.Array,
    d_model: int,
    *,
    d_head: int | None = None,
    d_ff: int = 64,
    ffn_layers: int = 2,
    pre_ffn_layers: int = 0,
) -> dict:
    """Random frozen weights: N(0, 1/fan_in) matrices, zero biases."""
    for name, val in (("d_model", d_model), ("d_ff", d_ff)):
        if val <= 0:
            raise ValueError(f"{name} must be positive; got {val}.")
    d_head = d_model if d_head is None else d_head
    kq, kk, kv, ko, kf, kp = jax.random.split(key, 6)
    attn = {
        "wq": jax.random.normal(kq, (d_model, d_head)) / d_model**0.5,
        "wk": jax.random.normal(kk, (d_model, d_head)) / d_model**0.5,
        "wv": jax.random.normal(kv, (d_model, d_head)) / d_model**0.5,
        "wo": jax.random.normal(ko, (d_head, d_model)) / d_head**0.5,
    }

    def stack(key, n):
        dims = [d_model] + [d_ff] * (n - 1) + [d_model]
        keys = jax.random.split(key, max(n, 1))
        return [_dense(keys[i], dims[i], dims[i + 1], dims[i] ** -0.5) for i in range(n)]

    return {"attn": attn, "ffn": stack(kf, ffn_layers), "ffn_pre": stack(kp, pre_ffn_layers)}
