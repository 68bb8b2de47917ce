"""The ``stanhop`` task: STanHop-Net forecasting on time-series windows, MSE loss.

``config.model`` is an ``outeffhop.models.stanhop.get_config`` ConfigDict (``num_series = 0``
takes D from the data), ``config.data`` a ``data.get_data_config("timeseries")`` one. The
trainer's loss is the MSE over [out_len, D] (on standardized values); its "accuracy" slot
carries the MAE, so ``eval_accuracy`` in the logs is the validation MAE.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from outeffhop.data import timeseries
from outeffhop.models import stanhop
from outeffhop.train.tasks import Task, _transformer


def num_series(cfg) -> int:
    """D: ``config.model.num_series``, or the data's variable count when it is 0."""
    if cfg.model.num_series:
        return cfg.model.num_series
    d = cfg.data
    series = timeseries.load_csv(d.path, d.date_column) if d.path else timeseries.load_epf_fr_be()
    return series.values.shape[1]


def model_config(cfg):
    """``config.model`` with ``num_series`` resolved from the data."""
    m = cfg.model.copy_and_resolve_references()
    m.num_series = num_series(cfg)
    return m


def build(cfg):
    return stanhop.build(model_config(cfg))


def init(model, rngs, batch):
    return model.init(rngs, batch["x"], deterministic=True)["params"]


def forecast_sums(pred, batch):
    """Weighted sums over the batch: (sum w * MSE_i, sum w, sum w * MAE_i); per-example
    errors are means over [out_len, D]."""
    err = pred.astype(jnp.float32) - batch["y"].astype(jnp.float32)
    w = batch["weight"].astype(jnp.float32)
    mse = jnp.mean(jnp.square(err), axis=(1, 2))
    mae = jnp.mean(jnp.abs(err), axis=(1, 2))
    return jnp.sum(w * mse), jnp.sum(w), jnp.sum(w * mae)


def loss(model, params, batch, rng, train):
    pred = model.apply(
        {"params": params}, batch["x"], deterministic=not train, rngs={"dropout": rng}
    )
    return forecast_sums(pred, batch)


def example_batch(cfg, n):
    d = num_series(cfg)
    return {
        "x": np.zeros((n, cfg.model.in_len, d), np.float32),
        "y": np.zeros((n, cfg.model.out_len, d), np.float32),
        "weight": np.ones((n,), np.float32),
    }


def train_iter(cfg, workdir, process_index, process_count):
    return _transformer.dataset_iter(cfg, workdir, process_index, process_count)


def eval_batches(cfg, workdir, process_index, process_count):
    return _transformer.eval_batches_of(cfg, workdir, process_index, process_count, "val")


def check(cfg) -> None:
    """Model and data windows must agree; the model config must be valid."""
    if cfg.data.get("name") != "timeseries":
        raise ValueError(f"config.data.name must be timeseries; got {cfg.data.get('name')!r}.")
    for m, d in (("in_len", "seq_len"), ("out_len", "pred_len")):
        if cfg.model[m] != cfg.data[d]:
            raise ValueError(
                f"config.model.{m} must equal config.data.{d} {cfg.data[d]}; got {cfg.model[m]}."
            )
    d = num_series(cfg)
    if cfg.model.num_series not in (0, d):
        raise ValueError(
            f"config.model.num_series must be 0 or the data's {d}; got {cfg.model.num_series}."
        )
    stanhop.check_config(model_config(cfg))


def task() -> Task:
    return Task(
        name="stanhop",
        build_model=build,
        init=init,
        loss=loss,
        example_batch=example_batch,
        train_iter=train_iter,
        eval_batches=eval_batches,
        tokens_per_example=lambda cfg: cfg.model.in_len,
        check=check,
        positive_fields=("model.d_model", "model.d_ff", "model.num_heads", "model.num_layers"),
        path_fields=("data.path",),
    )
