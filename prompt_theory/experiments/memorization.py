"""The memorization experiment: minimal prompt length vs N, L, d next to the bounds (a sweep).

Config: configs/prompt_memorization.py. Writes metrics.json, report.md and a plot.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from prompt_theory.bounds import construction_tokens, lipschitz_tokens
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
