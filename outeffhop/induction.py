"""Outlier induction: a synthetic causal-LM task on which attention heads must learn to no-op.

Rows are ``[BOS, x_1, ..., x_{L-1}]`` of random content tokens; in half the rows one MARK
token followed by a key token is inserted. The target at position t is the token itself
(identity: every head must leave the residual stream alone) unless a MARK/key pair came
earlier, then it is the key (two heads must find and copy it). With softmax a head can only "do
nothing" by parking its attention on a token whose value is ~0 (here BOS), which the
papers tie to growing outliers; Softmax_1 lets the head put its mass on the null slot.
Trained with a plain optax loop on the OPT model (pre-LN, causal).
"""

from __future__ import annotations

import json
import math
import os
import time

import flax.linen as nn
import jax
import matplotlib
import numpy as np
import optax

from outeffhop import attention_mass, models, outliers, quant

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BOS, MARK, FIRST_CONTENT = 0, 1, 2


def make_batch(rng: np.random.Generator, batch: int, length: int, vocab: int) -> dict:
    """input_ids [B, L] and labels [B, L] (the target read at each position; -100 = none).

    Target = the token itself, except after a MARK/key pair, where it is the key.
    """
    if vocab < 4 or length < 6:
        raise ValueError(f"vocab must be >= 4 and length >= 6; got {vocab}, {length}.")
    ids = rng.integers(FIRST_CONTENT, vocab, size=(batch, length), dtype=np.int32)
    ids[:, 0] = BOS
    labels = ids.copy()
    labels[:, 0] = -100
    for b in np.flatnonzero(rng.random(batch) < 0.5):
        i = int(rng.integers(1, length - 3))
        ids[b, i] = labels[b, i] = MARK
        labels[b, i + 2 :] = ids[b, i + 1]
    return {"input_ids": ids, "labels": labels}


def _model(cfg, variant):
    mcfg = models.get_config(
        "opt-tiny",
        num_layers=cfg.num_layers,
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        d_ff=4 * cfg.d_model,
        vocab_size=cfg.vocab,
        max_len=cfg.length,
    )
    mcfg.attention.update(variant)
    return mcfg, models.build_model(mcfg)


def train_variant(cfg, name: str, variant: dict) -> dict:
    """Train one variant; return its loss/outlier curve and final W8A8 numbers."""
    mcfg, model = _model(cfg, variant)
    rng = np.random.default_rng(cfg.seed)
    batch0 = make_batch(rng, cfg.batch_size, cfg.length, cfg.vocab)
    params = jax.jit(
        lambda k: model.init(k, input_ids=batch0["input_ids"], deterministic=True)["params"]
    )(jax.random.key(cfg.seed))
    params = nn.meta.unbox(params)
    tx = optax.adamw(cfg.lr, weight_decay=0.0)
    opt = tx.init(params)
    loss_fn = models.loss_fn(mcfg)

    def loss(p, b):
        return loss_fn(model.apply({"params": p}, input_ids=b["input_ids"], deterministic=True), b)

    @jax.jit
    def step(p, o, b):
        (val, m), g = jax.value_and_grad(loss, has_aux=True)(p, b)
        upd, o = tx.update(g, o, p)
        return optax.apply_updates(p, upd), o, m

    eval_rng = np.random.default_rng(10_000 + cfg.seed)
    evals = [make_batch(eval_rng, cfg.batch_size, cfg.length, cfg.vocab) for _ in range(4)]
    inputs = lambda b: ((), {"input_ids": b["input_ids"], "deterministic": True})  # noqa: E731
    curve = []
    t0 = time.perf_counter()
    for i in range(1, cfg.num_steps + 1):
        params, opt, m = step(params, opt, make_batch(rng, cfg.batch_size, cfg.length, cfg.vocab))
        if i % cfg.eval_every == 0 or i == cfg.num_steps:
            s = outliers.outlier_stats(
                model, {"params": params}, evals[:1], "opt:layers", inputs_fn=inputs
            )
            curve.append(dict(step=i, loss=float(m["loss"]), acc=float(m["accuracy"]), **_agg(s)))
    train_s = time.perf_counter() - t0

    def forward(v, b):
        _, m = loss(v["params"], b)
        return {"loss": m["loss"], "accuracy": m["accuracy"]}

    v = {"params": params}
    fp = quant.mean_metrics(forward, v, evals)
    w8a8 = quant.ptq_evaluate(forward, v, evals[:2], evals, quant.QuantConfig())
    stats = outliers.outlier_stats(model, v, evals, "opt:paper", inputs_fn=inputs)
    mass = attention_mass.attention_mass(
        model, v, evals, inputs_fn=inputs, groups_fn=attention_mass.no_groups
    )
    return {
        "variant": name,
        "curve": curve,
        "fp": fp,
        "w8a8": w8a8,
        "avg_kurtosis": stats["avg_kurtosis"],
        "max_inf_norm": stats["max_inf_norm"],
        "per_layer": stats["per_layer"],
        "attention_mass": mass,
        "train_s": train_s,
    }


def _agg(summary):
    return {"kurtosis": summary["avg_kurtosis"], "inf_norm": summary["max_inf_norm"]}


def run(config, workdir: str) -> dict:
    """Train every variant of ``config.variants``; write report.md, metrics.json, a plot."""
    from outeffhop.study import VARIANTS

    os.makedirs(workdir, exist_ok=True)
    results = []
    for name in config.variants:
        if name not in VARIANTS:
            raise ValueError(f"variants must be among {', '.join(VARIANTS)}; got {name!r}.")
        results.append(train_variant(config, name, VARIANTS[name]))
        print(f"induction {name}: {json.dumps(results[-1]['curve'][-1])}", flush=True)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for r in results:
        steps = [c["step"] for c in r["curve"]]
        for ax, key in zip(axes, ("loss", "inf_norm", "kurtosis"), strict=True):
            ax.plot(steps, [c[key] for c in r["curve"]], label=r["variant"])
            ax.set_title(f"layer outputs: {key}" if key != "loss" else "train loss")
            ax.set_xlabel("step")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "induction.png"), dpi=90)
    plt.close(fig)
    lines = [
        "# Outlier induction (heads must learn to no-op)",
        "",
        f"OPT (pre-LN) {config.num_layers}L/{config.d_model}/{config.num_heads}H, vocab "
        f"{config.vocab}, length {config.length}, {config.num_steps} steps of batch "
        f"{config.batch_size}, Adam lr {config.lr}, seed {config.seed}.",
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
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump({"results": results}, f, indent=1, default=_json_default)
    return {"results": results}


def _json_default(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return float(x)
