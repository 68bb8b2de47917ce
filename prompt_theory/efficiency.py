"""The norm criterion of prompt-tuning inference and the choice of the cheapest attention path.

On Z = F_pre([P, X]) (n = L_p + L positions) the attention sees Q = Z W_Q, K = Z W_K.
  B_Q = max |Q_ij|,  B_K = max |K_ij|             (entrywise max-norms, as in Alman and Song)
  b   = scale * max_ij |q_i . k_j|                (the range of the exp argument; b <= s d B_Q B_K)
  b_out: the same over the L output queries (a 1-layer readout needs only those rows)
  B_eff = sqrt(scale * d) * max(B_Q, B_K)          (= B for the Alman-Song scale 1/d; b <= B_eff^2)
Regime. The theorem is asymptotic (B = o(sqrt(log n)) admits n^{1+o(1)} time at eps = 1/poly(n),
B = Omega(sqrt(log n)) no n^{2-Omega(1)} under SETH) and fixes no constant. The label here is
the finite-n version of it: "efficient" iff B_eff <= B_crit(n, d, eps) (prompt_theory.threshold):
the norms alone guarantee a degree reaching eps whose rank C(d+g, g) is below n. B_crit is
0.2-0.35 sqrt(ln n) at fixed eps and 0.12-0.30 sqrt(ln n) at eps = 1/n for n = 2^8..2^4096
(d = log2 n), so a fixed constant such as B_eff < sqrt(ln n) would call rank > n "efficient".
Paths. A 1-layer prompted model needs only the last L rows: exact attention of those rows
costs O(L n d), poly attention of those rows O((n + L) r d_v); ``attention_costs`` counts both,
and ``prompted_inference`` runs the cheaper one that meets eps.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from prompt_theory import model as pm
from prompt_theory.poly_attention import (
    attention_error_bound,
    poly_rank,
    poly_rows_fn,
    taylor_degree,
    taylor_rel_error,
)
from prompt_theory.threshold import b_crit


def _pre(params: dict, z: jax.Array) -> jax.Array:
    """F_pre(Z) = Z + MLP_pre(Z), per token (identity without pre-FFN layers)."""
    pre = params.get("ffn_pre", [])
    return z + pm.mlp(pre, z) if pre else z


def prompt_qkv(params: dict, prompt: jax.Array, x: jax.Array):
    """Q, K, V [..., n, d] of the attention on F_pre([P, X])."""
    z = _pre(params, pm.prepend_prompt(prompt, x))
    return tuple(z @ params["attn"][w] for w in ("wq", "wk", "wv"))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _qk_stats(params, prompt, x, s, exact_qk):
    q, k, _ = prompt_qkv(params, prompt, x)
    lp = prompt.shape[0]
    if exact_qk:
        logits = jnp.abs(jnp.einsum("...id,...jd->...ij", q, k))
        b, b_out = jnp.max(logits), jnp.max(logits[..., lp:, :])
    else:
        k_norm = jnp.max(jnp.linalg.norm(k, axis=-1))
        b = jnp.max(jnp.linalg.norm(q, axis=-1)) * k_norm
        b_out = jnp.max(jnp.linalg.norm(q[..., lp:, :], axis=-1)) * k_norm
    return {
        "B_Q": jnp.max(jnp.abs(q)),
        "B_K": jnp.max(jnp.abs(k)),
        "B_prompt": jnp.maximum(jnp.max(jnp.abs(q[..., :lp, :])), jnp.max(jnp.abs(k[..., :lp, :]))),
        "max_qk_scaled": s * b,
        "max_qk_scaled_out": s * b_out,
    }


def norm_criterion(
    params, prompt, x, *, scale="1/sqrt(d)", eps: float = 1e-3, exact_qk: bool | None = None
) -> dict:
    """The norm criterion on [P, X] as host floats.

    B_Q, B_K: max |.| of all queries / keys; B_prompt: of the prompt rows only;
    b = scale * max_ij |q_i . k_j| over all pairs (the paper's range of the exp argument);
    b_out: the same over the L output queries only (all a 1-layer readout depends on);
    ratio = B_eff / sqrt(ln n) (reported, no verdict); B_crit = threshold.b_crit(n, d, eps)
    and B_crit_ratio = B_crit / sqrt(ln n); regime "efficient" iff B_eff <= B_crit, else "hard";
    degree = taylor_degree(b_out, eps) and rank = C(d + degree, degree) (-1 and inf past
    MAX_DEGREE); poly_cheaper = rank < n. b and b_out are exact (n x n passes) when
    ``exact_qk``, else O(n d) Cauchy-Schwarz bounds scale * max ||q_i|| max ||k_j||;
    None picks exact for n <= 4096 (``b_is_exact`` says which).
    """
    q, k, _ = jax.eval_shape(prompt_qkv, params, prompt, x)
    n, d = q.shape[-2], q.shape[-1]
    s = pm.score_scale(scale, d)
    exact_qk = n <= 4096 if exact_qk is None else exact_qk
    stats = _qk_stats(params, prompt, x, s, bool(exact_qk))
    out = {key: float(val) for key, val in jax.device_get(stats).items()}
    b_eff = math.sqrt(s * d) * max(out["B_Q"], out["B_K"])
    sqrt_log_n = math.sqrt(math.log(n)) if n > 1 else 0.0
    crit = b_crit(n, d, eps)
    try:
        degree = taylor_degree(out["max_qk_scaled_out"], eps)
        rank = poly_rank(d, degree)
    except ValueError:
        degree, rank = -1, math.inf
    out.update(
        b_is_exact=bool(exact_qk),
        n=n,
        d=d,
        scale=s,
        B_eff=b_eff,
        sqrt_log_n=sqrt_log_n,
        ratio=b_eff / sqrt_log_n if n > 1 else math.inf,
        B_crit=crit,
        B_crit_ratio=crit / sqrt_log_n if n > 1 else 0.0,
        regime="efficient" if b_eff <= crit else "hard",
        eps=eps,
        degree=degree,
        rank=rank,
        poly_cheaper=bool(rank < n),
    )
    return out


def attention_costs(n: int, rows: int, d: int, d_v: int, degree: int | None) -> dict:
    """Multiply-adds of each attention path (estimates; the experiments time them).

    exact_full = n^2 (d + d_v) (all n rows); exact_rows = L n (d + d_v) (the last L rows);
    poly_full = 2 n r (d_v + 3) and poly_rows = (n + L) r (d_v + 3), r = C(d + g, g): each
    position's features cost ~2r, its outer product or readout r (d_v + 1). None: no poly.
    """
    out = {"exact_full": n * n * (d + d_v), "exact_rows": rows * n * (d + d_v)}
    if degree is not None and degree >= 0:
        r = poly_rank(d, degree)
        out.update(poly_full=2 * n * r * (d_v + 3), poly_rows=(n + rows) * r * (d_v + 3))
    return out


def select_attention(crit: dict, *, rows: int, d_v: int, max_degree: int = 8):
    """(rows_fn or None for exact_rows, info): poly attention of the L output rows when the
    degree reaching eps on the readout's range b_out is at most max_degree and its cost is
    below exact attention of the same rows, else exact. The regime label is reported, not
    used: at finite n the measured range b_out, not the norm bound, sets the degree."""
    ok = 0 <= crit["degree"] <= max_degree
    costs = attention_costs(crit["n"], rows, crit["d"], d_v, crit["degree"] if ok else None)
    use_poly = ok and costs["poly_rows"] < costs["exact_rows"]
    rel = taylor_rel_error(crit["max_qk_scaled_out"], max(crit["degree"], 0))
    info = {
        "attention": "poly" if use_poly else "exact",
        "path": "poly_rows" if use_poly else "exact_rows",
        "costs": costs,
        "degree": crit["degree"] if use_poly else None,
        "kernel_rel_error": rel if use_poly else 0.0,
    }
    return (poly_rows_fn(crit["degree"]) if use_poly else None), info


def prompted_inference(
    params, prompt, x, *, scale="1/sqrt(d)", causal=False, eps=1e-3, max_degree=8
) -> tuple[jax.Array, dict]:
    """tau([P, X])[L_p:] through the cheaper of poly and exact attention of the L output rows.

    The info dict carries the criterion, the costs, the choice and the error estimate: the
    entrywise bound eps_g / (1 - eps_g) * range(V) on the attention output (0 for exact
    attention), with eps_g the exact relative Taylor error on [-b_out, b_out]; also the bound
    poly would give.
    """
    crit = norm_criterion(params, prompt, x, scale=scale, eps=eps)
    v = prompt_qkv(params, prompt, x)[2]
    fn, info = select_attention(crit, rows=x.shape[-2], d_v=v.shape[-1], max_degree=max_degree)
    v_range = float(jnp.max(jnp.max(v, -2) - jnp.min(v, -2)))
    g = max(crit["degree"], 0)
    info.update(
        criterion=crit,
        v_range=v_range,
        poly_error_bound=math.inf
        if crit["degree"] < 0
        else attention_error_bound(taylor_rel_error(crit["max_qk_scaled_out"], g), v_range),
        error_bound=attention_error_bound(info["kernel_rel_error"], v_range),
    )
    run = jax.jit(functools.partial(pm.prompted_rows, scale=scale, causal=causal, rows_fn=fn))
    return run(params, prompt, x), info


def prompt_norm(params, prompt) -> jax.Array:
    """max |.| over the queries and keys of the prompt rows alone (differentiable)."""
    z = _pre(params, prompt)
    return jnp.maximum(
        jnp.max(jnp.abs(z @ params["attn"]["wq"])), jnp.max(jnp.abs(z @ params["attn"]["wk"]))
    )


def norm_penalty(params, prompt, target: float) -> jax.Array:
    """relu(B_prompt - target)^2: weight it into the loss to keep the prompt's B under target."""
    return jax.nn.relu(prompt_norm(params, prompt) - target) ** 2


def project_prompt(params, prompt, target: float) -> jax.Array:
    """Rescale each prompt row so its query and key max-norms are <= target.

    Exact when F_pre is the identity (q, k linear in P); a pre-FFN makes the map nonlinear,
    so use norm_penalty there instead.
    """
    if params.get("ffn_pre"):
        raise ValueError("project_prompt needs params without ffn_pre; use norm_penalty instead.")
    if not target > 0:
        raise ValueError(f"target must be positive; got {target!r}.")
    q, k = prompt @ params["attn"]["wq"], prompt @ params["attn"]["wk"]
    row = jnp.maximum(jnp.max(jnp.abs(q), -1), jnp.max(jnp.abs(k), -1))
    return prompt * jnp.minimum(1.0, target / jnp.maximum(row, 1e-30))[:, None]
