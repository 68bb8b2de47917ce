"""Plots and report.md for the STanHop-Net normalizer study (experiments/stanhop/study.py)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {
    "softmax": "tab:blue",
    "softmax1": "tab:red",
    "clipped": "tab:green",
    "clipped_softmax1": "tab:olive",
    "gsh": "tab:purple",
    "gated": "tab:cyan",
    "gated_softmax1": "tab:pink",
}


def _bars(ax, names, values, title, ylabel=None):
    ax.bar(names, values, color=[COLORS.get(n, "gray") for n in names])
    ax.set_title(title, fontsize=10)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelsize=7, rotation=30)


def _plot_errors(res, path):
    names = list(res)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    x = np.arange(len(names))
    for ax, key in zip(axes, ("mse", "mae"), strict=True):
        ax.bar(x - 0.2, [res[n][key] for n in names], 0.4, label="fp32", color="tab:gray")
        ax.bar(
            x + 0.2, [res[n][f"w8a8_{key}"] for n in names], 0.4, label="W8A8", color="tab:orange"
        )
        ax.set_xticks(x, names, fontsize=8)
        ax.set_title(f"test {key.upper()} (standardized)", fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_outliers(res, path):
    names = list(res)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    _bars(axes[0], names, [res[n]["avg_kurtosis"] for n in names], "avg kurtosis")
    _bars(axes[1], names, [res[n]["max_inf_norm"] for n in names], "max inf-norm")
    ax = axes[2]
    for n in names:
        curve = res[n]["per_layer"].get("enc_*/sthm/series_mlp_ln")
        if curve:
            ax.plot(curve["layer"], curve["kurtosis"], "o-", color=COLORS.get(n), label=n)
    ax.set(xlabel="encoder block", title="kurtosis of encoder block outputs")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_forecast(res, path):
    fig, ax = plt.subplots(figsize=(8, 3.2))
    first = next(iter(res.values()))["example"]
    h, t = len(first["history"]), len(first["target"])
    ax.plot(range(h), first["history"], color="black", lw=1, label="input")
    ax.plot(range(h, h + t), first["target"], color="black", lw=2, ls="--", label="target")
    for n, r in res.items():
        ax.plot(range(h, h + t), r["example"]["forecast"], color=COLORS.get(n), label=n)
    ax.set(xlabel="step (hours)", ylabel="series 0 (standardized)", title="first test window")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _alpha(r) -> str:
    a = r["gsh_alpha"]
    return f"{np.mean(a):.3f} [{min(a):.3f}, {max(a):.3f}]" if a else "-"


def write(metrics: dict, workdir: str) -> None:
    """report.md plus errors.png, outliers.png, forecast.png in ``workdir``."""
    res = metrics["results"]
    _plot_errors(res, os.path.join(workdir, "errors.png"))
    _plot_outliers(res, os.path.join(workdir, "outliers.png"))
    _plot_forecast(res, os.path.join(workdir, "forecast.png"))
    m = metrics["model"]
    lines = [
        "# STanHop-Net: Hopfield variants compared",
        "",
        f"Preset `{metrics['preset']}`: {metrics['num_steps']} steps of batch "
        f"{metrics['batch_size']}; in {m['in_len']}, out {m['out_len']}, seg {m['seg_len']}, "
        f"d_model {m['d_model']}, {m['num_layers']} encoder blocks, {m['num_heads']} heads, "
        f"factor {m['factor']}; cross-series stage `{m.get('cross_series', 'router')}`, "
        f"Hopfield sublayers `{m.get('hopfield_sublayer', 'hflayers')}`. Variants (model "
        f"overrides): "
        + "; ".join(f"`{n}` {v}" for n, v in metrics.get("variants", {}).items())
        + f". Test: {metrics['test_windows']} windows (errors on "
        f"standardized values); outliers over {metrics['outlier_windows']} windows; W8A8 "
        f"ranges from {metrics['calib_batches']} validation batches (running min/max).",
        "",
        "| variant | MSE | MAE | W8A8 MSE | W8A8 MAE | avg kurtosis | max kurtosis | "
        "max inf-norm | zero assoc. | GSH alpha mean [min, max] | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in res.items():
        lines.append(
            f"| {n} | {r['mse']:.4f} | {r['mae']:.4f} | {r['w8a8_mse']:.4f} | "
            f"{r['w8a8_mae']:.4f} | {r['avg_kurtosis']:.2f} | {r['max_kurtosis']:.2f} | "
            f"{r['max_inf_norm']:.2f} | {r['association_zero_fraction']:.3f} | {_alpha(r)} | "
            f"{r['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "Kurtosis is not excess kurtosis (a Gaussian gives ~3). Outlier rows are each module's "
        "leading axis: (window, series) for cross-time modules, (window, segment) for "
        "cross-series ones. Module set (path regexes): "
        + ", ".join(f"`{p}`" for p in metrics["module_set"])
        + ".",
        "",
        "![errors](errors.png)",
        "",
        "![outliers](outliers.png)",
        "",
        "![forecast](forecast.png)",
        "",
    ]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines))
