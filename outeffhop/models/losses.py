"""Losses of the three tasks on model logits and batches of the data pipelines.

Each returns ``(mean_loss, metrics)`` with metrics ``loss``, ``accuracy`` and ``num_tokens``
(the number of scored targets). Logits are upcast to float32.
"""

from __future__ import annotations

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


def masked_lm_loss(logits, batch):
    """MLM: logits [B, L, V]; batch["labels"] [B, L] (label < 0 = not scored)."""
    labels = batch["labels"]
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


def classification_loss(logits, batch):
    """Classification: logits [B, K]; batch["label"] [B]; optional batch["weight"] [B]."""
    labels = batch["label"]
    weights = batch.get("weight")
    weights = jnp.ones(labels.shape, jnp.float32) if weights is None else weights
    return token_cross_entropy(logits, labels, weights)


LOSSES: dict[str, Callable] = {
    "mlm": masked_lm_loss,
    "causal_lm": causal_lm_loss,
    "classification": classification_loss,
}


def loss_fn(config) -> Callable:
    """The loss of ``config.task`` (mlm, causal_lm or classification)."""
    if config.task not in LOSSES:
        raise ValueError(f"task must be one of {', '.join(LOSSES)}; got {config.task!r}.")
    return LOSSES[config.task]
