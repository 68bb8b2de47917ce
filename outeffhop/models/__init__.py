"""Models of the outlier study: BERT (MLM), OPT (causal LM), ViT (classification), STanHop-Net.

The folder is the registry: ``config.model`` names a module here (bert, opt, vit, stanhop)
that defines ``build(config)``, ``OUTLIER_MODULES`` and its inputs. Build:
``cfg = get_config("bert-tiny")`` (PRESETS), edit ``cfg`` (an ml_collections.ConfigDict;
``cfg.attention`` picks the normalizer softmax | softmax1 | clipped | clipped_softmax1 | sink
and the gate), then ``model = build_model(cfg)``; ``model.apply(variables,
**model_inputs(cfg, batch), deterministic=..., rngs={"dropout": key})`` gives logits and
``loss_fn(cfg)(logits, batch)`` the loss. ``cfg, variables = from_hf(folder)`` imports a
Hugging Face checkpoint (``to_hf`` exports; ``models.hf``). Parameters carry logical axis names
(LOGICAL_AXES); ``logical_axis_rules("dp" | "fsdp")`` maps them to a mesh.

Module names of the transformers (paths for ``capture_intermediates``; each captured value is
the module's ``__call__`` output):

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

Each model module's ``OUTLIER_MODULES`` holds its module sets as path regexes ("paper": the
set the papers report; "ffn", "layers", "attention"); ``outlier_modules(family, name)``
returns one and ``capture_filter(family)`` turns it into a ``capture_intermediates`` filter.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

from outeffhop.models.hf import from_hf, to_hf
from outeffhop.models.losses import (
    IGNORE,
    LOSSES,
    causal_lm_loss,
    classification_loss,
    loss_fn,
    masked_lm_loss,
)
from outeffhop.models.partitioning import LOGICAL_AXES, logical_axis_rules
from outeffhop.models.presets import PRESETS, check_config, get_config
from outeffhop.nn.attention import GATES, NORMALIZERS, attention_config

MODELS = ("bert", "opt", "vit", "stanhop")


def _module(family: str):
    if family not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {family!r}.")
    return importlib.import_module(f"outeffhop.models.{family}")


def build_model(config) -> nn.Module:
    """The Linen module for ``config.model`` (bert, opt, vit or stanhop), config checked."""
    return _module(config.get("model")).build(config)


def outlier_modules(family: str, name: str = "paper") -> tuple[str, ...]:
    """The path regexes of module set ``name`` of model ``family`` (its OUTLIER_MODULES)."""
    sets = _module(family).OUTLIER_MODULES
    if name not in sets:
        raise ValueError(f"module set of {family!r} must be one of {sorted(sets)}; got {name!r}.")
    return sets[name]


def model_inputs(config, batch) -> dict:
    """The model's keyword inputs picked from a batch dict (data pipeline keys)."""
    return _module(config.model).model_inputs(batch)


def dummy_inputs(config, batch_size: int = 2, seq_len: int | None = None) -> dict:
    """All-zero example inputs (for ``init`` / ``jax.eval_shape``)."""
    if config.model == "vit":
        s, c = config.image_size, config.num_channels
        return {"images": jnp.zeros((batch_size, s, s, c), jnp.float32)}
    if config.model == "stanhop":
        return {"x": jnp.zeros((batch_size, config.in_len, config.num_series), jnp.float32)}
    seq_len = min(config.max_len, 128) if seq_len is None else seq_len
    ids = jnp.zeros((batch_size, seq_len), jnp.int32)
    return {"input_ids": ids, "attention_mask": jnp.ones_like(ids)}


def capture_filter(model: str, patterns: tuple[str, ...] | None = None) -> Callable:
    """capture_intermediates filter keeping modules whose path fully matches a pattern."""
    if patterns is None:
        patterns = outlier_modules(model)
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
    "PRESETS",
    "attention_config",
    "build_model",
    "capture_filter",
    "causal_lm_loss",
    "check_config",
    "classification_loss",
    "dummy_inputs",
    "from_hf",
    "get_config",
    "logical_axis_rules",
    "loss_fn",
    "masked_lm_loss",
    "model_inputs",
    "outlier_modules",
    "to_hf",
]
