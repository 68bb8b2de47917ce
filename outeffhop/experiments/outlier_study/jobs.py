"""One job of the outlier study: train a (family, variant, seed) run, then evaluate it.

One job = ``configs/<family>.py:<preset>`` with the variant's attention fields, trained by
``outeffhop.train`` and evaluated in the same process (``measure.evaluate``) under an
evaluation protocol (``measure.protocols``: ``official``, the default, or ``ours``): FP
metric, outlier statistics of the model's module sets, attention mass (null slot, first
token, delimiters), W8A8 fake quantization (and ablations), qwix int8. Each job writes
``<workdir>/runs/<family>/<variant>/seed<k>/eval.json``. ``python -m
outeffhop.experiments.outlier_study.jobs spec.json`` runs one (the scheduler's worker).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop import data, models
from outeffhop.launch.configs import load_config
from outeffhop.measure import attention_mass, outliers, protocols, quant, quant_qwix
from outeffhop.measure import evaluate as evaluation
from outeffhop.train import checkpoint, loop, optim, tasks, train_and_evaluate

# The papers' variants: attention fields set on config.model.attention.
VARIANTS = {
    "vanilla": {"normalizer": "softmax", "gate": "none"},
    "softmax1": {"normalizer": "softmax1", "gate": "none"},
    "clipped": {"normalizer": "clipped", "gate": "none"},
    "gated": {"normalizer": "softmax", "gate": "conditional_per_token"},
    "clipped+softmax1": {"normalizer": "clipped_softmax1", "gate": "none"},
    "gated+softmax1": {"normalizer": "softmax1", "gate": "conditional_per_token"},
}
FAMILIES = ("bert", "opt", "vit")


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}.")


def job_config(family: str, preset: str, variant: str, seed: int, overrides: dict):
    """The trainer config of one job: the family's preset, the variant, seed and overrides."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}.")
    check_variant(variant)
    cfg = load_config(f"{family}:{preset}")
    cfg.model.attention.update(VARIANTS[variant])
    cfg.seed = seed
    cfg.progress_bar = False
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    cfg.data.batch_size = cfg.batch_size
    return cfg


def variant_overrides(study, family: str, variant: str) -> dict:
    """Trainer overrides one variant of a study config (configs/reproduce.py) adds: the
    clipped+softmax1 zeta per family (the official BERT runs used 1.1, their table says 1)."""
    zeta = study.get("clipped_softmax1_zeta", {}).get(family)
    if variant == "clipped+softmax1" and zeta is not None:
        return {"model.attention.zeta": float(zeta)}
    return {}


def load_params(cfg, workdir: str):
    """The newest checkpoint's params; ValueError if missing or of another model shape."""
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)
    tx = optim.make_optimizer(cfg.optim, cfg.num_steps)
    init = lambda rng: loop.init_fn(rng, cfg=cfg, task=task, model=model, tx=tx)  # noqa: E731
    abstract = jax.eval_shape(init, jax.random.key(0))
    step = checkpoint.latest_compatible_step(workdir, abstract["params"])
    if step is None:
        raise ValueError(f"workdir {workdir!r} holds no checkpoint; train it first.")
    mngr = checkpoint.make_manager(workdir, 1, read_only=True)
    try:
        state = checkpoint.restore_state(mngr, step, abstract)
    finally:
        mngr.close()
    return state["params"], step


def _valid_rows(batch):
    if "weight" in batch:
        return np.asarray(batch["weight"]) > 0
    mask = batch.get("attention_mask")
    if mask is None:
        return np.ones(len(next(iter(batch.values()))), bool)
    return np.asarray(mask).sum(-1) > 0


def _query_valid(batch):
    """bool [B, T] (or [B] without a padding mask): the queries the statistics average over."""
    rows = _valid_rows(batch)
    mask = batch.get("attention_mask")
    return rows if mask is None else rows[:, None] & (np.asarray(mask) > 0)


def _attention_mass(cfg, workdir, variables, batches, inputs_fn) -> dict:
    """Attention mass on the null slot, key 0 and (text) delimiter tokens, per layer/head."""
    cfg = copy.deepcopy(cfg)
    cfg.model.attention.implementation = "reference"  # the weights exist on this path only
    model = tasks.get_task(cfg.task).build_model(cfg)
    groups = attention_mass.no_groups
    if cfg.model.model in ("bert", "opt"):
        _, info = data.make_dataset(cfg, "eval", workdir=workdir, batch_size=cfg.batch_size)
        specials = (info.cls_id, info.sep_id, info.eos_id)
        table = attention_mass.tokenizer_delimiters(info.tokenizer_path, specials)
        groups = attention_mass.text_groups(table)
    return attention_mass.attention_mass(
        model, variables, batches, inputs_fn=inputs_fn, groups_fn=groups, valid_fn=_query_valid
    )


def _metric(cfg, sums, per_batch: bool = False) -> dict[str, float]:
    """FP / quantized metric from summed (loss, weight, correct): ppl for LMs, acc for ViT.

    ``per_batch``: the loss is the mean over evaluation rows of their batch's mean loss (the
    official scripts' ``exp(mean(loss.repeat(batch_size)))``), not the mean over tokens.
    """
    loss = sums["loss"] / max(sums["weight"], 1.0)
    if per_batch:
        loss = sums["batch_loss"] / max(sums["rows"], 1.0)
    acc = sums["correct"] / max(sums["weight"], 1.0)
    if cfg.model.model == "vit":
        return {"metric": 100.0 * acc, "metric_name": "accuracy %", "loss": loss}
    return {"metric": math.exp(min(loss, 50.0)), "metric_name": "perplexity", "loss": loss}


def _forward(model, cfg):
    """Summed loss / weight / correct of one batch, with the full head.

    No lax.cond (the trainer's BERT loss has one): quantizer sites record ranges through
    Python side effects, which control flow would leak.
    """

    def forward(v, batch):
        logits = model.apply(v, **models.model_inputs(cfg.model, batch), deterministic=True)
        mean, met = models.loss_fn(cfg.model)(logits, batch)
        n = met["num_tokens"]
        rows = _valid_rows_traced(batch)
        return {
            "loss": mean * n,
            "weight": n,
            "correct": met["accuracy"] * n,
            "batch_loss": mean * rows,
            "rows": rows,
        }

    return forward


def _valid_rows_traced(batch):
    """The number of evaluation rows of a batch (rows with a positive weight, else all)."""
    if "weight" in batch:
        return jnp.sum(jnp.asarray(batch["weight"]) > 0).astype(jnp.float32)
    return jnp.float32(len(next(iter(batch.values()))))


def _inputs_fn(cfg):
    def inputs(b):
        return (), {**models.model_inputs(cfg.model, b), "deterministic": True}

    return inputs


def _last_ffn_histogram(model, variables, family, batch, inputs) -> dict:
    """Histogram of the last layer's FFN output on one batch (the report's figure)."""
    _, found = outliers.capture(
        model, variables, patterns=models.outlier_modules(family, "ffn"), **inputs(batch)[1]
    )
    last = max(found, key=lambda k: int(k.split("_")[1].split("/")[0]))
    counts, edges = outliers.histogram({last: found[last]}, bins=80)[last]
    return {"module": last, "counts": counts.tolist(), "edges": edges.tolist()}


def protocol_for(name: str, family: str) -> protocols.Protocol:
    """The evaluation protocol ``name`` ("official" or "ours") for a model family."""
    protocols.check_protocol(name)
    return protocols.get(name, models.official_protocol(family) if name == "official" else None)


def _calibration_batches(task, cfg, workdir, eval_batches, split: str, n: int) -> list:
    """The first ``n`` batches of the evaluation split, or of the training stream."""
    if split == "eval":
        return eval_batches[:n]
    it = task.train_iter(cfg, workdir, 0, 1)
    return [next(it) for _ in range(n)]


def _reference_model(cfg, task):
    """The model on the explicit-weights attention path, where the score / weight probes
    (quantizer sites) exist on every backend."""
    cfg = copy.deepcopy(cfg)
    cfg.model.attention.implementation = "reference"
    return task.build_model(cfg)


def evaluate(
    cfg,
    workdir: str,
    params=None,
    *,
    protocol: str = "official",
    num_calib: int | None = None,
    ablations=True,
    int8=True,
):
    """The paper's table row for one trained run (plus ablations, curves and a histogram).

    ``protocol`` (``measure.protocols``) fixes the quantizer sites, estimator, calibration
    batches (``num_calib`` overrides their count) and the outlier statistics; "official"
    calibrates BERT on the evaluation split and OPT / ViT on the training stream, "ours"
    on the training stream (held out from the eval split; the same batches every time).
    """
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)
    if params is None:
        params, _ = load_params(cfg, workdir)
    variables = {"params": params}
    family = cfg.model.model
    proto = protocol_for(protocol, family)
    eval_batches = list(task.eval_batches(cfg, workdir, 0, 1))
    n = num_calib or proto.num_calib
    calib = _calibration_batches(task, cfg, workdir, eval_batches, proto.calib_split, n)
    fmodel = model if protocol == "ours" else _reference_model(cfg, task)
    forward, inputs = _forward(fmodel, cfg), _inputs_fn(cfg)
    sets = dict.fromkeys(("paper", "ffn", "layers", proto.headline, *proto.reported))
    row = evaluation.evaluate(
        model,
        variables,
        forward=forward,
        metric=functools.partial(_metric, cfg, per_batch=proto.per_batch_metric),
        eval_batches=eval_batches,
        calib_batches=calib,
        module_sets={s: models.outlier_modules(family, s) for s in sets},
        inputs_fn=inputs,
        valid_fn=_valid_rows,
        recipes=quant.ablations(base=proto.quant) if ablations else {"W8A8": proto.quant},
        headline=proto.headline,
        kurtosis_batches=proto.kurtosis_batches,
        reported=proto.reported,
    )
    if int8:
        example = {**models.model_inputs(cfg.model, eval_batches[0]), "deterministic": True}
        qforward, qvars = _qwix(model, variables, calib, cfg, example)
        row["quantized"]["int8-qwix"] = _metric(
            cfg, quant.sum_metrics(qforward, qvars, eval_batches)[0]
        )
    return {
        "family": family,
        "protocol": protocol,
        "num_calib": len(calib),
        **row,
        "attention_mass": _attention_mass(cfg, workdir, variables, eval_batches, inputs),
        "histogram": _last_ffn_histogram(model, variables, family, eval_batches[0], inputs),
    }


def table_row(row: dict) -> str:
    """The paper's table row: FP metric, avg kurtosis, max inf-norm, W8A8 metric, and the
    protocol line (which protocol, its reported maxima)."""
    name = row["fp"]["metric_name"]
    head = f"| FP ({name}) | avg kurtosis | max inf-norm | W8A8 ({name}) |"
    cells = (row["fp"]["metric"], row["avg_kurtosis"], row["max_inf_norm"], row["w8a8"]["metric"])
    table = head + "\n|---|---|---|---|\n| " + " | ".join(f"{c:.4g}" for c in cells) + " |"
    maxima = ", ".join(f"{k} {v:.4g}" for k, v in row.get("maxima", {}).items())
    line = f"protocol: {row.get('protocol', 'ours')}" + (
        f"; max inf-norm of {maxima}" if maxima else ""
    )
    return table + "\n" + line


def evaluate_checkpoint(config, workdir: str, **kw) -> dict:
    """``evaluate`` on the newest checkpoint in ``workdir`` (trained with ``config``)."""
    params, step = load_params(config, workdir)
    row = evaluate(config, workdir, params, **kw)
    row["step"] = step
    return row


def _qwix(model, variables, calib, cfg, example):
    """The int8 (qwix) model's forward and variables, ranges from ``calib``."""
    ranges = quant.calibrate(
        _forward(model, cfg), variables, calib, quant_qwix.calibration_config()
    )
    qmodel, qvars = quant_qwix.int8_ptq(model, variables, ranges, **example)
    return _forward(qmodel, cfg), qvars


def logged_train_seconds(metrics_path: str, tokens_per_step: int) -> float:
    """Wall seconds of the training steps kept in ``metrics.jsonl``, over every session.

    Each log row holds ``tokens_per_s`` over the window since the previous logged step (eval
    and checkpoint pauses included); the window took ``tokens_per_step * (step_i - step_{i-1})
    / tokens_per_s_i`` seconds. A resumed run's log is cut back to its checkpoint, so the sum
    covers steps 0..N exactly once, where ``train_s`` counts the last session only.
    """
    if not os.path.exists(metrics_path):
        return 0.0
    total, prev = 0.0, 0
    with open(metrics_path) as f:
        for line in f:
            row = json.loads(line)
            if "tokens_per_s" not in row:
                continue
            total += tokens_per_step * (row["step"] - prev) / max(row["tokens_per_s"], 1e-9)
            prev = row["step"]
    return total


def run_job(job: dict) -> dict:
    """Train (resuming) and evaluate one job; writes and returns ``eval.json``."""
    cfg = job_config(job["family"], job["preset"], job["variant"], job["seed"], job["overrides"])
    wd = job["workdir"]
    os.makedirs(wd, exist_ok=True)
    t0 = time.perf_counter()
    state = train_and_evaluate(cfg, wd)
    t1 = time.perf_counter()
    row = evaluate(
        cfg,
        wd,
        state["params"],
        protocol=job.get("protocol", "official"),
        num_calib=job["num_calib"],
        ablations=job["ablations"],
        int8=job["int8"],
    )
    per_step = cfg.batch_size * tasks.get_task(cfg.task).tokens_per_example(cfg)
    row.update(
        variant=job["variant"],
        seed=job["seed"],
        steps=cfg.num_steps,
        train_s=t1 - t0,  # this process only (a resumed run: since its checkpoint)
        train_log_s=logged_train_seconds(os.path.join(wd, "metrics.jsonl"), per_step),
        eval_s=time.perf_counter() - t1,
        load_avg=list(os.getloadavg()),  # 1/5/15-minute load when the job ended
    )
    with open(os.path.join(wd, "eval.json"), "w") as f:
        json.dump(row, f)
    return row


def main(spec: str) -> None:
    """Run the job described by the JSON file ``spec`` (the scheduler's worker entry point)."""
    from outeffhop.launch.cli import quiet_logs

    logging.basicConfig(level=logging.INFO)
    quiet_logs()  # the job log keeps this project's lines, not orbax's expected warnings
    with open(spec) as f:
        run_job(json.load(f))


if __name__ == "__main__":
    main(sys.argv[1])
