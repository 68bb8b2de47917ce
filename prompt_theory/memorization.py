"""The measured side of memorization capacity: the smallest prompt that prompt tuning finds.

For N random pairs and a fixed random frozen model, ``memorize`` tunes prompts of many
lengths at once (padded, masked, vmapped) and ``sweep_point`` reports the smallest length that
reaches sup error eps: an upper estimate to set beside the lower bounds of
``prompt_theory.bounds``.

Every output coordinate. With all D coordinates scored the frozen model (width D = head
width, F_pre the identity, W_K and W_V square and invertible) has a structural limit that no
prompt length removes. A prompt token's value is tied to its key, v_p = k_p M with
M = W_K^{-1} W_V, so the prompt's share of a row's attention output is
    a_P(q) = sum_p w_p(q) v_p = (sum_p w_p(q) k_p) M = (1/s) grad_q log Z_P(q) M,
    Z_P(q) = sum_p exp(s q . k_p),
the gradient of a convex function of the row's query, hence monotone:
(g(q_i) - g(q_j)) . (q_i - q_j) >= 0 for g = a_P M^{-1}. The input tokens' share (weight
1 - lambda_l, lambda_l = Z_P / (Z_P + Z_X)) mixes in, so this binds exactly only where the
prompt dominates the softmax. ``needed_attention`` finds per row the attention output that
F_post needs (a free vector per row), ``monotone_violations`` counts the row pairs whose
needed g's violate monotonicity. Scoring only d_out < D coordinates leaves D - d_out free
directions per row, which is why the first-coordinate sweep succeeds.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prompt_theory import model
from prompt_theory.bounds import memorization_tokens


def masked_attention(valid: jax.Array):
    """An ``attention_fn`` for the model that ignores keys where ``valid`` [n] is False.

    With the first Lmax - L_p prompt tokens masked, tau([P, X])[Lmax:] equals the model run
    on the last L_p prompt tokens alone; so one padded shape serves every prompt length.
    """

    def fn(q, k, v, scale, causal):
        return model.exact_attention(q, k, v, scale, causal, mask=valid)

    return fn


def memorize(params, x, y, lengths, *, eps, steps, lr, restarts, check_every, key, scale):
    # y [N, L, d_out] is matched by the first d_out output coordinates
    """Tune prompts of every length in ``lengths`` at once (padded, masked, vmapped).

    Returns per length whether some restart reached max |tau([P, x])[L_p:] - y| < eps at a
    check, and the best such sup error. Adam on the mean squared error; only P moves.
    """
    lengths = jnp.asarray(lengths)
    lmax, d = int(lengths.max()), x.shape[-1]
    valid = jnp.arange(lmax + x.shape[1])[None] >= lmax - lengths[:, None]  # [C, n]
    tx = optax.adam(lr)

    def loss_one(prompt, ok):
        fn = masked_attention(ok)
        out = model.prompted(params, prompt, x, scale=scale, attention_fn=fn)
        return jnp.mean((out[..., : y.shape[-1]] - y) ** 2)

    def sup_one(prompt, ok):
        out = model.prompted(params, prompt, x, scale=scale, attention_fn=masked_attention(ok))
        return jnp.abs(out[..., : y.shape[-1]] - y).max()

    def total(prompts):  # [C, R, lmax, d]
        per = jax.vmap(lambda p, ok: jax.vmap(lambda q: loss_one(q, ok))(p))(prompts, valid)
        return per.sum()

    @jax.jit
    def chunk(prompts, opt):
        def body(carry, _):
            p, o = carry
            g = jax.grad(total)(p)
            upd, o = tx.update(g, o, p)
            return (optax.apply_updates(p, upd), o), None

        (prompts, opt), _ = jax.lax.scan(body, (prompts, opt), None, length=check_every)
        sup = jax.vmap(lambda p, ok: jax.vmap(lambda q: sup_one(q, ok))(p))(prompts, valid)
        return prompts, opt, sup.min(1)

    prompts = jax.random.uniform(key, (len(lengths), restarts, lmax, d), minval=-0.5, maxval=0.5)
    opt = tx.init(prompts)
    best = np.full(len(lengths), np.inf)
    for _ in range(max(1, steps // check_every)):
        prompts, opt, sup = chunk(prompts, opt)
        best = np.minimum(best, np.asarray(sup))
        if np.all(best < eps):
            break
    return best < eps, best


def problem(N, L, d, cfg, key):
    """(params, x [N, L, d], y [N, L, d_out], tuning key): a fresh frozen model and random pairs."""
    kp, kx, ky, kt = jax.random.split(key, 4)
    params = model.init_params(kp, d, d_ff=cfg.ffn_mult * d, ffn_layers=cfg.ffn_layers)
    x = jax.random.uniform(kx, (N, L, d))
    y = jax.random.uniform(ky, (N, L, cfg.d_out), maxval=cfg.value_range)
    return params, x, y, kt


def sweep_point(N, L, d, cfg, key) -> dict:
    """Smallest prompt length (among cfg.lengths) that memorises N random pairs to cfg.eps."""
    params, x, y, kt = problem(N, L, d, cfg, key)
    ok, best = memorize(
        params,
        x,
        y,
        cfg.lengths,
        eps=cfg.eps,
        steps=cfg.steps,
        lr=cfg.learning_rate,
        restarts=cfg.restarts,
        check_every=cfg.check_every,
        key=kt,
        scale=cfg.scale,
    )
    hit = [n for n, o in zip(cfg.lengths, ok, strict=True) if o]
    levels = math.floor(cfg.value_range / (2 * cfg.eps)) + 1
    return {
        "N": N,
        "L": L,
        "d": d,
        "d_out": cfg.d_out,
        "min_prompt_len": min(hit) if hit else None,  # None: not reached within the budget
        "best_sup_err": dict(zip(map(str, cfg.lengths), map(float, best), strict=True)),
        "bound_float32": memorization_tokens(N, L, cfg.d_out, cfg.eps, 32 * d, cfg.value_range),
        "bound_dof": memorization_tokens(
            N, L, cfg.d_out, cfg.eps, d * math.log2(levels), cfg.value_range
        ),
    }


def needed_attention(params, x, y, *, steps: int = 3000, lr: float = 0.05):
    """(a [N, L, d_v], sup error): per row the attention output F_post needs, by Adam on a free
    vector per row: min_a |F_post(x + a W_O) - y|^2 (F_pre the identity; y scores all D)."""
    wo, tx = params["attn"]["wo"], optax.adam(lr)

    def out(a):
        h = x + a @ wo
        return h + model.mlp(params["ffn"], h) if params.get("ffn") else h

    def body(carry, _):
        a, st = carry
        g = jax.grad(lambda a: jnp.mean((out(a) - y) ** 2))(a)
        upd, st = tx.update(g, st)
        return (optax.apply_updates(a, upd), st), None

    a0 = jnp.zeros(x.shape[:-1] + (wo.shape[0],), x.dtype)
    (a, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))((a0, tx.init(a0)))
    return a, float(jnp.abs(out(a) - y).max())


def monotone_violations(params, x, a) -> tuple[int, int]:
    """(violating pairs, pairs): rows i < j with (g_i - g_j) . (q_i - q_j) < 0, where
    g = a M^{-1}, M = W_K^{-1} W_V, q = x W_Q (the monotone-gradient test, module docstring)."""
    at = params["attn"]
    m = jnp.linalg.solve(at["wk"], at["wv"])
    g = np.asarray(a.reshape(-1, a.shape[-1]) @ jnp.linalg.inv(m))
    q = np.asarray(x.reshape(-1, x.shape[-1]) @ at["wq"])
    dots = np.einsum("ijd,ijd->ij", g[:, None] - g[None], q[:, None] - q[None])
    iu = np.triu_indices(len(q), 1)
    return int((dots[iu] < 0).sum()), len(iu[0])


def _over_seeds(points: list[dict]) -> dict:
    """Median over seeds (fresh model and data each) of the minimal length; None = not reached."""
    per = [p["min_prompt_len"] for p in points]
    med = float(np.median([math.inf if m is None else m for m in per]))
    return {**points[0], "min_prompt_len": None if math.isinf(med) else med, "per_seed": per}
