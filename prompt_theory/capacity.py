"""Memorization capacity of prompt tuning: the counting lower bound and a measured sweep.

Counting argument. A prompt of L_p tokens, each stored in b_tok bits (width D at b bits per
number: b_tok = D b), takes at most 2^{L_p b_tok} values, so the frozen model realises at
most that many functions. If a family of targets is pairwise >= 2 eps apart in sup norm, a
single function is within < eps of at most one of them, so eps-approximating every member
needs 2^{L_p b_tok} >= |family|, i.e. L_p >= log2|family| / b_tok.
 * Memorising N sequence pairs with outputs in [0, r]^{L x d_out}: outputs on the levels
   0, 2 eps, 4 eps, ... (m = floor(r / (2 eps)) + 1 of them) give m^{N L d_out} datasets:
   L_p >= N L d_out log2(m) / b_tok.
 * All C-Lipschitz f: [0,1]^{L x d} -> R^{L x d_out} (entrywise sup norms): bumps of height
   2 eps and radius 2 eps / C on a grid of n = floor(C / (4 eps)) points per coordinate
   (disjoint supports, each bump C-Lipschitz) with independent signs per output entry give
   2^{n^{dL} L d_out} targets pairwise 4 eps apart: L_p >= n^{dL} L d_out / b_tok. This is
   exponential in d L (for C > 4 eps) and grows as (1/eps)^{dL}; the explicit construction
   (prompt_theory.universality) uses L ceil(C / (2 eps))^{dL} tokens: the same exponent.
A real-valued prompt has unbounded bits; a finite b (float32: 32, or log2(m): numbers held to
the targets' precision, which gives the degrees-of-freedom count L_p D >= N L d_out) makes the
bound concrete. The sweep measures the smallest L_p that prompt tuning finds for N random
pairs with a fixed random frozen model: an upper estimate to set beside the lower bound.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prompt_theory import model


def _check(name, value, *, integer=False, low=0.0):
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and value > low
    if not ok or (not integer and not math.isfinite(value)):
        kind = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} > {low:g}; got {value!r}.")


def _ratio(numerator: int, bits: float) -> float:
    try:
        return numerator / bits
    except OverflowError:
        return math.inf


def memorization_tokens(n_pairs, L, d_out, eps, bits_per_token, value_range=1.0) -> float:
    """L_p >= N L d_out log2(floor(r / (2 eps)) + 1) / b_tok for N pairs, outputs in [0, r]."""
    for name, v in (("n_pairs", n_pairs), ("L", L), ("d_out", d_out)):
        _check(name, v, integer=True)
    for name, v in (("eps", eps), ("bits_per_token", bits_per_token), ("value_range", value_range)):
        _check(name, v)
    levels = math.floor(value_range / (2 * eps)) + 1
    return n_pairs * L * d_out * math.log2(levels) / bits_per_token


def lipschitz_tokens(d, L, eps, bits_per_token, *, d_out=None, lipschitz=1.0) -> float:
    """L_p >= floor(C / (4 eps))^{dL} L d_out / b_tok for all C-Lipschitz seq-to-seq maps."""
    d_out = d if d_out is None else d_out
    for name, v in (("d", d), ("L", L), ("d_out", d_out)):
        _check(name, v, integer=True)
    for name, v in (("eps", eps), ("bits_per_token", bits_per_token), ("lipschitz", lipschitz)):
        _check(name, v)
    n = math.floor(lipschitz / (4 * eps))
    return _ratio(n ** (d * L) * L * d_out, bits_per_token)


def construction_tokens(d, L, eps, *, lipschitz=1.0) -> int:
    """Tokens the explicit construction uses for error eps: L G^{dL}, G = ceil(C / (2 eps))."""
    for name, v in (("d", d), ("L", L)):
        _check(name, v, integer=True)
    for name, v in (("eps", eps), ("lipschitz", lipschitz)):
        _check(name, v)
    return L * max(1, math.ceil(lipschitz / (2 * eps))) ** (d * L)


def masked_attention(valid: jax.Array):
    """An ``attention_fn`` for the model that ignores keys where ``valid`` [n] is False.

    With the first Lmax - L_p prompt tokens masked, tau([P, X])[Lmax:] equals the model run
    on the last L_p prompt tokens alone; so one padded shape serves every prompt length.
    """

    def fn(q, k, v, scale, causal):
        logits = jnp.einsum("...id,...jd->...ij", q, k) * scale
        logits = jnp.where(valid, logits, -jnp.inf)
        if causal:
            n = logits.shape[-1]
            logits = jnp.where(jnp.tril(jnp.ones((n, n), bool)), logits, -jnp.inf)
        return jax.nn.softmax(logits, axis=-1) @ v

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


def run(config, workdir: str) -> dict:
    """The capacity sweep over N, L and d, plus the calculator table; metrics, report, plots."""
    os.makedirs(workdir, exist_ok=True)
    t0, rows, done = time.time(), [], {}
    key = jax.random.key(config.seed)
    points = [("N", (n, config.base_L, config.base_d)) for n in config.sweep_N]
    points += [("L", (config.base_N, l, config.base_d)) for l in config.sweep_L]
    points += [("d", (config.base_N, config.base_L, d)) for d in config.sweep_d]
    for axis, (N, L, d) in points:
        if (N, L, d) not in done:  # the base point is shared by the three sweeps
            k = jax.random.fold_in(key, 10_000 * N + 100 * L + d)
            seeds = [k] + [jax.random.fold_in(k, s) for s in range(1, config.get("seeds", 1))]
            done[N, L, d] = _over_seeds([sweep_point(N, L, d, config, ks) for ks in seeds])
        r = done[N, L, d]
        rows.append({"axis": axis, **r})
        print(
            f"[capacity] {axis}: N={N} L={L} d={d} min L_p={r['min_prompt_len']} "
            f"(dof bound {r['bound_dof']:.2f}; {time.time() - t0:.0f}s)",
            flush=True,
        )
    calc = [
        {
            "d": d,
            "L": L,
            "eps": e,
            "bits_per_token": b,
            "lower_bound": lipschitz_tokens(d, L, e, b),
            "construction": construction_tokens(d, L, e),
        }
        for d, L in ((1, 2), (2, 2), (2, 3))
        for e in config.calc_eps
        for b in (32, 32 * 64)
    ]
    metrics = {
        "sweep": rows,
        "calculator": calc,
        "seconds": time.time() - t0,
        "config": config.to_dict(),
    }
    with open(os.path.join(workdir, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1, default=str)
    _plot(rows, config, workdir)
    _report(metrics, config, workdir)
    return metrics


def _plot(rows, config, workdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_ = [a for a in ("N", "L", "d") if any(r["axis"] == a for r in rows)]
    fig, axs = plt.subplots(1, len(axes_), figsize=(4 * len(axes_), 3.3), squeeze=False)
    for ax, a in zip(axs[0], axes_, strict=True):
        sel = [r for r in rows if r["axis"] == a]
        xs = [r[a] for r in sel]
        ys = [r["min_prompt_len"] if r["min_prompt_len"] else np.nan for r in sel]
        ax.plot(xs, ys, "o-", label="measured (prompt tuning; median over seeds)")
        for x, r in zip(xs, sel, strict=True):
            pts = [m for m in r["per_seed"] if m is not None]
            ax.plot([x] * len(pts), pts, ".", color="gray", alpha=0.6)
        miss = [
            (x, max(config.lengths))
            for x, r in zip(xs, sel, strict=True)
            if r["min_prompt_len"] is None
        ]
        if miss:
            ax.plot(*zip(*miss, strict=True), "rv", label="not reached (> max tried)")
        ax.plot(xs, [r["bound_dof"] for r in sel], "k--", label="bound, log2(m) bits/number")
        ax.plot(xs, [r["bound_float32"] for r in sel], "k:", label="bound, 32 bits/number")
        ax.set_yscale("log")
        ax.set_xlabel(a)
        ax.set_title(f"eps={config.eps:g}, d_out={config.d_out}", fontsize=8)
    axs[0][0].set_ylabel("min prompt tokens")
    axs[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "capacity.png"), dpi=120)
    plt.close(fig)


def _report(metrics, config, workdir):
    lines = [
        "# Memorization capacity of prompt tuning",
        "",
        f"Fixed random frozen model (width d, head d, FFN {config.ffn_layers} layers); N pairs",
        f"X ~ U[0,1]^(L x d), Y ~ U[0,{config.value_range:g}]^(L x {config.d_out}) read from the"
        f" first output coordinates; success: max error < eps = {config.eps:g}. Adam, "
        f"{config.steps} steps, {config.restarts} restarts, {config.get('seeds', 1)} seeds (fresh "
        f"model and data each); lengths tried {list(config.lengths)}.",
        "",
        "| varied | N | L | d | min L_p (median) | per seed | bound (log2 m bits/number) |"
        " bound (float32) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    top = f"> {max(config.lengths)}"
    for r in metrics["sweep"]:
        m = f"{r['min_prompt_len']:g}" if r["min_prompt_len"] is not None else top
        seeds = ", ".join(str(v) if v is not None else top for v in r["per_seed"])
        lines.append(
            f"| {r['axis']} | {r['N']} | {r['L']} | {r['d']} | {m} | {seeds} | "
            f"{r['bound_dof']:.2f} | {r['bound_float32']:.3f} |"
        )
    lines += [
        "",
        "Lipschitz class (C = 1) lower bound vs the explicit construction's count:",
        "",
        "| d | L | eps | bits/token | lower bound | construction |",
        "|---|---|---|---|---|---|",
    ]
    for c in metrics["calculator"]:
        lines.append(
            f"| {c['d']} | {c['L']} | {c['eps']:g} | {c['bits_per_token']} | "
            f"{c['lower_bound']:.3g} | {c['construction']} |"
        )
    lines += ["", "![capacity](capacity.png)", ""]
    with open(os.path.join(workdir, "report.md"), "w") as fh:
        fh.write("\n".join(lines))
