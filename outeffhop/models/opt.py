"""OPT for causal language modelling (pre-LN decoder), with pluggable attention."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from outeffhop.models.bert import check_token_ids
from outeffhop.models.blocks import TransformerLayer, check_length, embed, layer_norm
from outeffhop.models.presets import check_config
from outeffhop.nn.dropout import Dropout, config_masks


def positions_from_mask(attention_mask_BL):
    """Token positions [B, L]: p_t = (sum_{s <= t} m_s) - 1 at real tokens, p_t = t at padding.

    At real tokens this is HF's rule: they count from 0 whichever side the padding is on
    (a left-padded row starts at 0 at its first real token), so each real token sees the
    position it has in its unpadded sequence. Padding slots (never scored, masked as keys)
    keep their index, so right-padded rows get ``arange(L)`` exactly as before.
    """
    m = attention_mask_BL.astype(jnp.int32)
    return jnp.where(m > 0, jnp.cumsum(m, axis=1) - 1, jnp.arange(m.shape[1]))


class Opt(nn.Module):
    """input_ids [B, L] (+ attention_mask, segment_ids, position_ids [B, L]) -> logits [B, L, V].

    Word + learned position embeddings, dropout, ``num_layers`` causal pre-LN layers
    ``layer_{i}``, ``final_ln``, and an lm head tied to the word embeddings. ``segment_ids``
    (packed documents, 0 = padding) restricts attention to the query's own document.

    Positions: ``position_ids`` when given, else ``positions_from_mask(attention_mask)``
    (HF's rule, so left-padded batches give each real token its unpadded position), else
    ``arange(L)``. Token t reads table row ``position_ids[t] + position_offset`` (clipped at
    0): HF's OPT checkpoints keep 2 rows before position 0 (HF reads row 1 at padding), so an
    imported model has ``position_offset = 2`` and ``max_len + 2`` rows.
    """

    config: Any

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        segment_ids=None,
        position_ids=None,
        *,
        deterministic=True,
    ):
        cfg = self.config
        check_token_ids(input_ids)
        length = input_ids.shape[1]
        check_length(length, cfg)
        offset = cfg.get("position_offset", 0)
        word = embed(cfg.vocab_size, cfg.d_model, ("vocab", "embed"), "word_embeddings", cfg)
        pos = embed(cfg.max_len + offset, cfg.d_model, ("pos", "embed"), "position_embeddings", cfg)
        if position_ids is None:
            if attention_mask is None:
                position_ids = jnp.arange(length)[None]
            else:
                position_ids = positions_from_mask(attention_mask)
        else:
            check_token_ids(position_ids, "position_ids")
        x = word(input_ids) + pos(jnp.maximum(position_ids + offset, 0))
        x = Dropout(cfg.hidden_dropout, masks=config_masks(cfg))(x, deterministic=deterministic)
        mask = None
        if segment_ids is not None:
            check_token_ids(segment_ids, "segment_ids")
            mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
            if attention_mask is not None:
                mask = mask & attention_mask.astype(bool)[:, None, None, :]
        for i in range(cfg.num_layers):
            layer = TransformerLayer(cfg, pre_ln=True, is_causal=True, name=f"layer_{i}")
            x = layer(x, attention_mask, deterministic=deterministic, mask=mask)
        x = layer_norm("final_ln", cfg)(x)
        return word.attend(x)


INPUTS = ("input_ids", "attention_mask", "segment_ids", "position_ids")
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
