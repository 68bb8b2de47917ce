"""Vision Transformer for image classification (pre-LN), with pluggable attention."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from outeffhop.models.blocks import TransformerLayer, dense, dtypes, layer_norm
from outeffhop.models.presets import check_config
from outeffhop.nn.attention import INIT_STD, partitioned
from outeffhop.nn.dropout import Dropout, config_masks


class ViT(nn.Module):
    """images [B, S, S, C] -> class logits [B, num_classes] read from the CLS token.

    ``patch_embedding`` (conv, stride = patch_size), CLS token ``cls``, learned
    ``position_embeddings`` [1, 1 + (S/p)^2, D], dropout, pre-LN layers ``layer_{i}``,
    ``final_ln`` and a linear ``head``.
    """

    config: Any

    @nn.compact
    def __call__(self, images, *, deterministic=True):
        cfg = self.config
        expected = (cfg.image_size, cfg.image_size, cfg.num_channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be [B, {expected[0]}, {expected[1]}, {expected[2]}] "
                f"(image_size={cfg.image_size}, num_channels={cfg.num_channels}); "
                f"got shape {images.shape}."
            )
        p, d = cfg.patch_size, cfg.d_model
        x = nn.Conv(
            d,
            (p, p),
            strides=(p, p),
            padding="VALID",
            name="patch_embedding",
            kernel_init=partitioned(nn.initializers.lecun_normal(), (None, None, None, "embed")),
            bias_init=partitioned(nn.initializers.zeros, ("embed",)),
            **dtypes(cfg),
        )(images.astype(dtypes(cfg)["dtype"]))
        b = x.shape[0]
        x = x.reshape(b, -1, d)
        param_dtype = dtypes(cfg)["param_dtype"]
        cls = self.param(
            "cls", partitioned(nn.initializers.zeros, (None, None, "embed")), (1, 1, d), param_dtype
        )
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
        pos = self.param(
            "position_embeddings",
            partitioned(nn.initializers.normal(INIT_STD), (None, "pos", "embed")),
            (1, x.shape[1], d),
            param_dtype,
        )
        x = Dropout(cfg.hidden_dropout, masks=config_masks(cfg))(
            x + pos.astype(x.dtype), deterministic=deterministic
        )
        for i in range(cfg.num_layers):
            x = TransformerLayer(cfg, pre_ln=True, name=f"layer_{i}")(
                x, deterministic=deterministic
            )
        x = layer_norm("final_ln", cfg)(x)
        return dense(cfg.num_classes, ("embed", "classes"), "head", cfg)(x[:, 0])


_L = r"layer_\d+"
# Module sets (path regexes). "paper": every module output but attention internals
# (query / key / value / gate).
OUTLIER_MODULES = {
    "paper": (
        "patch_embedding",
        _L,
        rf"{_L}/(attention_ln|ffn_ln|ffn_in|ffn_out)",
        rf"{_L}/attention/out_proj",
        "final_ln",
    ),
    "ffn": (rf"{_L}/ffn_out",),
    "layers": (_L,),
    "attention": (rf"{_L}/attention",),
}
OUTLIER_MODULES["official"] = OUTLIER_MODULES["paper"]
# The official protocol for ViT is the OPT recipe for a pre-LN block, the classifier head in
# float32 like the LM heads (by analogy: OutEffHop's ViT validation quantizes with
# optimum-quanto float8 instead, so there is no int8 reference to follow; docs/references.md).
OFFICIAL_PROTOCOL = dict(
    sites=(
        ("Conv", "patch_embedding", "__call__", "output"),
        ("TransformerLayer", "layer_0", "__call__", "input"),
        ("TransformerLayer", _L, "__call__", "output"),
        ("LayerNorm", rf"{_L}/ffn_ln", "__call__", "input"),
        ("LayerNorm", rf"{_L}/(attention_ln|ffn_ln)|final_ln", "__call__", "output"),
        (
            "Dense",
            rf"{_L}/attention/(query|key|value|out_proj)|{_L}/ffn_out",
            "__call__",
            "output",
        ),
        ("Dense", rf"{_L}/attention/out_proj|{_L}/ffn_out", "__call__", "input"),
        ("AttentionProbe", r".*/(scores|weights)", "__call__", "output"),
    ),
    weight_names=("kernel", "scale"),
    weight_exclude=(r".*/gate/.*", r"head/.*"),
    estimator="running_minmax",
    num_calib=16,
    calib_split="train",
    kurtosis_batches=257,
    reported=("ffn", "layers"),
)


def model_inputs(batch) -> dict:
    """``{"images": ...}`` from a batch with an ``image`` (or ``images``) entry."""
    return {"images": batch["image"] if "image" in batch else batch["images"]}


def build(config) -> ViT:
    """``ViT`` for a model config, after ``check_config``."""
    check_config(config)
    return ViT(config=ml_collections.FrozenConfigDict(config))
