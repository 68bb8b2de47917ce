"""OPT for causal language modelling (pre-LN decoder), with pluggable attention."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from outeffhop.models.bert import check_token_ids
from outeffhop.models.blocks import TransformerLayer, check_length, embed, layer_norm
from outeffhop.models.dropout import Dropout, config_masks


class Opt(nn.Module):
    """input_ids [B, L] (+ attention_mask, segment_ids [B, L]) -> next-token logits [B, L, V].

    Word + learned position embeddings, dropout, ``num_layers`` causal pre-LN layers
    ``layer_{i}``, ``final_ln``, and an lm head tied to the word embeddings. ``segment_ids``
    (packed documents, 0 = padding) restricts attention to the query's own document.
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
        for i in range(cfg.num_layers):
            layer = TransformerLayer(cfg, pre_ln=True, is_causal=True, name=f"layer_{i}")
            x = layer(x, attention_mask, deterministic=deterministic, mask=mask)
        x = layer_norm("final_ln", cfg)(x)
        return word.attend(x)
