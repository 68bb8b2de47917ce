"""STanHop-Net variant study: train each Hopfield variant, then MSE/MAE, outliers, W8A8.

For every variant in ``config.study.variants`` (``VARIANTS``: the normalizers softmax = the
vanilla model, softmax1 = OutEffHop, clipped, clipped_softmax1, gsh = STanHop's own, and the
per-head gated models gated / gated_softmax1) the study sets ``config.model`` accordingly,
trains it with the trainer (``workdir/<variant>``, resumable), then on the
test split evaluates it by the outlier protocol (``outeffhop.measure.evaluate``): MSE and
MAE (standardized values), the outlier statistics of the model's "paper" module set (avg
kurtosis, max inf-norm) and the W8A8 post-training-quantized MSE/MAE (ranges calibrated on
validation batches). Writes ``metrics.json``, ``report.md`` and PNG plots to ``workdir``.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop import data
from outeffhop.experiments.stanhop import report as stanhop_report
from outeffhop.measure import evaluate as evaluation
from outeffhop.models import stanhop
from outeffhop.train import train_and_evaluate
from outeffhop.train.tasks import stanhop as stanhop_task

GATE = "conditional_per_token"  # the gated-attention baseline's default gate
VARIANTS = {  # variant -> config.model overrides
    "softmax": dict(normalizer="softmax", gate="none"),
    "softmax1": dict(normalizer="softmax1", gate="none"),
    "clipped": dict(normalizer="clipped", gate="none"),
    "clipped_softmax1": dict(normalizer="clipped_softmax1", gate="none"),
    "gsh": dict(normalizer="gsh", gate="none"),
    "gated": dict(normalizer="softmax", gate=GATE),
    "gated_softmax1": dict(normalizer="softmax1", gate=GATE),
}


def variant_config(config, name: str):
    """A copy of ``config`` with the model overrides of variant ``name``."""
    if name not in VARIANTS:
        raise ValueError(f"study.variants must name variants among {', '.join(VARIANTS)}; "
                         f"got {name!r}.")  # fmt: skip
    cfg = config.copy_and_resolve_references()
    cfg.model.update(VARIANTS[name])
    return cfg


def _batches(cfg, split: str, batch_size: int, limit: int) -> list[dict]:
    """Up to ``limit`` (0 = all) batches of ``split`` in time order (padding rows weigh 0)."""
    ds, _ = data.make_dataset(cfg, split, process_index=0, process_count=1, batch_size=batch_size)
    n = len(ds) if not limit else min(limit, len(ds))
    return [ds[i] for i in range(n)]


def _forward(model):
    """forward(variables, batch) -> weighted error sums (se, ae, w) of one batch."""

    def forward(variables, batch):
        pred = model.apply(variables, batch["x"], deterministic=True)
        se, w, ae = stanhop_task.forecast_sums(pred, batch)
        return {"se": se, "ae": ae, "w": w}

    return forward


def _valid_rows(batch: dict) -> dict:
    """The batch without its padding rows (weight 0). Outlier rows of STanHop modules are
    (window, series) or (window, segment) pairs, so a per-window mask cannot be applied to
    the captured statistics; the padding is dropped from the inputs instead."""
    keep = np.asarray(batch["weight"]) > 0
    return batch if keep.all() else {k: np.asarray(v)[keep] for k, v in batch.items()}


def _errors(sums: dict) -> dict:
    """MSE and MAE from the summed squared / absolute errors and weights."""
    return {"mse": sums["se"] / sums["w"], "mae": sums["ae"] / sums["w"]}


def _gsh_alphas(params) -> list[float]:
    """Learned alphas (1 + sigmoid(param)) of every GSH head, in path order."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    vals = [v for p, v in flat if getattr(p[-1], "key", None) == "gsh_alpha"]
    return [float(a) for v in vals for a in np.asarray(1.0 + jax.nn.sigmoid(v))]


def association_sparsity(model, variables, batch) -> float:
    """Fraction of exactly-zero association weights over every Hopfield layer on ``batch``."""
    _, state = model.apply(variables, batch["x"], mutable=["intermediates"])
    xis = [x for x in jax.tree.leaves(state["intermediates"])]
    zeros = sum(float(jnp.sum(x == 0)) for x in xis)
    return zeros / max(sum(x.size for x in xis), 1)


def _forecast_example(model, variables, batch, series: int = 0) -> dict:
    pred = np.asarray(model.apply(variables, batch["x"][:1], deterministic=True))
    return {
        "history": batch["x"][0, :, series].tolist(),
        "target": batch["y"][0, :, series].tolist(),
        "forecast": pred[0, :, series].tolist(),
    }


def evaluate(cfg, params, test, calib, outlier_batches: int) -> dict:
    """Test MSE/MAE, outlier statistics and W8A8 errors of one trained model."""
    model = stanhop_task.build(cfg)
    variables = {"params": params}
    row = evaluation.evaluate(
        model,
        variables,
        forward=_forward(model),
        metric=_errors,
        eval_batches=test,
        calib_batches=calib,
        module_sets={"paper": stanhop.OUTLIER_MODULES["paper"]},
        inputs_fn=lambda b: ((b["x"],), {}),
        outlier_batches=[_valid_rows(b) for b in test[:outlier_batches]],
    )
    paper = row["outliers"]["paper"]
    return {
        **row["fp"],
        "w8a8_mse": row["w8a8"]["mse"],
        "w8a8_mae": row["w8a8"]["mae"],
        "avg_kurtosis": paper["avg_kurtosis"],
        "max_kurtosis": paper["max_kurtosis"],
        "max_inf_norm": paper["max_inf_norm"],
        "per_layer": paper["per_layer"],
        "per_module": paper["per_module"],
        "association_zero_fraction": association_sparsity(model, variables, test[0]),
        "gsh_alpha": _gsh_alphas(params),
        "example": _forecast_example(model, variables, test[0]),
    }


def run(config, workdir: str) -> dict:
    """Trains and evaluates every normalizer; returns (and writes) the metrics."""
    study = config.study
    for n in study.variants:
        stanhop.check_config(stanhop_task.model_config(variant_config(config, n)))
    os.makedirs(workdir, exist_ok=True)
    cfg0 = config.copy_and_resolve_references()
    test = _batches(cfg0, "test", study.eval_batch_size, study.test_batches)
    calib = _batches(cfg0, "val", study.eval_batch_size, study.calib_batches)
    if study.outlier_batches > len(test):
        raise ValueError(
            f"study.outlier_batches must be <= the {len(test)} test batches; "
            f"got {study.outlier_batches}."
        )
    results = {}
    for n in study.variants:
        cfg = variant_config(config, n)
        start = time.time()
        logging.info("stanhop study: training %s", n)
        print(f"[stanhop] training variant={n} ...", flush=True)
        state = train_and_evaluate(cfg, os.path.join(workdir, n))
        train_s = time.time() - start
        params = jax.device_get(state["params"])
        res = evaluate(cfg, params, test, calib, study.outlier_batches)
        res["train_seconds"] = round(train_s, 1)
        res["eval_seconds"] = round(time.time() - start - train_s, 1)
        results[n] = res
        print(
            f"[stanhop] {n}: MSE {res['mse']:.4f} MAE {res['mae']:.4f} | W8A8 MSE "
            f"{res['w8a8_mse']:.4f} | avg kurt {res['avg_kurtosis']:.2f} max inf "
            f"{res['max_inf_norm']:.2f}",
            flush=True,
        )
    metrics = {
        "preset": config.get("preset", ""),
        "num_steps": config.num_steps,
        "batch_size": config.batch_size,
        "model": config.model.to_dict(),
        "variants": {n: VARIANTS[n] for n in study.variants},
        "test_windows": int(sum(float(b["weight"].sum()) for b in test)),
        "outlier_windows": int(
            sum(float(b["weight"].sum()) for b in test[: study.outlier_batches])
        ),
        "calib_batches": len(calib),
        "module_set": list(stanhop.OUTLIER_MODULES["paper"]),
        "results": results,
    }
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    stanhop_report.write(metrics, workdir)
    return metrics
