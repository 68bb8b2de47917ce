"""Shared parts of the transformer tasks: BERT (MLM), OPT (causal LM), ViT (classification).

``config.model`` is a ``models.get_config(preset)`` ConfigDict, ``config.data`` a
``data.get_data_config(...)`` one; ``config.batch_size`` overrides ``data.batch_size``.
"""

from __future__ import annotations

import jax
import numpy as np

from outeffhop import data, models
from outeffhop.models import losses
from outeffhop.train.tasks import Task


def _loss(model, params, batch, rng, train, masked_positions=None):
    """Sums for the trainer from the model's mean loss: mean * n scored targets."""
    extra = {} if masked_positions is None else {"masked_positions": masked_positions}
    logits = model.apply(
        {"params": params},
        **models.model_inputs(model.config, batch),
        **extra,
        deterministic=not train,
        rngs={"dropout": rng},
    )
    mean, m = models.loss_fn(model.config)(logits, {**batch, **extra})
    n = m["num_tokens"]
    return mean * n, n, m["accuracy"] * n


def _mlm_loss(model, params, batch, rng, train):
    """``_loss`` with BERT's MLM head run only at the scored positions (Google's BERT).

    K = ``losses.mlm_prediction_cap(L)`` head positions per row (static: 36 of 128 for
    p = 0.15), taken from the labels inside the jitted step; a batch with a row of more than
    K scored tokens takes the full-head branch of a ``lax.cond`` instead, so the loss, the
    accuracy and the gradients always equal the full head's (no scored token is dropped).
    Batches that carry their own ``masked_positions`` [B, K] use them as given.
    """
    if batch.get("masked_positions") is not None:
        return _loss(model, params, batch, rng, train, batch["masked_positions"])
    labels = batch["labels"]
    k = losses.mlm_prediction_cap(labels.shape[1])
    if k >= labels.shape[1]:
        return _loss(model, params, batch, rng, train)
    positions, overflow = losses.masked_positions_from_labels(labels, k)
    return jax.lax.cond(
        overflow,
        lambda: _loss(model, params, batch, rng, train),
        lambda: _loss(model, params, batch, rng, train, positions),
    )


def _init(model, rngs, batch):
    """Boxed (logically partitioned) params; the trainer unboxes them."""
    inputs = models.model_inputs(model.config, batch)
    return model.init(rngs, **inputs, deterministic=True)["params"]


def dataset_iter(cfg, workdir, process_index, process_count, split="train"):
    """An iterator over this process's shard of ``split`` (checkpointable grain iterator)."""
    ds, _ = data.make_dataset(
        cfg,
        split,
        workdir=workdir,
        process_index=process_index,
        process_count=process_count,
        batch_size=cfg.batch_size,
    )
    return iter(ds)


def eval_batches_of(cfg, workdir, process_index, process_count, split="eval"):
    """The first ``cfg.eval_steps`` batches of ``split`` (fewer if the split is shorter)."""
    it = dataset_iter(cfg, workdir, process_index, process_count, split)
    return [b for _, b in zip(range(cfg.eval_steps), it, strict=False)]


def _train_iter(cfg, workdir, process_index, process_count):
    return dataset_iter(cfg, workdir, process_index, process_count)


def _eval_batches(cfg, workdir, process_index, process_count):
    return eval_batches_of(cfg, workdir, process_index, process_count)


def _text_example(cfg, n):
    ids = models.dummy_inputs(cfg.model, batch_size=n, seq_len=cfg.data.seq_len)
    return {**ids, "labels": ids["input_ids"]}


def _check_text(cfg):
    if cfg.model.vocab_size < cfg.data.vocab_size:
        raise ValueError(
            f"config.model.vocab_size must be >= config.data.vocab_size "
            f"{cfg.data.vocab_size}; got {cfg.model.vocab_size}."
        )
    if cfg.data.seq_len > cfg.model.max_len:
        raise ValueError(
            f"config.data.seq_len must be <= config.model.max_len {cfg.model.max_len}; "
            f"got {cfg.data.seq_len}."
        )


def _check_image(cfg):
    for field in ("image_size",):
        if cfg.data[field] != cfg.model[field]:
            raise ValueError(
                f"config.data.{field} must equal config.model.{field} {cfg.model[field]}; "
                f"got {cfg.data[field]}."
            )


_MODEL_SIZES = ("model.num_layers", "model.d_model", "model.num_heads", "model.d_ff")
_TEXT_SIZES = ("model.vocab_size", "model.max_len", "data.vocab_size", "data.seq_len")


def _rules(parallelism, model_axis=None):
    return models.logical_axis_rules(parallelism, "data", model_axis)


def _build(cfg):
    return models.build_model(cfg.model)


def text_task(name: str) -> Task:
    """The bert (MLM, gathered head) or opt (causal LM) task."""
    return Task(
        name=name,
        build_model=_build,
        init=_init,
        loss=_mlm_loss if name == "bert" else _loss,
        example_batch=_text_example,
        train_iter=_train_iter,
        eval_batches=_eval_batches,
        tokens_per_example=lambda cfg: cfg.data.seq_len,
        logical_rules=_rules,
        check=_check_text,
        positive_fields=_MODEL_SIZES + _TEXT_SIZES,
        path_fields=("data.path",),
    )


def _image_example(cfg, n):
    images = models.dummy_inputs(cfg.model, batch_size=n)["images"]
    return {"image": images, "label": np.zeros((n,), np.int32)}


def vit_task() -> Task:
    return Task(
        name="vit",
        build_model=_build,
        init=_init,
        loss=_loss,
        example_batch=_image_example,
        train_iter=_train_iter,
        eval_batches=_eval_batches,
        tokens_per_example=lambda cfg: (cfg.model.image_size // cfg.model.patch_size) ** 2 + 1,
        logical_rules=_rules,
        check=_check_image,
        positive_fields=_MODEL_SIZES + ("model.image_size", "model.patch_size", "data.image_size"),
        path_fields=("data.path",),
    )
