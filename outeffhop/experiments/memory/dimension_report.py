"""Plots and report.md for the capacity-vs-dimension study (experiments/memory/dimension.py)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from outeffhop.experiments.memory.plots import _colors, _table, _write  # noqa: E402

NORMALIZERS = ("softmax", "softmax1")
LINE = {"softmax": "-", "softmax1": "--"}


def bound_summary(rows) -> dict:
    """Totals over every (d, M, beta, noise): bound violations and tightness per normalizer,
    and how often Softmax_1's one-step error is below softmax's."""
    out = {"queries": int(sum(r["queries"] for r in rows))}
    for n in NORMALIZERS:
        ratios = [r[f"bound_ratio_median_{n}"] for r in rows if r[f"bound_ratio_median_{n}"]]
        out[n] = dict(
            violations=int(sum(r[f"bound_violations_{n}"] for r in rows)),
            informative_share=float(
                np.average(
                    [r[f"bound_informative_{n}"] for r in rows],
                    weights=[r["queries"] for r in rows],
                )
            ),
            ratio_median=float(np.median(ratios)) if ratios else None,
        )
    ok = sum(r["num_ok"] for r in rows)
    smaller_ok = sum(r["softmax1_smaller_ok"] for r in rows)
    smaller = sum(r["softmax1_smaller"] for r in rows)
    out["softmax1_vs_softmax"] = dict(
        smaller=int(smaller),
        smaller_when_retrieved=int(smaller_ok),
        retrieved=int(ok),
        smaller_when_failed=int(smaller - smaller_ok),
        failed=int(out["queries"] - ok),
        condition_agrees_min=float(min(r["condition_agrees"] for r in rows)),
    )
    return out


def fit_slope(ds, log2s):
    """Least-squares slope of log2 M* against d (bits per dimension), None under 3 points."""
    pts = [(d, v) for d, v in zip(ds, log2s, strict=True) if v is not None]
    if len(pts) < 3:
        return None
    d, v = np.asarray(pts, float).T
    return float(np.polyfit(d, v, 1)[0])


def _curves(metrics):
    """{(beta, noise, normalizer, updates): rows sorted by d} of the capacity table."""
    out = {}
    for c in metrics["capacity"]:
        out.setdefault((c["beta"], c["noise"], c["normalizer"], c["updates"]), []).append(c)
    return {k: sorted(v, key=lambda c: c["dim"]) for k, v in out.items()}


def _log2(m):
    return None if m is None else float(np.log2(m))


def _plot_capacity(metrics, path):
    curves = _curves(metrics)
    panels = sorted({(k[1], k[3]) for k in curves})
    betas = sorted({k[0] for k in curves})
    color = _colors(betas)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (noise, upd) in zip(axes[0], panels, strict=True):
        for (b, a, n, u), cs in curves.items():
            if (a, u) != (noise, upd):
                continue
            d = [c["dim"] for c in cs]
            y = [_log2(c["capacity"]) if c["capacity"] else 0.0 for c in cs]
            ax.plot(d, y, LINE[n], color=color[b], marker="o", ms=3, label=f"{n} beta={b:g}")
            cens = [(di, yi) for di, yi, c in zip(d, y, cs, strict=True) if c["censored"]]
            if cens:
                ax.plot(*zip(*cens, strict=True), "^", color=color[b], ms=8, mfc="none")
            if n == "softmax":
                th = [c["theorem_log2"] for c in cs]
                ax.plot(d, th, ":", color=color[b], label=f"theorem bound beta={b:g}")
                sep = [_log2(c["separated_m"]) or 0.0 for c in cs]
                ax.plot(
                    d,
                    sep,
                    "-.",
                    color=color[b],
                    alpha=0.5,
                    label=f"M with {100 * (1 - metrics['config']['failure_prob']):.0f}% "
                    f"separated, beta={b:g}",
                )
        ax.set(
            xlabel="pattern size d", ylabel="log2 M*", title=f"noise {noise:g} R, {upd} update(s)"
        )
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle("5%-failure capacity vs d (triangles: no failure up to the largest M swept)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_scatter(samples, path, x_key, y_key, title, xlabel, ylabel, per_norm=True):
    fig, ax = plt.subplots(figsize=(5, 4.2))
    names = NORMALIZERS if per_norm else (None,)
    for n, col in zip(names, ("tab:blue", "tab:red"), strict=False):
        xs = np.concatenate([s[x_key.format(n=n)] for s in samples])
        ys = np.concatenate([s[y_key.format(n=n)] for s in samples])
        ax.scatter(
            np.maximum(xs, 1e-9),
            np.maximum(ys, 1e-9),
            s=3,
            alpha=0.4,
            color=col,
            label=n or "queries",
        )
    lim = [1e-9, 1e3]
    ax.plot(lim, lim, "k-", lw=0.8, label="y = x")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=xlabel,
        ylabel=ylabel,
        title=title,
        xlim=(1e-8, 1e2),
        ylim=(1e-8, 1e1),
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _capacity_lines(metrics):
    rows, slopes = [], []
    for (b, a, n, u), cs in _curves(metrics).items():
        d = [c["dim"] for c in cs]
        logs = [None if c["censored"] else _log2(c["capacity"]) for c in cs]
        slope = fit_slope(d, logs)
        th = fit_slope(d, [c["theorem_log2"] for c in cs])
        slopes.append([b, a, n, u, slope, th])
        for c in cs:
            m = c["capacity"]
            rows.append(
                [
                    b,
                    a,
                    n,
                    u,
                    c["dim"],
                    ("≥ " if c["censored"] else "") + str(m),
                    c["nearest_capacity"],
                    c["separated_m"],
                    c["theorem_log2"],
                    c["theorem_c"],
                    c["theorem_applies"],
                ]
            )
    return rows, slopes


def write(metrics, samples, workdir) -> None:
    """report.md plus capacity_vs_dim.png, bound_vs_error.png, softmax1_vs_softmax.png."""
    cfg, bc = metrics["config"], metrics["bound_check"]
    _plot_capacity(metrics, os.path.join(workdir, "capacity_vs_dim.png"))
    _plot_scatter(
        samples,
        os.path.join(workdir, "bound_vs_error.png"),
        "bound_{n}",
        "{n}",
        "one-step error vs its bound (units of R)",
        "bound / R",
        "||T(x) - xi|| / R",
    )
    for s in samples:
        s["softmax_err"], s["softmax1_err"] = s["softmax"], s["softmax1"]
    _plot_scatter(
        samples,
        os.path.join(workdir, "softmax1_vs_softmax.png"),
        "softmax_err",
        "softmax1_err",
        "one-step error, Softmax_1 vs softmax",
        "softmax / R",
        "Softmax_1 / R",
        per_norm=False,
    )
    rows, slopes = _capacity_lines(metrics)
    sv = bc["softmax1_vs_softmax"]
    lines = [
        f"Preset `{cfg['preset']}`: patterns uniform on the sphere of radius R = "
        f"{cfg['radius_scale']:g} sqrt(d - 1), {cfg['num_queries']} probed targets per (d, M), "
        f"M = 2 .. 2^{cfg['max_log2_patterns']}. A query fails when ||T(x) - xi|| > "
        f"{cfg['error_tol']:g} R; M* = largest M before the failure rate first exceeds "
        f"{cfg['error_threshold']:g}. Theorem bound: log2(sqrt(p) c^((d - 1)/4)), p = "
        f"{cfg['failure_prob']:g} (`applies` = its proviso c >= (2/sqrt p)^(4/(d-1))).",
        "",
        "![capacity](capacity_vs_dim.png)",
        "",
        "Fitted slope of log2 M* against d (bits per dimension; uncensored points only):",
        "",
        *_table(
            ["beta", "noise", "normalizer", "updates", "measured slope", "theorem slope"], slopes
        ),
        "",
        *_table(
            [
                "beta",
                "noise",
                "normalizer",
                "updates",
                "d",
                "M* (failure)",
                "M* (nearest memory)",
                "M separated",
                "theorem log2 N",
                "c",
                "applies",
            ],
            rows,
        ),
        "",
        "## Retrieval-error bound (one update)",
        "",
        f"Over {bc['queries']} queries: the bound 2 M (N - 1) exp(-beta (Delta - 2 M r)) "
        f"(+ ||xi|| exp(-beta (||xi||^2 - ||xi|| r)) for Softmax_1) was exceeded "
        f"{bc['softmax']['violations']} times (softmax) and {bc['softmax1']['violations']} "
        f"times (Softmax_1). It is informative (< R) for "
        f"{100 * bc['softmax']['informative_share']:.1f}% / "
        f"{100 * bc['softmax1']['informative_share']:.1f}% of the queries; there the median "
        f"error / bound is {_ratio(bc['softmax'])} / {_ratio(bc['softmax1'])}.",
        "",
        "![bound](bound_vs_error.png)",
        "",
        "## Softmax_1 against softmax, one update",
        "",
        f"T_1(x) = S/(1 + S) T(x): the Softmax_1 error is the larger one exactly when 2 T.xi >= "
        f"(1 + S/(1+S)) ||T||^2 (agreement of that test with the measured order: "
        f"{100 * sv['condition_agrees_min']:.1f}% in the worst cell). Softmax_1's error was "
        f"smaller for {sv['smaller_when_retrieved']} of the {sv['retrieved']} retrieved "
        f"queries (softmax error <= {cfg['error_tol']:g} R) and for {sv['smaller_when_failed']}"
        f" of the {sv['failed']} failed ones.",
        "",
        "![softmax1 vs softmax](softmax1_vs_softmax.png)",
    ]
    _write(workdir, "Capacity vs dimension: softmax vs Softmax_1", lines)


def _ratio(b):
    return "-" if b["ratio_median"] is None else f"{b['ratio_median']:.2g}"
