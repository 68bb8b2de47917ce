"""Transformer models of the outlier study: BERT (MLM), OPT (causal LM), ViT (classification).

Build: ``cfg = get_config("bert-tiny")`` (PRESETS: bert-base, bert-tiny, opt-125m, opt-tiny,
vit-s/16, vit-tiny), edit ``cfg`` (an ml_collections.ConfigDict; ``cfg.attention`` picks
the normalizer softmax | softmax1 | clipped | clipped_softmax1 | sink and the gate), then
``model = build_model(cfg)``; ``model.apply(variables, **model_inputs(cfg, batch),
deterministic=..., rngs={"dropout": key})`` gives logits and ``loss_fn(cfg)(logits, batch)``
the loss. Parameters carry logical axis names (LOGICAL_AXES); ``logical_axis_rules("dp" |
"fsdp")`` maps them to a mesh.

Module names (paths for ``capture_intermediates``; each captured value is the module's
``__call__`` output):

| path | what | models |
|---|---|---|
| ``layer_{i}`` | residual stream after layer i (the layer output) | all |
| ``layer_{i}/attention`` | attention block output (== its out_proj output) | all |
| ``layer_{i}/attention/{query,key,value}`` | projections | all |
| ``layer_{i}/attention/out_proj`` | attention output projection | all |
| ``layer_{i}/attention/gate`` | head gate values in (0, 1) | gated |
| ``layer_{i}/attention_ln`` | BERT: post-LN after attention residual; else pre-LN | all |
| ``layer_{i}/ffn_ln`` | pre-LN before the FFN | OPT, ViT |
| ``layer_{i}/ffn_in``, ``layer_{i}/ffn_out`` | FFN dense in / out ("FFN output", fc2) | all |
| ``layer_{i}/output_ln`` | BERT output LayerNorm (== the layer output) | BERT |
| ``embeddings_ln``, ``mlm_dense``, ``mlm_ln`` | BERT embedding LN and MLM head | BERT |
| ``word_embeddings``, ``position_embeddings`` | token / position tables | BERT, OPT |
| ``final_ln`` | final LayerNorm | OPT, ViT |
| ``patch_embedding``, ``head`` | ViT patch conv and classifier | ViT |

OUTLIER_MODULES holds the papers' module sets as path regexes; ``capture_filter(model)``
turns one into a ``capture_intermediates`` filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from outeffhop.models.attention_block import (
    GATES,
    NORMALIZERS,
    HeadGate,
    MultiHeadAttention,
    attention_config,
    sink_attention,
    sink_weights,
)
from outeffhop.models.bert import Bert
from outeffhop.models.losses import (
    IGNORE,
    LOSSES,
    causal_lm_loss,
    classification_loss,
    loss_fn,
    masked_lm_loss,
)
from outeffhop.models.opt import Opt
from outeffhop.models.partitioning import LOGICAL_AXES, logical_axis_rules
from outeffhop.models.presets import MODELS, PRESETS, check_config, get_config
from outeffhop.models.vit import ViT

_CLASSES = {"bert": Bert, "opt": Opt, "vit": ViT}
_INPUTS = {
    "bert": ("input_ids", "attention_mask", "token_type_ids"),
    "opt": ("input_ids", "attention_mask", "segment_ids"),
}
_L = r"layer_\d+"
OUTLIER_MODULES = {
    # Bondarenko et al.: BERT FFN output dense + output LayerNorm of every layer.
    "bert": (rf"{_L}/ffn_out", rf"{_L}/output_ln"),
    # OPT: residual layer outputs, fc2, out_proj, the layer norms, the final LayerNorm.
    "opt": (
        _L,
        rf"{_L}/ffn_out",
        rf"{_L}/attention/out_proj",
        rf"{_L}/(attention|ffn)_ln",
        "final_ln",
    ),
    # ViT: everything but attention internals (query/key/value/gate).
    "vit": (
        "patch_embedding",
        _L,
        rf"{_L}/(attention_ln|ffn_ln|ffn_in|ffn_out)",
        rf"{_L}/attention/out_proj",
        "final_ln",
    ),
}


def build_model(config) -> nn.Module:
    """The Linen module for ``config.model`` (bert, opt or vit), after checking the config."""
    check_config(config)
    return _CLASSES[config.model](config=ml_collections.FrozenConfigDict(config))


def model_inputs(config, batch) -> dict:
    """The model's keyword inputs picked from a batch dict (data pipeline keys)."""
    if config.model == "vit":
        images = batch["image"] if "image" in batch else batch["images"]
        return {"images": images}
    return {k: batch[k] for k in _INPUTS[config.model] if batch.get(k) is not None}


def dummy_inputs(config, batch_size: int = 2, seq_len: int | None = None) -> dict:
    """All-zero example inputs (for ``init`` / ``jax.eval_shape``)."""
    if config.model == "vit":
        s, c = config.image_size, config.num_channels
        return {"images": jnp.zeros((batch_size, s, s, c), jnp.float32)}
    seq_len = min(config.max_len, 128) if seq_len is None else seq_len
    ids = jnp.zeros((batch_size, seq_len), jnp.int32)
    return {"input_ids": ids, "attention_mask": jnp.ones_like(ids)}


def capture_filter(model: str, patterns: tuple[str, ...] | None = None) -> Callable:
    """capture_intermediates filter keeping modules whose path fully matches a pattern."""
    if patterns is None:
        if model not in OUTLIER_MODULES:
            raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}.")
        patterns = OUTLIER_MODULES[model]
    regex = re.compile("|".join(f"(?:{p})" for p in patterns))

    def keep(module: nn.Module, method_name: str) -> bool:
        return method_name == "__call__" and regex.fullmatch("/".join(module.path)) is not None

    return keep


__all__ = [
    "GATES",
    "IGNORE",
    "LOGICAL_AXES",
    "LOSSES",
    "MODELS",
    "NORMALIZERS",
    "OUTLIER_MODULES",
    "PRESETS",
    "Bert",
    "HeadGate",
    "MultiHeadAttention",
    "Opt",
    "ViT",
    "attention_config",
    "build_model",
    "capture_filter",
    "causal_lm_loss",
    "check_config",
    "classification_loss",
    "dummy_inputs",
    "get_config",
    "logical_axis_rules",
    "loss_fn",
    "masked_lm_loss",
    "model_inputs",
    "sink_attention",
    "sink_weights",
]
