"""BERT for masked language modelling (post-LN), with pluggable attention."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from outeffhop.models import partitioning as pt
from outeffhop.models.blocks import (
    ACTIVATIONS,
    check_length,
    dense,
    dtypes,
    embed,
    layer_norm,
    layer_stack,
)
from outeffhop.models.presets import check_config
from outeffhop.nn.attention import partitioned
from outeffhop.nn.dropout import Dropout, config_masks


def check_token_ids(input_ids, name: str = "input_ids") -> None:
    """Raises ValueError unless ``input_ids`` is an integer [B, L] array."""
    if input_ids.ndim != 2 or not jnp.issubdtype(input_ids.dtype, jnp.integer):
        raise ValueError(
            f"{name} must be an integer array [B, L]; got {input_ids.dtype} {input_ids.shape}."
        )


def check_masked_positions(masked_positions, input_ids) -> None:
    """Raises ValueError unless ``masked_positions`` is an integer [B, K] array, B of input_ids."""
    if (
        masked_positions.ndim != 2
        or not jnp.issubdtype(masked_positions.dtype, jnp.integer)
        or masked_positions.shape[0] != input_ids.shape[0]
    ):
        raise ValueError(
            f"masked_positions must be an integer array [B, K] with B = {input_ids.shape[0]}; "
            f"got {masked_positions.dtype} {masked_positions.shape}."
        )


def gather_positions(x, positions):
    """x [B, L, D], positions int [B, K] -> x[b, positions[b, k]] as [B, K, D]."""
    return jnp.take_along_axis(x, positions[..., None], axis=1)


class Bert(nn.Module):
    """input_ids [B, L] (+ attention_mask, token_type_ids [B, L]) -> MLM logits [B, L, V].

    Embeddings (word + position + token type, LayerNorm, dropout), ``num_layers`` post-LN
    layers ``layer_{i}`` (``blocks.layer_stack``: remat, scan), and the MLM head:
    mlm_dense -> GELU -> mlm_ln -> tied decoder + bias.
    With ``masked_positions`` int [B, K] the head runs only on the hidden states at those
    positions (as Google's BERT does) and the logits are [B, K, V]: row b, slot k is position
    ``masked_positions[b, k]``.
    """

    config: Any

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        masked_positions=None,
        *,
        deterministic=True,
    ):
        cfg = self.config
        check_token_ids(input_ids)
        if masked_positions is not None:
            check_masked_positions(masked_positions, input_ids)
        length = input_ids.shape[1]
        check_length(length, cfg)
        word = embed(cfg.vocab_size, cfg.d_model, ("vocab", "embed"), "word_embeddings", cfg)
        pos = embed(cfg.max_len, cfg.d_model, ("pos", "embed"), "position_embeddings", cfg)
        x = word(input_ids) + pos(jnp.arange(length))[None]
        if cfg.type_vocab_size:
            if token_type_ids is None:
                token_type_ids = jnp.zeros_like(input_ids)
            types = embed(
                cfg.type_vocab_size,
                cfg.d_model,
                ("type_vocab", "embed"),
                "token_type_embeddings",
                cfg,
            )
            x = x + types(token_type_ids)
        x = layer_norm("embeddings_ln", cfg)(x)
        x = Dropout(cfg.hidden_dropout, masks=config_masks(cfg))(x, deterministic=deterministic)
        x = layer_stack(self, x, attention_mask, pre_ln=False, deterministic=deterministic)
        if masked_positions is not None:
            x = gather_positions(x, masked_positions)
        x = ACTIVATIONS[cfg.activation](
            dense(cfg.d_model, ("embed", "hidden"), "mlm_dense", cfg)(x)
        )
        x = layer_norm("mlm_ln", cfg)(x)
        bias = self.param(
            "mlm_bias",
            partitioned(nn.initializers.zeros, ("vocab",)),
            (cfg.vocab_size,),
            dtypes(cfg)["param_dtype"],
        )
        return pt.constrain(word.attend(x) + bias.astype(x.dtype), pt.LOGITS)


INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_L = r"layer_\d+"
# Module sets (path regexes). "paper": Bondarenko et al.'s BERT set, the FFN output dense and
# the output LayerNorm of every layer.
OUTLIER_MODULES = {
    "paper": (rf"{_L}/ffn_out", rf"{_L}/output_ln"),
    "ffn": (rf"{_L}/ffn_out",),
    "layers": (rf"{_L}/output_ln",),
    "attention": (rf"{_L}/attention",),
}


def model_inputs(batch) -> dict:
    """The keyword inputs of ``Bert`` picked from a batch of the data pipeline."""
    return {k: batch[k] for k in INPUTS if batch.get(k) is not None}


def build(config) -> Bert:
    """``Bert`` for a model config, after ``check_config``."""
    check_config(config)
    return Bert(config=ml_collections.FrozenConfigDict(config))
