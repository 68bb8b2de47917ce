"""Tables and plots of the outlier study: the papers' table, relative changes, curves, ablations."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

BASELINES = ("vanilla", "clipped", "gated")
OURS = {"vanilla": "softmax1", "clipped": "clipped+softmax1", "gated": "gated+softmax1"}
COLUMNS = (
    ("FP", lambda r: r["fp"]["metric"]),
    ("avg kurtosis", lambda r: r["avg_kurtosis"]),
    ("max inf-norm", lambda r: r["max_inf_norm"]),
    ("W8A8", lambda r: r["w8a8"]["metric"]),
    ("FFN kurtosis", lambda r: r["outliers"]["ffn"]["avg_kurtosis"]),
    ("FFN inf-norm", lambda r: r["outliers"]["ffn"]["max_inf_norm"]),
)


def group(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """{family: {variant: [row per seed]}}."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        out[r["family"]][r["variant"]].append(r)
    return out


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _fmt(m, s, n):
    return f"{m:.4g}" if n == 1 else f"{m:.4g} ± {s:.2g}"


def table(family_rows: dict[str, list[dict]], variants) -> tuple[list[str], dict]:
    """Markdown lines of the papers' table for one family, and its numbers."""
    name = next(iter(family_rows.values()))[0]["fp"]["metric_name"]
    head = ["variant"] + [f"{c} ({name})" if c in ("FP", "W8A8") else c for c, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    numbers = {}
    for v in variants:
        rs = family_rows.get(v)
        if not rs:
            continue
        cells, numbers[v] = [v], {}
        for col, get in COLUMNS:
            m, s = mean_std([get(r) for r in rs])
            numbers[v][col] = (m, s)
            cells.append(_fmt(m, s, len(rs)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines, numbers


def relative(numbers: dict) -> list[str]:
    """OutEffHop (Softmax_1) vs each baseline: relative change of the table's columns (%)."""
    cols = [c for c, _ in COLUMNS]
    lines = ["| Softmax_1 variant vs baseline | " + " | ".join(cols) + " |"]
    lines.append("|" + "---|" * (len(cols) + 1))
    for base in BASELINES:
        ours = OURS[base]
        if base not in numbers or ours not in numbers:
            continue
        cells = []
        for c in cols:
            b, o = numbers[base][c][0], numbers[ours][c][0]
            cells.append(f"{100 * (o - b) / abs(b):+.1f}%" if b else "n/a")
        lines.append(f"| {ours} vs {base} | " + " | ".join(cells) + " |")
    return lines


def ablation_table(family_rows, variants) -> list[str]:
    names = list(next(iter(family_rows.values()))[0]["quantized"])
    lines = ["| variant | FP | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    for v in variants:
        rs = family_rows.get(v)
        if not rs:
            continue
        cells = [_fmt(*mean_std([r["fp"]["metric"] for r in rs]), len(rs))]
        cells += [
            _fmt(*mean_std([r["quantized"][n]["metric"] for r in rs]), len(rs)) for n in names
        ]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return lines


MASS = (  # (column, aggregate, group) of the attention-mass table
    ("null slot", "mean", "null"),
    ("first token", "mean", "first"),
    ("delimiters", "mean", "delimiters"),
    ("delimiters, top head", "max_head", "delimiters"),
)


def mass_table(family_rows, variants) -> list[str]:
    """Attention mass (% of each query's weight, mean over layers and heads), per variant."""
    rows0 = [rs[0] for rs in family_rows.values() if "attention_mass" in rs[0]]
    if not rows0:
        return []
    cols = [c for c in MASS if c[2] in rows0[0]["attention_mass"]["mean"]]
    base = rows0[0]["attention_mass"]["base_rate"].get("delimiters")
    lines = ["| variant | " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for v in variants:
        rs = [r for r in family_rows.get(v, []) if "attention_mass" in r]
        if not rs:
            continue
        cells = []
        for _, agg, key in cols:
            m, sd = mean_std([100 * r["attention_mass"][agg][key] for r in rs])
            cells.append(f"{m:.1f}" if len(rs) == 1 else f"{m:.1f} ± {sd:.1f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    note = (
        "Attention mass (%): the share of each query's weight on the null slot (1 - sum of "
        "the weights: Softmax_1's no-op; clipping also sheds mass), on key 0 and on delimiter "
        "tokens (punctuation, whitespace, special), mean over layers and heads (top head: the "
        "largest)."
    )
    if base is not None:
        note += f" Delimiters are {100 * base:.1f}% of the evaluated tokens."
    return [note, "", *lines, ""]


def plot_layers(family: str, family_rows, variants, path: str) -> None:
    """Per-layer kurtosis and inf-norm (seed 0) of each module group, one line per variant."""
    curves = next(iter(family_rows.values()))[0]["outliers"]["paper"]["per_layer"]
    groups = sorted(curves)
    fig, axes = plt.subplots(2, len(groups), figsize=(4 * len(groups), 6), squeeze=False)
    for j, g in enumerate(groups):
        for v in variants:
            if v not in family_rows:
                continue
            c = family_rows[v][0]["outliers"]["paper"]["per_layer"].get(g)
            if c is None:
                continue
            axes[0, j].plot(c["layer"], c["kurtosis"], marker="o", label=v)
            axes[1, j].plot(c["layer"], c["inf_norm"], marker="o", label=v)
        axes[0, j].set_title(f"{family}: {g}", fontsize=9)
        axes[0, j].set_ylabel("kurtosis")
        axes[1, j].set_ylabel("inf-norm")
        axes[1, j].set_xlabel("layer")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_histograms(family: str, family_rows, variants, path: str) -> None:
    """Histogram (log counts) of the last layer's FFN output, seed 0, per variant."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in variants:
        if v not in family_rows:
            continue
        h = family_rows[v][0]["histogram"]
        edges = np.asarray(h["edges"])
        ax.stairs(np.maximum(h["counts"], 0.5), edges, label=v)
        module = h["module"]
    ax.set_yscale("log")
    ax.set_title(f"{family}: {module} activations", fontsize=9)
    ax.set_xlabel("value")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


PROTOCOL_NOTES = {
    "official": "the official OutEffHop / Bondarenko et al. code's quantizer sites (Linear "
    "outputs, residual sums, LayerNorm outputs, attention scores / probabilities / context), "
    "estimators and batch counts; docs/references.md lists what still differs",
    "ours": "this project's input-side sites (Dense and LayerNorm inputs, attention scores "
    "and weights), running min/max on held-out training batches",
}


def protocol_line(rows: list[dict]) -> str:
    """The report's protocol line: which evaluation protocol the rows were measured with."""
    names = sorted({r.get("protocol", "ours") for r in rows})
    notes = "; ".join(f"`{n}`: {PROTOCOL_NOTES.get(n, n)}" for n in names)
    return f"Evaluation protocol {', '.join(f'`{n}`' for n in names)} ({notes})."


def write(rows: list[dict], workdir: str, meta: dict, variants) -> str:
    """Write ``report.md``, ``metrics.json`` and PNGs to ``workdir``; return the report text."""
    os.makedirs(workdir, exist_ok=True)
    by = group(rows)
    lines = [
        "# Outlier and W8A8 quantization study",
        "",
        f"Preset `{meta['preset']}`; steps {meta['steps']}; seeds {meta['seeds']}; "
        f"machine {meta['machine']}; wall time {meta['wall_s']:.0f} s.",
        "",
        "Columns: FP metric, average kurtosis (mean over the papers' module set), max inf-norm "
        "(max over modules), W8A8 fake-quantized metric (weights symmetric per tensor, "
        "activations asymmetric, running min/max EMA 0.9 on held-out batches), and the FFN "
        "outputs alone. Lower kurtosis / inf-norm / perplexity is better; higher accuracy.",
        "",
        protocol_line(rows),
        "",
    ]
    numbers = {}
    for family in sorted(by):
        t, numbers[family] = table(by[family], variants)
        plot_layers(family, by[family], variants, os.path.join(workdir, f"{family}_layers.png"))
        plot_histograms(family, by[family], variants, os.path.join(workdir, f"{family}_hist.png"))
        lines += [f"## {family}", "", *t, "", *relative(numbers[family]), ""]
        lines += mass_table(by[family], variants)
        lines += ["Quantization ablations:", "", *ablation_table(by[family], variants), ""]
        lines += [f"![layers]({family}_layers.png) ![hist]({family}_hist.png)", ""]
    lines += meta.get("notes", [])
    text = "\n".join(lines) + "\n"
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump({"meta": meta, "table": numbers, "rows": rows}, f, indent=1)
    return text
