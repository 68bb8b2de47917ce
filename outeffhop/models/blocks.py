"""Transformer layer shared by BERT (post-LN), OPT and ViT (pre-LN), and parameter helpers."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.nn.attention import INIT_STD, MultiHeadAttention, partitioned
from outeffhop.nn.dense import dense_dot_general
from outeffhop.nn.dropout import Dropout, config_masks
from outeffhop.nn.layer_norm import LayerNorm


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


def layer_norm(name: str, config) -> LayerNorm:
    """Two-pass LayerNorm over the model dimension, logically partitioned scale and bias."""
    return LayerNorm(
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
    """

    config: Any
    pre_ln: bool
    is_causal: bool = False

    @nn.compact
    def __call__(self, x, mask_BL=None, *, deterministic=True, mask=None):
        cfg = self.config
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
        y = act(dense(cfg.d_ff, ("embed", "mlp"), "ffn_in", cfg)(y))
        y = drop(
            dense(cfg.d_model, ("mlp", "embed"), "ffn_out", cfg)(y), deterministic=deterministic
        )
        if self.pre_ln:
            return h + y
        return layer_norm("output_ln", cfg)(h + y)


def check_length(length: int, config) -> None:
    """Raises ValueError when a sequence is longer than the position table."""
    if length > config.max_len:
        raise ValueError(
            f"sequence length {length} exceeds the position table: max_len={config.max_len}."
        )
