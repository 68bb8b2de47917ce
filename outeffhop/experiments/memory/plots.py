"""Plots and report.md for the associative-memory studies (capacity, convergence, no-op)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

NORMALIZERS = ("softmax", "softmax1")
LINE = {"softmax": "-", "softmax1": "--"}
MARKER = {"softmax": "o", "softmax1": "x"}  # equal curves stay told apart


def _colors(values):
    cmap = plt.get_cmap("viridis")
    return {v: cmap(i / max(len(values) - 1, 1)) for i, v in enumerate(values)}


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]


def _write(workdir, title, lines):
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join([f"# {title}", ""] + lines) + "\n")
    return path


def capacity_report(metrics, workdir) -> None:
    cfg, res = metrics["config"], metrics["results"]
    betas = cfg["betas"]
    color = _colors(betas)
    steps_all = cfg["update_steps"]
    panels = [(k, c[0]) for k in cfg["pattern_sets"] for c in cfg["corruptions"]]
    for steps in steps_all:
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
        for ax, (kind, corr) in zip(axes[0], panels, strict=True):
            for n in NORMALIZERS:
                for b in betas:
                    rows = [
                        r for r in res
                        if (r["pattern_set"], r["corruption"], r["update_steps"],
                            r["normalizer"], r["beta"]) == (kind, corr, steps, n, b)
                    ]  # fmt: skip
                    ax.plot(
                        [r["num_patterns"] for r in rows], [r["error_rate"] for r in rows],
                        LINE[n], color=color[b], marker=MARKER[n], ms=4, clip_on=False,
                        label=f"{n} b={b:g}",
                    )  # fmt: skip
            ax.set(xscale="log", xlabel="stored patterns M", title=f"{kind}, {corr}")
            ax.set_ylim(0.0, 1.0)  # a rate (markers on the axes are drawn unclipped)
        axes[0][0].set_ylabel("error rate (nearest memory != target)")
        axes[0][-1].legend(fontsize=6, ncol=2)
        fig.suptitle(f"capacity, {steps + 1} update(s); softmax o solid, softmax1 x dashed")
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, f"capacity_steps{steps}.png"), dpi=110)
        plt.close(fig)
    lines = [
        f"Preset `{cfg['preset']}`, {cfg['num_queries']} corrupted queries per M, d = "
        f"{cfg['dim']}. Capacity = largest M in the sweep with error rate <= "
        f"{metrics['error_threshold']} (`-`: none). Plots: `capacity_steps*.png`.",
        "",
    ]
    header = ["set", "corruption", "updates", "beta", "softmax cap.", "softmax1 cap.",
              "softmax err@maxM", "softmax1 err@maxM"]  # fmt: skip
    cap = {(c["pattern_set"], c["corruption"], c["update_steps"], c["normalizer"], c["beta"]): c
           for c in metrics["capacity"]}  # fmt: skip
    rows = []
    for kind, corr in panels:
        for steps in steps_all:
            for b in betas:
                s, o = (
                    cap[(kind, corr, steps, "softmax", b)],
                    cap[(kind, corr, steps, "softmax1", b)],
                )
                rows.append([kind, corr, steps + 1, b, s["capacity"], o["capacity"],
                             s["error_at_max_m"], o["error_at_max_m"]])  # fmt: skip
    lines += _table(header, rows)
    lines += ["", "Relative L2 error ||x - target|| / ||target|| at the largest M:", ""]
    rel_rows = []
    for kind, corr in panels:
        biggest = max(r["num_patterns"] for r in res if r["pattern_set"] == kind)
        for b in betas:
            pick = {(r["normalizer"], r["update_steps"]): r["rel_error"] for r in res
                    if (r["pattern_set"], r["corruption"], r["beta"], r["num_patterns"])
                    == (kind, corr, b, biggest)}  # fmt: skip
            rel_rows.append([kind, corr, biggest, b] + [pick[(n, s)] for s in steps_all
                                                         for n in NORMALIZERS])  # fmt: skip
    head = ["set", "corruption", "M", "beta"] + [f"{n} {s + 1}upd" for s in steps_all
                                                 for n in NORMALIZERS]  # fmt: skip
    lines += _table(head, rel_rows)
    _write(workdir, "Storage capacity: softmax vs Softmax_1", lines)


def _model_name(r) -> str:
    return r["normalizer"] if r.get("alpha") is None else f"gsh a={r['alpha']:g}"


def _plot_energy(res, sets, color, path):
    styles = {"softmax": "-", "softmax1": "--"}
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], sets, strict=True):
        for r in (r for r in res if r["pattern_set"] == kind):
            e = np.asarray(r["mean_energy"])
            gap = np.maximum(e - e[-1], 1e-12)
            ax.plot(
                gap,
                styles.get(r["normalizer"], ":"),
                color=color[r["beta"]],
                label=f"{_model_name(r)} b={r['beta']:g}",
            )
        ax.set(yscale="log", xlabel="update t", ylabel="mean E(x_t) - E(x_T)", title=kind)
    axes[0][-1].legend(fontsize=5, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_steps(res, sets, color, path):
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], sets, strict=True):
        rows = [r for r in res if r["pattern_set"] == kind]
        labels = [f"{_model_name(r)} b{r['beta']:g}" for r in rows]
        med = [r["median_steps"] or 0 for r in rows]
        ax.bar(range(len(rows)), med, color=[color[r["beta"]] for r in rows])
        ax.set_xticks(range(len(rows)), labels, fontsize=5, rotation=75)
        ax.set(ylabel="median updates to fixed point", title=kind)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def convergence_report(metrics, workdir) -> None:
    cfg, res = metrics["config"], metrics["results"]
    color = _colors(cfg["betas"])
    sets = cfg["pattern_sets"]
    _plot_energy(res, sets, color, os.path.join(workdir, "energy_trajectories.png"))
    _plot_steps(res, sets, color, os.path.join(workdir, "steps_to_fixed_point.png"))
    header = [
        "set",
        "M",
        "model",
        "beta",
        "max energy increase",
        "monotone",
        "converged",
        "median steps",
        "max steps",
        "||grad E|| max (converged)",
        "||grad E|| max (all)",
        "recall",
        "final norm",
    ]
    rows = [
        [
            r["pattern_set"],
            r["num_patterns"],
            _model_name(r),
            r["beta"],
            r["max_energy_increase"],
            r["energy_monotone"],
            r["converged_fraction"],
            r["median_steps"],
            r["max_steps_taken"],
            r["stationarity_max_converged"],
            r["stationarity_max"],
            r["recall"],
            r["final_norm"],
        ]
        for r in res
    ]
    monotone = all(r["energy_monotone"] for r in res)
    conv = [r["stationarity_max_converged"] for r in res if r["stationarity_max_converged"]]
    lines = [
        f"Preset `{cfg['preset']}`: {cfg['num_queries']} noisy queries (noise {cfg['noise']}),"
        f" {cfg['max_steps']} updates, fixed point at max|x_t+1 - x_t| <= {cfg['tol']}. "
        "Models: softmax, Softmax_1 and GSH (alpha-entmax, energy -(1/beta) Psi_alpha(beta "
        "xi x) + 0.5 x.x). Stationarity: ||grad E(x_T)|| = ||x_T - T(x_T)|| at the final "
        "state (0 exactly at a fixed point; a state that met the tolerance has it <= "
        f"sqrt(d) tol = {np.sqrt(cfg['dim']) * cfg['tol']:.2g}).",
        "",
        f"Energy non-increasing in every run: {monotone} (largest increase "
        f"{max(r['max_energy_increase'] for r in res):.2g}). Largest ||grad E|| at the "
        f"states that met the tolerance: {max(conv) if conv else float('nan'):.2g}.",
        "",
        "![energy](energy_trajectories.png)",
        "",
        "![steps](steps_to_fixed_point.png)",
        "",
        *_table(header, rows),
    ]
    _write(workdir, "Convergence: energy and fixed points, softmax vs Softmax_1 vs GSH", lines)


def noop_report(metrics, workdir) -> None:
    cfg, res = metrics["config"], metrics["results"]
    cases = sorted({(r["pattern_set"], r["num_patterns"]) for r in res},
                   key=lambda c: (cfg["pattern_sets"].index(c[0]), c[1]))  # fmt: skip
    kinds = list(dict.fromkeys(r["query"] for r in res))
    color = _colors(kinds)
    for steps in cfg["update_steps"]:
        fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.4), squeeze=False)
        for ax, (kind, m) in zip(axes[0], cases, strict=True):
            for r in res:
                if (r["pattern_set"], r["num_patterns"], r["update_steps"]) != (kind, m, steps):
                    continue
                ax.plot(r["betas"], r["norm"], LINE[r["normalizer"]], color=color[r["query"]],
                        marker="o", ms=3, label=f"{r['normalizer']} {r['query']}")  # fmt: skip
            ax.set(xscale="log", xlabel="beta", title=f"{kind}, M={m}")
        axes[0][0].set_ylabel("mean ||retrieved||")
        axes[0][-1].legend(fontsize=6, ncol=2)
        fig.suptitle(f"no-op: retrieved norm, {steps + 1} update(s)")
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, f"noop_norm_steps{steps}.png"), dpi=110)
        plt.close(fig)
    betas = cfg["betas"]
    header = ["set", "M", "query", "updates", "normalizer"] + [f"b={b:g}" for b in betas]
    rows = [[r["pattern_set"], r["num_patterns"], r["query"], r["update_steps"] + 1,
             r["normalizer"]] + r["norm"] for r in res]  # fmt: skip
    mrows = [[r["pattern_set"], r["num_patterns"], r["query"], r["update_steps"] + 1,
              r["normalizer"]] + r["mass"] for r in res]  # fmt: skip
    lines = [
        f"Preset `{cfg['preset']}`, {cfg['num_queries']} queries per kind, d = {cfg['dim']}. "
        "Plots: `noop_norm_steps*.png`.",
        "",
        "Mean norm of the retrieved state (a full recall has norm ~1):",
        "",
        *_table(header, rows),
        "",
        "Mean mass sum(xi) on the memories (softmax: always 1):",
        "",
        *_table(header, mrows),
    ]
    _write(workdir, "No-op retrieval: softmax vs Softmax_1 on unrelated queries", lines)
