"""The measured side of memorization capacity: the smallest prompt that prompt tuning finds.

For N random pairs and a fixed random frozen model, ``memorize`` tunes prompts of many
lengths at once (padded, masked, vmapped) and ``sweep_point`` reports the smallest length that
reaches sup error eps: an upper estimate to set beside the lower bounds of
``prompt_theory.bounds``.
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


def sweep_point(N, L, d, cfg, key) -> dict:
    """Smallest prompt length (among cfg.lengths) that memorises N random pairs to cfg.eps."""
    kp, kx, ky, kt = jax.random.split(key, 4)
    params = model.init_params(kp, d, d_ff=cfg.ffn_mult * d, ffn_layers=cfg.ffn_layers)
    x = jax.random.uniform(kx, (N, L, d))
    y = jax.random.uniform(ky, (N, L, cfg.d_out), maxval=cfg.value_range)
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


def _over_seeds(points: list[dict]) -> dict:
    """Median over seeds (fresh model and data each) of the minimal length; None = not reached."""
    per = [p["min_prompt_len"] for p in points]
    med = float(np.median([math.inf if m is None else m for m in per]))
    return {**points[0], "min_prompt_len": None if math.isinf(med) else med, "per_seed": per}
