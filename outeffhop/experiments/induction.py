"""Outlier induction: train every variant on the ``induction`` task, evaluate by the protocol.

The task (``outeffhop.train.tasks.induction``) makes attention heads learn to no-op. Each
variant trains with the trainer into ``workdir/<variant>`` (resumable) in segments of
``config.study.curve_every`` steps, with the outlier statistics of the layer outputs after
each segment (the curves), then is evaluated by ``outeffhop.measure.evaluate`` (FP loss and
accuracy, outliers of OPT's module sets, W8A8) plus the attention mass on BOS and the null
slot.
"""

from __future__ import annotations

import copy
import json
import math
import os

import matplotlib

from outeffhop import models
from outeffhop.experiments.outlier_study.jobs import VARIANTS
from outeffhop.measure import attention_mass, outliers
from outeffhop.measure import evaluate as evaluation
from outeffhop.train import tasks, train_and_evaluate
from outeffhop.train.tasks.induction import BOS, MARK, make_batch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["BOS", "MARK", "make_batch", "run", "train_variant"]


def _inputs(b):
    return (), {"input_ids": b["input_ids"], "deterministic": True}


def _forward(model, cfg):
    loss_fn = models.loss_fn(cfg.model)

    def forward(v, b):
        _, m = loss_fn(model.apply(v, input_ids=b["input_ids"], deterministic=True), b)
        n = m["num_tokens"]
        return {"loss": m["loss"] * n, "correct": m["accuracy"] * n, "weight": n}

    return forward


def _metric(sums):
    w = max(sums["weight"], 1.0)
    return {"loss": sums["loss"] / w, "accuracy": sums["correct"] / w}


def _variant_config(config, variant: str):
    cfg = copy.deepcopy(config)
    cfg.model.attention.update(VARIANTS[variant])
    with cfg.unlocked():  # configs from the command line come locked
        del cfg.study
    return cfg


def train_variant(config, name: str, workdir: str) -> dict:
    """Train one variant (curve every ``study.curve_every`` steps); return its evaluation."""
    cfg = _variant_config(config, name)
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)
    evals = task.eval_batches(cfg, workdir, 0, 1)
    layers = models.outlier_modules("opt", "layers")
    curve, step, state = [], 0, None
    while step < config.num_steps:
        step = min(step + config.study.curve_every, config.num_steps)
        seg = copy.deepcopy(cfg)
        seg.num_steps = step
        state = train_and_evaluate(seg, workdir)
        v = {"params": state["params"]}
        s = outliers.outlier_stats(model, v, evals[:1], layers, inputs_fn=_inputs)
        fp = _metric(evaluation.quant.sum_metrics(_forward(model, cfg), v, evals[:1])[0])
        mass = attention_mass.attention_mass(
            model, v, evals[:1], inputs_fn=_inputs, groups_fn=attention_mass.no_groups
        )
        curve.append(
            dict(
                step=step,
                **fp,
                kurtosis=s["avg_kurtosis"],
                inf_norm=s["max_inf_norm"],
                bos_mass=mass["mean"]["first"],
                bos_mass_top=mass["max_head"]["first"],
                null_mass=mass["mean"]["null"],
            )
        )
    v = {"params": state["params"]}
    row = evaluation.evaluate(
        model,
        v,
        forward=_forward(model, cfg),
        metric=_metric,
        eval_batches=evals,
        calib_batches=evals[:2],
        module_sets={"paper": models.outlier_modules("opt", "paper")},
        inputs_fn=_inputs,
    )
    mass = attention_mass.attention_mass(
        model, v, evals, inputs_fn=_inputs, groups_fn=attention_mass.no_groups
    )
    paper = row["outliers"]["paper"]
    return {
        "variant": name,
        "curve": curve,
        "fp": row["fp"],
        "w8a8": row["w8a8"],
        "avg_kurtosis": row["avg_kurtosis"],
        "max_inf_norm": row["max_inf_norm"],
        "per_layer": paper["per_layer"],
        "attention_mass": mass,
    }


def run(config, workdir: str) -> dict:
    """Train every variant of ``config.variants``; write report.md, metrics.json, a plot."""
    for name in config.study.variants:
        if name not in VARIANTS:
            raise ValueError(f"study.variants must be among {', '.join(VARIANTS)}; got {name!r}.")
    os.makedirs(workdir, exist_ok=True)
    results = []
    for name in config.study.variants:
        results.append(train_variant(config, name, os.path.join(workdir, name)))
        print(f"induction {name}: {json.dumps(results[-1]['curve'][-1])}", flush=True)
    _plot(results, workdir)
    _report(results, config, workdir)
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump({"results": results}, f, indent=1, default=_json_default)
    return {"results": results}


def _plot(results, workdir):
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.5))
    titles = {"loss": "eval loss (1 batch)", "bos_mass": "attention mass on BOS (mean)"}
    for r in results:
        steps = [c["step"] for c in r["curve"]]
        for ax, key in zip(axes, ("loss", "inf_norm", "kurtosis", "bos_mass"), strict=True):
            ax.plot(steps, [c[key] for c in r["curve"]], label=r["variant"])
            ax.set_title(titles.get(key, f"layer outputs: {key}"))
            ax.set_xlabel("step")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "induction.png"), dpi=90)
    plt.close(fig)


def _report(results, config, workdir):
    m = config.model
    lines = [
        "# Outlier induction (heads must learn to no-op)",
        "",
        f"OPT (pre-LN) {m.num_layers}L/{m.d_model}/{m.num_heads}H, vocab {m.vocab_size}, "
        f"length {config.data.seq_len}, {config.num_steps} steps of batch "
        f"{config.batch_size}, {config.optim.name} lr {config.optim.lr} "
        f"({config.optim.schedule}), seed {config.seed}.",
        "",
        "| variant | loss | accuracy | avg kurtosis | max inf-norm | W8A8 loss | W8A8 accuracy "
        "| BOS mass | null mass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mass = r["attention_mass"]["mean"]
        lines.append(
            f"| {r['variant']} | {r['fp']['loss']:.4f} | {r['fp']['accuracy']:.4f} | "
            f"{r['avg_kurtosis']:.3g} | {r['max_inf_norm']:.3g} | {r['w8a8']['loss']:.4f} | "
            f"{r['w8a8']['accuracy']:.4f} | {100 * mass['first']:.1f}% | "
            f"{100 * mass['null']:.1f}% |"
        )
    lines += [
        "",
        "BOS / null mass: the share of each query's attention weight on BOS (key 0) and on "
        "the null slot (1 - sum of weights), mean over layers, heads and eval queries.",
        "",
        "![curves](induction.png)",
        "",
    ]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines))


def _json_default(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return float(x)
