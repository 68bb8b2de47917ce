"""The memorization experiment: minimal prompt length vs N, L, d next to the bounds (a sweep).

Config: configs/prompt_memorization.py. Parts: the sweep scoring the first d_out output
coordinates; the same N sweep scoring every coordinate, with two diagnostics per point (can
F_post reach the targets from a free attention output per row; how many row pairs the needed
outputs leave non-monotone, prompt_theory.memorization); the bound calculator
(experiments/capacity_bounds.py). Writes metrics.json, report.md, capacity.png,
capacity_bounds.png.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from prompt_theory import memorization as mem
from prompt_theory.bounds import construction_tokens, lipschitz_tokens
from prompt_theory.experiments import capacity_bounds
from prompt_theory.memorization import _over_seeds, sweep_point


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
    all_rows = all_coordinates(config, key) if config.get("all_coordinates") else []
    bounds_calc = capacity_bounds.calculator(config) if config.get("calc_shapes") else None
    metrics = {
        "sweep": rows,
        "all_coordinates": all_rows,
        "bounds": bounds_calc,
        "calculator": calc,
        "seconds": time.time() - t0,
        "config": config.to_dict(),
    }
    with open(os.path.join(workdir, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1, default=str)
    _plot(rows, config, workdir)
    if bounds_calc:
        capacity_bounds.plot(bounds_calc, config, os.path.join(workdir, "capacity_bounds.png"))
    _report(metrics, config, workdir)
    return metrics


def all_coordinates(config, key) -> list[dict]:
    """The N sweep with every output coordinate scored (d_out = d), plus the diagnostics."""
    cfg = config.copy_and_resolve_references()
    d, L = config.base_d, config.base_L
    cfg.d_out, cfg.lengths, cfg.steps = d, config.all_lengths, config.all_steps
    out = []
    for N in config.all_sweep_N:
        for seed in range(config.get("all_seeds", 1)):
            k = jax.random.fold_in(jax.random.fold_in(key, 777_000 + N), seed)
            r = sweep_point(N, L, d, cfg, k)
            params, x, y, _ = mem.problem(N, L, d, cfg, k)
            a, reach = mem.needed_attention(params, x, y, steps=config.all_reach_steps)
            bad, pairs = mem.monotone_violations(params, x, a)
            r.update(seed=seed, reach_sup_err=reach, violations=bad, pairs=pairs)
            best = min(r["best_sup_err"].values())
            print(
                f"[capacity] all coordinates: N={N} seed {seed} min L_p={r['min_prompt_len']} "
                f"best sup err {best:.3f}; free-attention sup err {reach:.4f}; non-monotone "
                f"pairs {bad}/{pairs}",
                flush=True,
            )
            out.append(r)
    return out


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
    if metrics["all_coordinates"]:
        lines += _all_lines(metrics["all_coordinates"], config)
    if metrics["bounds"]:
        lines += ["", *capacity_bounds.report_lines(metrics["bounds"], config)]
    with open(os.path.join(workdir, "report.md"), "w") as fh:
        fh.write("\n".join(lines))


def _all_lines(rows, config) -> list[str]:
    lens = list(config.all_lengths)
    lines = [
        "## Every output coordinate scored",
        "",
        f"The same task with all d = {config.base_d} output coordinates scored (L = "
        f"{config.base_L}, eps = {config.eps:g}, {config.all_steps} Adam steps, "
        f"{config.restarts} restarts, lengths {lens}). free-attention: the sup error F_post reaches"
        " from a free attention output per row (is the target reachable at all); non-monotone:"
        " row pairs whose needed prompt-attention gradients g = a M^{-1} violate"
        " (g_i - g_j).(q_i - q_j) >= 0, which no prompt of any length can deliver where the"
        " prompt dominates the softmax (prompt_theory.memorization).",
        "",
        "| N | seed | min L_p | best sup err per length | free-attention sup err |"
        " non-monotone pairs | dof bound N L d_out / d |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["min_prompt_len"] if r["min_prompt_len"] is not None else f"> {max(lens)}"
        errs = ", ".join(f"{k}: {v:.3f}" for k, v in r["best_sup_err"].items())
        lines.append(
            f"| {r['N']} | {r['seed']} | {m} | {errs} | {r['reach_sup_err']:.4f} | "
            f"{r['violations']}/{r['pairs']} | {r['bound_dof']:.2f} |"
        )
    ok = [r for r in rows if r["min_prompt_len"] is not None]
    mono = [r for r in rows if r["violations"] == 0]
    lines += [
        "",
        f"Reached eps: {len(ok)}/{len(rows)} points; all pairs monotone: {len(mono)}/{len(rows)};"
        f" both: {len([r for r in ok if r['violations'] == 0])}.",
    ]
    return lines + [""]
