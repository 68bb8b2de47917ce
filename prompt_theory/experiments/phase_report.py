"""Plots and report.md for the phase-transition experiment (experiments/phase_transition.py)."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _fmt(x, spec=".3g"):
    return "-" if x is None else format(x, spec)


def plot_error(err, n, path):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for g, rows in err["degrees"].items():
        (line,) = ax.plot(
            err["B"], rows["max_err"], "o-", label=f"measured, g={g} (r={rows['rank']})"
        )
        bound = [b if math.isfinite(b) else None for b in rows["bound"]]
        ax.plot(err["B"], bound, "--", color=line.get_color(), label=f"bound, g={g}")
    ax.axvline(math.sqrt(math.log(n)), color="k", lw=0.8, ls=":", label="sqrt(log n)")
    ax.set(xlabel="B (max-norm of Q, K)", ylabel="max |poly - exact|", yscale="log")
    ax.set_title(f"Poly attention error at fixed rank (n={n}, scale 1/d)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_degree(deg, d, n, path):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for eps, rows in deg["eps"].items():
        (line,) = a1.plot(deg["B"], rows["degree_formula"], "-", label=f"formula, eps={eps}")
        a1.plot(
            deg["B"],
            rows["degree_measured"],
            "o",
            color=line.get_color(),
            label=f"measured, eps={eps}",
        )
        a2.plot(deg["B"], rows["rank_formula"], "-", color=line.get_color(), label=f"eps={eps}")
    a2.axhline(n, color="k", lw=0.8, ls=":", label=f"n = {n}")
    a1.set(xlabel="B", ylabel="degree g", title="degree needed for error eps")
    a2.set(
        xlabel="B", ylabel=f"rank C(d+g, g), d={d}", yscale="log", title="rank needed (worst case)"
    )
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_crit(crit, path):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for kind, ps, style in (
        ("fixed_d", crit["log2_n_fixed"], "o-"),
        ("d_log2_n", crit["log2_n"], "s--"),
    ):
        for eps, vals in crit[kind].items():
            pts = [(p, v) for p, v in zip(ps, vals, strict=True) if v is not None and p <= 64]
            if pts:
                a1.plot(*zip(*pts, strict=True), style, label=f"{kind}, eps={eps}")
    ps = [p for p in crit["log2_n"] if p <= 64]
    a1.plot(ps, [math.sqrt(p * math.log(2)) for p in ps], "k:", label="sqrt(ln n)")
    a1.set(xlabel="log2 n", ylabel="B_crit", title="largest B with worst-case poly rank < n")
    for eps, vals in crit["d_log2_n"].items():
        ratio = [v / math.sqrt(p * math.log(2)) for p, v in zip(crit["log2_n"], vals, strict=True)]
        (line,) = a2.plot(crit["log2_n"], ratio, "s-", label=f"eps={eps}")
        a2.axhline(crit["limit_ratio"][eps], color=line.get_color(), ls=":", lw=1)
    a2.set(
        xscale="log",
        xlabel="log2 n (d = log2 n)",
        ylabel="B_crit / sqrt(ln n)",
        title="ratio and its n -> inf limit (dotted)",
    )
    a1.legend(fontsize=6)
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def crit_lines(crit) -> list[str]:
    """The B_crit table and one sentence per eps saying what the ratio does over n."""
    ps, fixed, eps = crit["log2_n"], crit["log2_n_fixed"], list(crit["d_log2_n"])
    lines = [
        "Largest B whose worst-case rank stays below n (B_crit), at the fixed d and at",
        "d = log2 n (the theorem's d = O(log n)); ratio = B_crit / sqrt(ln n). eps = 1/n^k is",
        "the theorem's eps = 1/poly(n); a number is a fixed eps.",
        "",
        "| log2 n | sqrt(ln n) | "
        + " | ".join(f"{k} eps={e} (ratio)" for k in ("fixed_d", "d_log2_n") for e in eps)
        + " |",
        "|---|---|" + "---|" * (2 * len(eps)),
    ]
    for p in sorted(set(ps) | set(fixed)):
        root = math.sqrt(p * math.log(2))
        cells = []
        for kind, where in (("fixed_d", fixed), ("d_log2_n", ps)):
            for e in eps:
                v = crit[kind][e][where.index(p)] if p in where else None
                cells.append("-" if v is None else f"{v:.3g} ({v / root:.3f})")
        lines.append(f"| {p} | {root:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "What the ratio does at d = log2 n (first n, n = 2^64, last n; limit):", ""]
    for e in eps:
        r = [v / math.sqrt(p * math.log(2)) for p, v in zip(ps, crit["d_log2_n"][e], strict=True)]
        mid = r[ps.index(64)] if 64 in ps else None
        head = r[: ps.index(64) + 1] if 64 in ps else r
        lim = crit["limit_ratio"][e]
        lines.append(
            f"- eps = {e}: {r[0]:.3f} (2^{ps[0]}) -> {_fmt(mid, '.3f')} (2^64) -> {r[-1]:.3f} "
            f"(2^{ps[-1]}); limit {lim:.3f} ({abs(r[-1] / lim - 1):.1%} off at 2^{ps[-1]}). "
            f"Spread over 2^{ps[0]}..2^64: {max(head) / min(head):.2f}x."
        )
    return lines


def plot_time(tm, path):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for m, secs in tm["seconds"].items():
        pts = [(n, s) for n, s in zip(tm["n"], secs, strict=True) if s]
        if pts and m != "exact_best":
            slope = tm["slopes"][m]
            a1.plot(*zip(*pts, strict=True), "o-", label=f"{m} (slope {_fmt(slope, '.2f')})")
        mem = [
            (n, b)
            for n, b in zip(tm["n"], tm["temp_bytes"].get(m, [None] * len(tm["n"])), strict=True)
            if b
        ]
        if mem:
            a2.plot(
                *zip(*mem, strict=True),
                "o-",
                label=f"{m} (slope {_fmt(tm['memory_slopes'][m], '.2f')})",
            )
    a1.set(xscale="log", yscale="log", xlabel="n", ylabel="seconds", title="wall time (median)")
    a2.set(xscale="log", yscale="log", xlabel="n", ylabel="bytes", title="XLA temp memory")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(metrics, config, workdir):
    """PNGs plus report.md summarizing the three parts."""
    d, err, deg, tm = metrics["d"], metrics["error"], metrics["degree"], metrics["time"]
    plot_error(err, config.error.n, os.path.join(workdir, "error_vs_B.png"))
    plot_degree(deg, d, config.degree.n, os.path.join(workdir, "degree_rank_vs_B.png"))
    plot_crit(deg["B_crit"], os.path.join(workdir, "B_crit_vs_n.png"))
    plot_time(tm, os.path.join(workdir, "time_vs_n.png"))
    lines = [
        "# Phase transition of prompt-tuning inference: polynomial attention vs exact",
        "",
        f"Device: {metrics['device']}; d = {d}; score scale 1/d; "
        f"Q, K entries {config.inputs} (max-norm B).",
        f"Total {metrics['seconds']:.0f} s.",
        "",
        f"## Error at fixed rank (n = {config.error.n})",
        "",
        "| B | " + " | ".join(f"g={g} err / bound" for g in err["degrees"]) + " |",
        "|---|" + "---|" * len(err["degrees"]),
    ]
    for i, b in enumerate(err["B"]):
        cells = [
            f"{_fmt(r['max_err'][i], '.1e')} / {_fmt(r['bound'][i], '.1e')}"
            for r in err["degrees"].values()
        ]
        lines.append(f"| {b:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"sqrt(log n) = {math.sqrt(math.log(config.error.n)):.2f}. ![error](error_vs_B.png)",
        "",
        "## Degree and rank needed for error eps",
        "",
        f"Formula: worst case b = B^2; measured: random inputs at n = {config.degree.n}.",
        "",
        "| B | " + " | ".join(f"eps={e}: g formula / measured / rank" for e in deg["eps"]) + " |",
        "|---|" + "---|" * len(deg["eps"]),
    ]
    for i, b in enumerate(deg["B"]):
        cells = [
            f"{r['degree_formula'][i]} / {_fmt(r['degree_measured'][i], 'd')} / "
            f"{r['rank_formula'][i]}"
            for r in deg["eps"].values()
        ]
        lines.append(f"| {b:.2f} | " + " | ".join(cells) + " |")
    lines += ["", *crit_lines(deg["B_crit"])]
    lines += [
        "",
        "![degree](degree_rank_vs_B.png) ![crit](B_crit_vs_n.png)",
        "",
        f"## Wall time against n (B = {config.time.bound}, {config.time.get('stat', 'median')} of"
        f" {config.time.repeats})",
        "",
        "| n | " + " | ".join(tm["seconds"]) + " |",
        "|---|" + "---|" * len(tm["seconds"]),
    ]
    for i, n in enumerate(tm["n"]):
        cells = [_fmt(None if v[i] is None else v[i] * 1e3, ".3g") for v in tm["seconds"].values()]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Times in ms; exact_best is the best of the full (all n rows) exact methods at that n.",
        "",
        "| method | time slope | memory slope | crossover n (poly < exact_best) |",
        "|---|---|---|---|",
    ]
    for m, slope in tm["slopes"].items():
        cross = tm["crossover_n"].get(m, "")
        mem = _fmt(tm["memory_slopes"].get(m), ".2f")
        cross = _fmt(cross, "d") if m in tm["crossover_n"] else ""
        lines.append(f"| {m} | {_fmt(slope, '.2f')} | {mem} | {cross} |")
    lines += [
        "",
        "rows_*: only the last L rows (a 1-layer prompted model reads no others): exact costs",
        "O(L n d), poly O((n + L) r d). Speed-ups at the largest n (same run, same inputs):",
        "",
        "| ratio | value |",
        "|---|---|",
        *[f"| {k} | {v:.3g} |" for k, v in tm.get("speedup", {}).items()],
        "",
        "![time](time_vs_n.png)",
        "",
    ]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines))
