"""OPT for causal language modelling (pre-LN decoder), with pluggable attention."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from outeffhop.models import partitioning as pt
from outeffhop.models.bert import check_token_ids
from outeffhop.models.blocks import check_length, embed, layer_norm, layer_stack
from outeffhop.models.presets import check_config
from outeffhop.nn.dropout import Dropout, config_masks


class Opt(nn.Module):
    """input_ids [B, L] (+ attention_mask, segment_ids [B, L]) -> next-token logits [B, L, V].

    Word + learned position embeddings, dropout, ``num_layers`` causal pre-LN layers
    ``layer_{i}`` (``blocks.layer_stack``: remat, scan), ``final_ln``, and an lm head tied
    to the word embeddings. ``segment_ids`` (packed documents, 0 = padding) restricts
    attention to the query's own document.
    """

    config: Any

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, segment_ids=None, *, deterministic=True):
        cfg = self.config
        check_token_ids(input_ids)
        length = input_ids.shape[1]
        check_length(length, cfg)
        word = embed(cfg.vocab_size, cfg.d_model, ("vocab", "embed"), "word_embeddings", cfg)
        pos = embed(cfg.max_len, cfg.d_model, ("pos", "embed"), "position_embeddings", cfg)
        x = word(input_ids) + pos(jnp.arange(length))[None]
        x = Dropout(cfg.hidden_dropout, masks=config_masks(cfg))(x, deterministic=deterministic)
        mask = None
        if segment_ids is not None:
            check_token_ids(segment_ids, "segment_ids")
            mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
            if attention_mask is not None:
                mask = mask & attention_mask.astype(bool)[:, None, None, :]
        x = layer_stack(
            self, x, attention_mask, mask, pre_ln=True, is_causal=True, deterministic=deterministic
        )
        x = layer_norm("final_ln", cfg)(x)
        return pt.constrain(word.attend(x), pt.LOGITS)


INPUTS = ("input_ids", "attention_mask", "segment_ids")
_L = r"layer_\d+"
# Module sets (path regexes). "paper": residual layer outputs, fc2, out_proj, the layer norms
# and the final LayerNorm.
OUTLIER_MODULES = {
    "paper": (
        _L,
        rf"{_L}/ffn_out",
        rf"{_L}/attention/out_proj",
        rf"{_L}/(attention|ffn)_ln",
        "final_ln",
    ),
    "ffn": (rf"{_L}/ffn_out",),
    "layers": (_L,),
    "attention": (rf"{_L}/attention",),
}


def model_inputs(batch) -> dict:
    """The keyword inputs of ``Opt`` picked from a batch of the data pipeline."""
    return {k: batch[k] for k in INPUTS if batch.get(k) is not None}


def build(config) -> Opt:
    """``Opt`` for a model config, after ``check_config``."""
    check_config(config)
    return Opt(config=ml_collections.FrozenConfigDict(config))
