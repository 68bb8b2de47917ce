"""Transformer layer shared by BERT (post-LN), OPT and ViT (pre-LN), the layer stack (loop,
remat, scan) and parameter helpers."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.models import partitioning as pt
from outeffhop.nn.attention import INIT_STD, MultiHeadAttention, partitioned
from outeffhop.nn.dense import dense_dot_general
from outeffhop.nn.dropout import Dropout, config_masks


def gelu(x):
    """Exact GELU, ``x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`` (BERT's form).

    ``nn.gelu(approximate=False)`` writes it with ``erfc``, whose piecewise CPU expansion
    XLA duplicates into every fusion that reads the activation; ``erf`` is one rational
    polynomial. The two agree to 1e-6 (absolute) in value and slope.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


ACTIVATIONS = {
    "gelu": gelu,
    "gelu_tanh": lambda x: nn.gelu(x, approximate=True),
    "relu": nn.relu,
}


def dtypes(config) -> dict[str, Any]:
    """Compute and parameter dtypes of a model config as Flax keyword arguments."""
    return dict(dtype=jnp.dtype(config.dtype), param_dtype=jnp.dtype(config.param_dtype))


def dense(features: int, axes: tuple[str, str], name: str, config) -> nn.Dense:
    """nn.Dense with N(0, 0.02) kernel, zero bias, logical axes (in, out), CPU-shaped VJP."""
    return nn.Dense(
        features,
        name=name,
        dot_general=dense_dot_general,
        kernel_init=partitioned(nn.initializers.normal(INIT_STD), axes),
        bias_init=partitioned(nn.initializers.zeros, axes[1:]),
        **dtypes(config),
    )


def layer_norm(name: str, config) -> nn.LayerNorm:
    """LayerNorm over the model dimension with logically partitioned scale and bias."""
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps,
        name=name,
        scale_init=partitioned(nn.initializers.ones, ("embed",)),
        bias_init=partitioned(nn.initializers.zeros, ("embed",)),
        **dtypes(config),
    )


def embed(num: int, features: int, axes: tuple[str, str], name: str, config) -> nn.Embed:
    """nn.Embed with N(0, 0.02) table and logical axes."""
    return nn.Embed(
        num,
        features,
        name=name,
        embedding_init=partitioned(nn.initializers.normal(INIT_STD), axes),
        **dtypes(config),
    )


class TransformerLayer(nn.Module):
    """One attention + FFN layer; its output is the residual stream after the layer.

    post-LN (BERT): h = attention_ln(x + drop(attention(x)));
                    y = output_ln(h + drop(ffn_out(act(ffn_in(h))))).
    pre-LN (OPT, ViT): h = x + drop(attention(attention_ln(x)));
                       y = h + drop(ffn_out(act(ffn_in(ffn_ln(h))))).
    ``deterministic`` as an attribute (not None) overrides the call's (for remat and scan,
    which trace their arguments); ``scanned`` returns ``(y, None)``, the nn.scan carry form.
    """

    config: Any
    pre_ln: bool
    is_causal: bool = False
    deterministic: bool | None = None
    scanned: bool = False

    @nn.compact
    def __call__(self, x, mask_BL=None, mask=None, *, deterministic=True):
        cfg = self.config
        if self.deterministic is not None:
            deterministic = self.deterministic
        x = pt.constrain(x, pt.RESIDUAL)
        drop = Dropout(cfg.hidden_dropout, masks=config_masks(cfg))
        attention = MultiHeadAttention(
            cfg.num_heads,
            cfg.attention,
            dropout_rate=cfg.attention_dropout,
            dropout_masks=config_masks(cfg),
            name="attention",
            **dtypes(cfg),
        )
        attend = dict(is_causal=self.is_causal, deterministic=deterministic, mask=mask)
        act = ACTIVATIONS[cfg.activation]
        if self.pre_ln:
            h = x + drop(
                attention(layer_norm("attention_ln", cfg)(x), mask_BL, **attend),
                deterministic=deterministic,
            )
            y = layer_norm("ffn_ln", cfg)(h)
        else:
            h = layer_norm("attention_ln", cfg)(
                x + drop(attention(x, mask_BL, **attend), deterministic=deterministic)
            )
            y = h
        y = pt.constrain(act(dense(cfg.d_ff, ("embed", "mlp"), "ffn_in", cfg)(y)), pt.FFN_HIDDEN)
        y = drop(
            dense(cfg.d_model, ("mlp", "embed"), "ffn_out", cfg)(y), deterministic=deterministic
        )
        y = h + y if self.pre_ln else layer_norm("output_ln", cfg)(h + y)
        y = pt.constrain(y, pt.RESIDUAL)
        return (y, None) if self.scanned else y


REMAT_POLICIES = (
    "nothing_saveable",
    "everything_saveable",
    "dots_saveable",
    "checkpoint_dots",
    "dots_with_no_batch_dims_saveable",
    "checkpoint_dots_with_no_batch_dims",
)
REMAT = ("none", "block", *REMAT_POLICIES)


def check_stack_config(cfg) -> None:
    """Raises ValueError unless ``cfg.remat`` is one of REMAT and ``cfg.scan_layers`` a bool."""
    remat = cfg.get("remat", "none")
    if remat not in REMAT:
        raise ValueError(f"remat must be one of {', '.join(REMAT)}; got {remat!r}.")
    if not isinstance(cfg.get("scan_layers", False), bool):
        raise ValueError(f"scan_layers must be True or False; got {cfg.scan_layers!r}.")


def _layer_class(cfg, scan: bool):
    """TransformerLayer, wrapped in nn.remat as ``cfg.remat`` asks."""
    remat = cfg.get("remat", "none")
    if remat == "none":
        return TransformerLayer
    policy = None if remat == "block" else getattr(jax.checkpoint_policies, remat)
    return nn.remat(TransformerLayer, policy=policy, prevent_cse=not scan)


def layer_stack(parent, x, mask_BL=None, mask=None, *, pre_ln, is_causal=False, deterministic):
    """``cfg.num_layers`` layers ``layer_{i}`` over x [B, L, D] (inside ``parent``'s call).

    ``cfg.remat``: none | block (jax.checkpoint of each layer: only its input is kept for the
    backward pass) | a ``jax.checkpoint_policies`` name. ``cfg.scan_layers``: one nn.scan
    over the layers, params stacked as ``layers/...`` [num_layers, ...] (logical axis
    ``layers``; ``stack_layers`` / ``unstack_layers`` convert); outlier capture
    (``capture_intermediates``) needs the unscanned model.
    """
    cfg = parent.config
    scan = cfg.get("scan_layers", False)
    cls = _layer_class(cfg, scan)
    common = dict(pre_ln=pre_ln, is_causal=is_causal, deterministic=deterministic)
    if not scan:
        for i in range(cfg.num_layers):
            x = cls(cfg, **common, name=f"layer_{i}")(x, mask_BL, mask)
        return x
    if parent.is_mutable_collection("intermediates"):
        raise ValueError(
            "model.scan_layers=True does not support capture_intermediates (outlier "
            "capture): build the model with scan_layers=False and convert the params with "
            "outeffhop.models.blocks.unstack_layers."
        )
    stack = nn.scan(
        cls,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast),
        length=cfg.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    x, _ = stack(cfg, **common, scanned=True, name="layers")(x, mask_BL, mask)
    return x


def stack_layers(params: dict, num_layers: int) -> dict:
    """Params of the unscanned model (``layer_{i}``) -> the scanned layout (``layers``)."""
    layers = [params[f"layer_{i}"] for i in range(num_layers)]
    out = {k: v for k, v in params.items() if not k.startswith("layer_")}
    out["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    return out


def unstack_layers(params: dict) -> dict:
    """Params of the scanned model (``layers`` [N, ...]) -> the unscanned ``layer_{i}``."""
    out = {k: v for k, v in params.items() if k != "layers"}
    n = jax.tree.leaves(params["layers"])[0].shape[0]
    for i in range(n):
        out[f"layer_{i}"] = jax.tree.map(lambda x, i=i: x[i], params["layers"])
    return out


def check_length(length: int, config) -> None:
    """Raises ValueError when a sequence is longer than the position table."""
    if length > config.max_len:
        raise ValueError(
            f"sequence length {length} exceeds the position table: max_len={config.max_len}."
        )
