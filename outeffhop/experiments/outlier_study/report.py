"""Tables and plots of the outlier study: the papers' table, relative changes, curves, ablations."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from outeffhop.experiments.outlier_study import stats  # noqa: E402

BASELINES = ("vanilla", "clipped", "gated")
OURS = {"vanilla": "softmax1", "clipped": "clipped+softmax1", "gated": "gated+softmax1"}


def w8a8_cost(r: dict) -> float:
    """What W8A8 costs a run: perplexity +% over FP (LMs), accuracy points lost (ViT)."""
    fp, q = r["fp"]["metric"], r["w8a8"]["metric"]
    if r["fp"]["metric_name"].startswith("accuracy"):
        return fp - q
    return 100.0 * (q - fp) / fp


# (column, value of a row, which way is better: "lower" | "higher" | "metric" = the FP
# metric's way, lower perplexity / higher accuracy). The headline is the W8A8 cost.
COLUMNS = (
    ("FP", lambda r: r["fp"]["metric"], "metric"),
    ("W8A8", lambda r: r["w8a8"]["metric"], "metric"),
    ("W8A8 cost", w8a8_cost, "lower"),
    ("avg kurtosis", lambda r: r["avg_kurtosis"], "lower"),
    ("max inf-norm", lambda r: r["max_inf_norm"], "lower"),
    ("FFN kurtosis", lambda r: r["outliers"]["ffn"]["avg_kurtosis"], "lower"),
    ("FFN inf-norm", lambda r: r["outliers"]["ffn"]["max_inf_norm"], "lower"),
)
DIFFERENCE_COLUMNS = ("W8A8 cost",)  # already a percentage: paired difference in points


def group(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """{family: {variant: [row per seed]}}, rows sorted by seed."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in sorted(rows, key=lambda r: r.get("seed", 0)):
        out[r["family"]][r["variant"]].append(r)
    return out


mean_std = stats.mean_std


def _fmt(m, s, n):
    return f"{m:.4g}" if n == 1 else f"{m:.4g} ± {s:.2g}"


def _header(col, name):
    if col in ("FP", "W8A8"):
        return f"{col} ({name})"
    if col == "W8A8 cost":
        return "W8A8 cost (pts)" if name.startswith("accuracy") else "W8A8 cost (%)"
    return col


def _lower_is_better(col, metric_name):
    better = next(b for c, _, b in COLUMNS if c == col)
    if better == "metric":
        return not metric_name.startswith("accuracy")
    return better == "lower"


def run_seconds(row: dict) -> float:
    """A run's wall seconds: training over all its sessions (``train_log_s``, else the last
    session's ``train_s``) plus its evaluation."""
    return row.get("train_log_s", row.get("train_s", 0.0)) + row.get("eval_s", 0.0)


def table(family_rows: dict[str, list[dict]], variants) -> tuple[list[str], dict]:
    """Markdown lines of the papers' table for one family (mean ± std over seeds), numbers."""
    name = next(iter(family_rows.values()))[0]["fp"]["metric_name"]
    head = ["variant", "seeds"] + [_header(c, name) for c, _, _ in COLUMNS] + ["wall min/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    numbers = {}
    for v in variants:
        rs = family_rows.get(v)
        if not rs:
            continue
        cells, numbers[v] = [v, str(len(rs))], {}
        for col, get, _ in COLUMNS:
            m, s = mean_std([get(r) for r in rs])
            numbers[v][col] = (m, s)
            cells.append(_fmt(m, s, len(rs)))
        wall = [run_seconds(r) / 60.0 for r in rs]
        cells.append(_fmt(*mean_std(wall), len(rs)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines, numbers


def paired(family_rows: dict[str, list[dict]]) -> dict:
    """{"ours vs base": {column: stats.summarize(per-seed change)}} for each present pair.

    Changes are relative ((ours - base) / |base|, in %) except DIFFERENCE_COLUMNS (points).
    """
    out = {}
    for base in BASELINES:
        ours = OURS[base]
        if base not in family_rows or ours not in family_rows:
            continue
        pair = {}
        for col, get, _ in COLUMNS:
            b = {r["seed"]: get(r) for r in family_rows[base]}
            o = {r["seed"]: get(r) for r in family_rows[ours]}
            diff = col in DIFFERENCE_COLUMNS
            seeds, x = (stats.paired_difference if diff else stats.paired_relative_change)(b, o)
            s = stats.summarize(x if diff else 100.0 * x)
            s.update(seeds=seeds, unit="pts" if diff else "%")
            pair[col] = s
        out[f"{ours} vs {base}"] = pair
    return out


def _ci(s):
    lo, hi = s["ci"]
    return "n/a" if not math.isfinite(lo) else f"[{lo:+.1f}, {hi:+.1f}]"


def paired_table(pairs: dict, metric_name: str) -> list[str]:
    """Per pair and column: mean paired change, 95% t interval, seeds lower, exact p values."""
    lines = [
        "| pair | column | mean change | 95% t interval | seeds lower | sign-flip p | sign p "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair, cols in pairs.items():
        for col, s in cols.items():
            if s["n"] == 0:
                continue
            v = stats.verdict(s, _lower_is_better(col, metric_name))
            lines.append(
                f"| {pair} | {col} | {s['mean']:+.1f} {s['unit']} | {_ci(s)} | "
                f"{s['negative']}/{s['n']} | {s['p_sign_flip']:.3g} | {s['p_sign']:.3g} | {v} |"
            )
    return lines


def findings(pairs: dict, metric_name: str) -> list[str]:
    """Sentences, generated from the numbers, on which paired effects hold and which do not."""
    out, sizes = [], set()
    for pair, cols in pairs.items():
        by_verdict: dict[str, list[str]] = defaultdict(list)
        for col, s in cols.items():
            if s["n"] == 0:
                continue
            sizes.add(s["n"])
            v = stats.verdict(s, _lower_is_better(col, metric_name))
            by_verdict[v].append(f"{col} {s['mean']:+.1f} {s['unit']} {_ci(s)}")
        words = {
            "improves": "improves (every seed agrees, the 95% t interval excludes 0)",
            "worsens": "worsens (every seed agrees, the 95% t interval excludes 0)",
            "not shown": "shows no effect that holds (seeds disagree or the interval covers 0) on",
            "untested": "is untested (fewer than 2 paired seeds) on",
        }
        for v, text in words.items():
            if by_verdict[v]:
                out.append(f"{pair}: Softmax_1 {text}: " + "; ".join(by_verdict[v]) + ".")
    if sizes:
        n = min(sizes)
        out.append(
            f"With {n} paired seeds the exact sign-flip test cannot give p below "
            f"{stats.min_sign_flip_p(n):.3g} (2 / 2^n, under 0.05 only from 6 seeds); the "
            "verdicts rest on the t interval, which assumes roughly normal per-seed changes."
        )
    return out


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
    """Per-layer kurtosis and inf-norm of each module group, one line per variant: the mean
    over seeds, with the seeds' min-max band when there are several; integer layer ticks."""
    from matplotlib.ticker import MaxNLocator

    curves = next(iter(family_rows.values()))[0]["outliers"]["paper"]["per_layer"]
    groups = sorted(curves)
    fig, axes = plt.subplots(2, len(groups), figsize=(4 * len(groups), 6), squeeze=False)
    for j, g in enumerate(groups):
        for v in variants:
            seeds = [r["outliers"]["paper"]["per_layer"].get(g) for r in family_rows.get(v, [])]
            seeds = [c for c in seeds if c is not None]
            if not seeds:
                continue
            layer = seeds[0]["layer"]
            for i, key in enumerate(("kurtosis", "inf_norm")):
                values = np.asarray([c[key] for c in seeds], float)
                (line,) = axes[i, j].plot(
                    layer, values.mean(0), marker="o", label=f"{v} ({len(seeds)} seeds)"
                )
                if len(seeds) > 1:
                    axes[i, j].fill_between(
                        layer, values.min(0), values.max(0), color=line.get_color(), alpha=0.2
                    )
        axes[0, j].set_title(f"{family}: {g}", fontsize=9)
        axes[0, j].set_ylabel("kurtosis")
        axes[1, j].set_ylabel("inf-norm")
        axes[1, j].set_xlabel("layer")
        for ax in axes[:, j]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def row_protocol(row: dict) -> str:
    """The protocol an ``eval.json`` row was measured under (rows from before protocols: ours)."""
    return row.get("protocol", "ours")


def protocol_line(rows: list[dict]) -> str:
    """The report's protocol line: which evaluation protocol the rows were measured with."""
    names = sorted({row_protocol(r) for r in rows})
    notes = "; ".join(f"`{n}`: {PROTOCOL_NOTES.get(n, n)}" for n in names)
    return f"Evaluation protocol {', '.join(f'`{n}`' for n in names)} ({notes})."


def split_protocol(rows: list[dict], protocol: str) -> tuple[list[dict], list[dict]]:
    """(rows measured under ``protocol``, the others): a table never mixes protocols."""
    keep = [r for r in rows if row_protocol(r) == protocol]
    return keep, [r for r in rows if row_protocol(r) != protocol]


def left_out_line(rows: list[dict], protocol: str) -> str:
    """The report's sentence on runs left out because they were measured under another protocol."""
    names = ", ".join(
        f"{r['family']}/{r['variant']}/seed{r['seed']} ({row_protocol(r)})" for r in rows
    )
    return (
        f"Left out, measured under another protocol than `{protocol}`: {names}. Rerunning the "
        "study evaluates them again from their final checkpoints."
    )


def write(rows: list[dict], workdir: str, meta: dict, variants) -> str:
    """Write ``report.md``, ``metrics.json`` and PNGs to ``workdir``; return the report text."""
    os.makedirs(workdir, exist_ok=True)
    rows, left_out = split_protocol(rows, meta.get("protocol", "official"))
    by = group(rows)
    lines = [
        "# Outlier and W8A8 quantization study",
        "",
        f"Preset `{meta['preset']}`; steps {meta['steps']}; seeds {meta['seeds']}; "
        f"machine {meta['machine']}; wall time {meta['wall_s']:.0f} s.",
        "",
        "Columns: FP metric, W8A8 fake-quantized metric (quantizer sites, weights and range "
        "estimator of the evaluation protocol named below) and its cost "
        "(perplexity increase in %, or accuracy points lost), average kurtosis (mean over the "
        "papers' module set), max inf-norm (max over modules), and the FFN outputs alone; "
        "mean ± sample std over seeds; wall minutes per run (training summed over resumed "
        "sessions, + evaluation). Lower cost / kurtosis / inf-norm / perplexity is better; "
        "higher accuracy.",
        "",
        "Paired changes: each Softmax_1 variant against its baseline, seed by seed (same "
        "seed = same data order and init draw); relative change in %, the cost column as a "
        "difference in points; 95% t interval of the mean change; seeds lower = seeds where "
        "the Softmax_1 variant's value is below its baseline's; exact two-sided sign-flip "
        "(paired permutation) and sign tests. Verdict improves / worsens: every seed agrees "
        "and the interval excludes 0.",
        "",
        protocol_line(rows),
        "",
    ]
    if left_out:
        lines += [left_out_line(left_out, meta.get("protocol", "official")), ""]
    numbers, pairs = {}, {}
    for family in sorted(by):
        t, numbers[family] = table(by[family], variants)
        pairs[family] = paired(by[family])
        name = next(iter(by[family].values()))[0]["fp"]["metric_name"]
        plot_layers(family, by[family], variants, os.path.join(workdir, f"{family}_layers.png"))
        plot_histograms(family, by[family], variants, os.path.join(workdir, f"{family}_hist.png"))
        lines += [f"## {family}", "", *t, ""]
        if pairs[family]:
            lines += [*paired_table(pairs[family], name), ""]
            lines += [*findings(pairs[family], name), ""]
        lines += mass_table(by[family], variants)
        lines += ["Quantization ablations:", "", *ablation_table(by[family], variants), ""]
        lines += [f"![layers]({family}_layers.png) ![hist]({family}_hist.png)", ""]
    lines += meta.get("notes", [])
    text = "\n".join(lines) + "\n"
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump({"meta": meta, "table": numbers, "paired": pairs, "rows": rows}, f, indent=1)
    return text


def rewrite(workdir: str, preset: str = "cpu") -> str:
    """Regenerate ``report.md`` / ``metrics.json`` from the finished runs' ``eval.json``.

    For a study still running (the scheduler writes the report only when a run of it ends);
    the variants and notes are those of ``configs/reproduce.py:<preset>``, the wall time the
    sum of the runs' own times.
    """
    from outeffhop.experiments.outlier_study.scheduler import collect
    from outeffhop.launch.configs import load_config

    config = load_config(f"reproduce:{preset}")
    protocol = config.get("protocol", "official")
    every = collect(workdir)
    if not every:
        raise ValueError(f"workdir {workdir!r} holds no finished run (runs/*/*/*/eval.json).")
    rows = split_protocol(every, protocol)[0]
    if not rows:
        raise ValueError(
            f"workdir {workdir!r} holds no run evaluated under the {protocol!r} protocol; "
            "rerun the study to evaluate its runs again."
        )
    steps = sorted({(r["family"], r["steps"]) for r in rows})
    meta = {
        "preset": preset,
        "steps": ", ".join(f"{f} {s}" for f, s in steps),
        "seeds": max(r["seed"] for r in rows) + 1,
        "machine": f"{len(rows)} finished runs, one training process at a time",
        "wall_s": sum(run_seconds(r) for r in rows),
        "notes": list(config.notes),
        "protocol": protocol,
    }
    return write(every, workdir, meta, list(config.variants))


if __name__ == "__main__":
    import sys

    print(rewrite(*sys.argv[1:]))
