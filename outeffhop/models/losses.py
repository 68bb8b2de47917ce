"""Losses of the three tasks on model logits and batches of the data pipelines.

Each returns ``(mean_loss, metrics)`` with metrics ``loss``, ``accuracy`` and ``num_tokens``
(the number of scored targets). Logits are upcast to float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

IGNORE = -100  # label value of unscored positions (HF convention)


@jax.jit
def token_cross_entropy(logits, targets, weights) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted mean of -log softmax(logits)[target]; logits [..., V], targets/weights [...]."""
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    safe = jnp.where(weights > 0, targets, 0)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    n = jnp.sum(weights)
    denom = jnp.maximum(n, 1.0)
    loss = jnp.sum(nll * weights) / denom
    correct = (jnp.argmax(logits, axis=-1) == safe).astype(jnp.float32)
    return loss, {"loss": loss, "accuracy": jnp.sum(correct * weights) / denom, "num_tokens": n}


def mlm_prediction_cap(seq_len: int, mask_prob: float = 0.15, sigmas: float = 4.0) -> int:
    """Static number K of head positions per row: min(L, ceil(p L + sigmas sqrt(L p (1 - p)))).

    With each of L positions scored independently with probability p (the data pipeline's
    masking), a row exceeds K with probability ~3e-5 at 4 sigmas; callers must then fall back
    to the full head (``train.tasks._transformer`` does, so no scored token is ever dropped).
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer; got {seq_len}.")
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1]; got {mask_prob}.")
    mean, std = seq_len * mask_prob, math.sqrt(seq_len * mask_prob * (1.0 - mask_prob))
    return max(1, min(seq_len, math.ceil(mean + sigmas * std)))


def masked_positions_from_labels(labels, k: int) -> tuple[jax.Array, jax.Array]:
    """labels int [B, L] (label < 0 = not scored) -> (positions int32 [B, K], overflow bool []).

    Row b lists its scored positions in increasing order, then unscored ones (whose labels
    gathered by ``masked_lm_loss`` are < 0, so they get weight 0); overflow is True when some
    row has more than K scored positions (those beyond K are not in ``positions``).
    """
    scored = labels >= 0
    order = jnp.argsort(~scored, axis=1, stable=True)[:, :k].astype(jnp.int32)
    return order, jnp.max(jnp.sum(scored, axis=1)) > k


def masked_lm_loss(logits, batch):
    """MLM: logits [B, L, V]; batch["labels"] [B, L] (label < 0 = not scored).

    With batch["masked_positions"] int [B, K], K < L, and logits [B, K, V] (the model's head
    run only there), slot k of row b is scored against labels[b, masked_positions[b, k]];
    every scored position must appear once and padding slots must point at unscored
    positions (as ``masked_positions_from_labels`` builds them). Full-head logits [B, L, V]
    are scored against the labels as they are, whatever the batch carries.
    """
    labels = batch["labels"]
    positions = batch.get("masked_positions")
    if positions is not None and logits.shape[1] != labels.shape[1]:
        labels = jnp.take_along_axis(labels, batch["masked_positions"], axis=1)
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits must be [B, L, V] (or [B, K, V] with masked_positions [B, K]) matching "
            f"labels {labels.shape}; got {logits.shape}."
        )
    return token_cross_entropy(logits, labels, labels >= 0)


def causal_lm_loss(logits, batch):
    """Causal LM: logits [B, L, V] at position t predict token t + 1.

    With batch["labels"] (already shifted: labels[:, t] is the token after input_ids[:, t],
    label < 0 = not scored) every position is scored against it; otherwise the targets are
    input_ids[:, 1:], masked by attention_mask[:, 1:] when given.
    """
    if "labels" in batch:
        labels = batch["labels"]
        return token_cross_entropy(logits, labels, labels >= 0)
    ids = batch["input_ids"]
    weights = jnp.ones(ids[:, 1:].shape, bool)
    if batch.get("attention_mask") is not None:
        weights = batch["attention_mask"][:, 1:].astype(bool)
    return token_cross_entropy(logits[:, :-1], ids[:, 1:], weights)


@jax.jit
def soft_cross_entropy(logits, probs, labels, weights) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted mean of -sum_k probs[..., k] log softmax(logits)[..., k]; logits/probs
    [..., K], labels/weights [...]. Accuracy is argmax(logits) == labels (the hard label)."""
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    nll = optax.softmax_cross_entropy(logits, probs.astype(jnp.float32))
    n = jnp.sum(weights)
    denom = jnp.maximum(n, 1.0)
    loss = jnp.sum(nll * weights) / denom
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return loss, {"loss": loss, "accuracy": jnp.sum(correct * weights) / denom, "num_tokens": n}


def classification_loss(logits, batch):
    """Classification: logits [B, K]; batch["label"] [B]; optional batch["weight"] [B].

    With batch["label_probs"] [B, K] (mixup / cutmix / label smoothing) the target is that
    distribution (``soft_cross_entropy``); without it, the hard label as before.
    """
    labels = batch["label"]
    weights = batch.get("weight")
    weights = jnp.ones(labels.shape, jnp.float32) if weights is None else weights
    if batch.get("label_probs") is not None:
        return soft_cross_entropy(logits, batch["label_probs"], labels, weights)
    return token_cross_entropy(logits, labels, weights)


LOSSES: dict[str, Callable] = {
    "mlm": masked_lm_loss,
    "causal_lm": causal_lm_loss,
    "classification": classification_loss,
}


def loss_fn(config) -> Callable:
    """The loss of ``config.objective`` (mlm, causal_lm or classification)."""
    objective = config.get("objective")
    if objective not in LOSSES:
        raise ValueError(f"objective must be one of {', '.join(LOSSES)}; got {objective!r}.")
    return LOSSES[objective]
