"""Multi-head self-attention with a pluggable normalizer, head gates and a learned sink.

Shapes: x [B, L, D], q/k/v [B, L, H, Dh] with D = H * Dh; masks are boolean (True = attend).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from outeffhop.nn.constraints import HEADS, constrain
from outeffhop.nn.dense import dense_dot_general
from outeffhop.nn.dropout import Dropout
from outeffhop.ops import attention as attn
from outeffhop.ops import softmax as sm

NORMALIZERS = (*sm.NORMALIZERS, "sink")
GATES = ("none", "unconditional_per_head", "conditional_per_head", "conditional_per_token")
IMPLEMENTATIONS = (None, "fused", "cudnn", "xla", "reference")
INIT_STD = 0.02


def attention_config(**overrides) -> ml_collections.ConfigDict:
    """The attention ConfigDict with defaults (plain softmax, no gate); fields documented."""
    cfg = ml_collections.ConfigDict()
    cfg.normalizer = "softmax"  # softmax | softmax1 | clipped | clipped_softmax1 | sink
    cfg.gamma = -0.025  # clipped: lower stretch (gamma < 0 allows exact zeros)
    cfg.zeta = 1.0  # clipped: upper stretch (zeta > 1 allows exact ones)
    cfg.alpha = ml_collections.FieldReference(None, field_type=float)  # gamma = -alpha / T
    cfg.gate = "none"  # none | unconditional_per_head | conditional_per_head | ..._per_token
    cfg.gate_mlp = False  # gate net: False = Linear(Dh, 1); True = Dh -> Dh//4 -> 1, ReLU
    cfg.gate_init = 0.5  # sigmoid(gate) at init: the gate bias starts at logit(gate_init)
    # None (backend default) | fused (cuDNN where it can, else XLA) | cudnn | xla | reference
    cfg.implementation = ml_collections.FieldReference(None, field_type=str)
    cfg.update(overrides)
    return cfg


def check_attention_config(cfg, head_dim: int) -> None:
    """Raises ValueError naming the first bad field of an attention config."""
    if cfg.normalizer not in NORMALIZERS:
        raise ValueError(
            f"attention.normalizer must be one of {', '.join(NORMALIZERS)}; got {cfg.normalizer!r}."
        )
    if cfg.gate not in GATES:
        raise ValueError(f"attention.gate must be one of {', '.join(GATES)}; got {cfg.gate!r}.")
    if not 0.0 < cfg.gate_init < 1.0:
        raise ValueError(f"attention.gate_init must lie in (0, 1); got {cfg.gate_init}.")
    if cfg.implementation not in IMPLEMENTATIONS:
        raise ValueError(
            "attention.implementation must be None, 'fused', 'cudnn', 'xla' or 'reference'; "
            f"got {cfg.implementation!r}."
        )
    if cfg.implementation in ("fused", "cudnn", "xla") and cfg.normalizer.startswith("clipped"):
        raise ValueError(
            f"attention.implementation={cfg.implementation!r} supports softmax, softmax1 and "
            f"sink; got normalizer {cfg.normalizer!r}."
        )
    if cfg.normalizer.startswith("clipped"):
        if cfg.alpha is None and cfg.gamma is None:
            raise ValueError("attention.gamma or attention.alpha must be set for clipped softmax.")
        if cfg.alpha is not None and cfg.alpha <= 0:
            raise ValueError(f"attention.alpha must be positive; got {cfg.alpha}.")
        if cfg.alpha is None and not cfg.zeta > cfg.gamma:
            raise ValueError(f"attention.zeta must exceed gamma; got {cfg.gamma}, {cfg.zeta}.")
    if cfg.gate_mlp and cfg.gate != "none" and head_dim < 4:
        raise ValueError(f"attention.gate_mlp needs head_dim >= 4; got head_dim={head_dim}.")


def clip_range(cfg, key_len: int) -> tuple[float, float]:
    """(gamma, zeta) of clipped softmax; with ``alpha`` set, gamma = -alpha / key_len."""
    gamma = -cfg.alpha / key_len if cfg.alpha is not None else cfg.gamma
    return float(gamma), float(cfg.zeta)


def uniform_clipped_from(cfg, key_len: int) -> int | None:
    """The fewest keys at which clipped softmax maps uniform attention to exactly 0, or None.

    clip((zeta - gamma) / L + gamma, 0, 1) = 0 once L >= (zeta - gamma) / -gamma: with the
    papers' BERT setting gamma = -0.025, zeta = 1 that is L >= 41. Attention starts near
    uniform (small init), so rows with that many keys output 0 and pass no gradient to the
    queries, keys or values: the block can stay dead (observed on BERT at L = 64).
    """
    if not cfg.normalizer.startswith("clipped"):
        return None
    gamma, zeta = clip_range(cfg, key_len)
    if gamma >= 0:
        return None
    return math.ceil((zeta - gamma) / -gamma)


def logit(p: float) -> float:
    """log(p / (1 - p)), the inverse of the sigmoid."""
    return math.log(p / (1.0 - p))


def partitioned(init, axes):
    """An initializer whose parameters carry logical axis names (for DP / FSDP rules)."""
    return nn.with_logical_partitioning(init, axes)


class HeadGate(nn.Module):
    """Per-head sigmoid gate, returns gate values broadcastable to [B, L, H, 1].

    unconditional_per_head: sigmoid(a_h). conditional_per_token: sigmoid(g_h(x_h)) with x_h
    the layer input's head-h slice [B, L, Dh]. conditional_per_head: sigmoid of the mean of
    g_h(x_h) over the tokens the query may attend to (``visible`` [B|1, T, S], None = all),
    so that padding, causal and document masks hold for the gate too.
    """

    num_heads: int
    gate: str
    mlp: bool = False
    gate_init: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, visible=None):
        h = self.num_heads
        bias_init = partitioned(nn.initializers.constant(logit(self.gate_init)), ("heads",))
        if self.gate == "unconditional_per_head":
            a = self.param("logit", bias_init, (h,), self.param_dtype)
            return nn.sigmoid(a.astype(self.dtype))[None, None, :, None]
        b, length, d = x.shape
        x = x.reshape(b, length, h, d // h).astype(self.dtype)
        kernel = nn.initializers.normal(INIT_STD)
        if self.mlp:
            e = max(d // h // 4, 1)
            w1 = self.param(
                "kernel1", partitioned(kernel, ("heads", "kv", "gate_hidden")), (h, d // h, e)
            )
            b1 = self.param(
                "bias1", partitioned(nn.initializers.zeros, ("heads", "gate_hidden")), (h, e)
            )
            x = nn.relu(jnp.einsum("blhd,hde->blhe", x, w1.astype(self.dtype)) + b1)
            w = self.param("kernel2", partitioned(kernel, ("heads", "gate_hidden")), (h, e))
        else:
            w = self.param("kernel", partitioned(kernel, ("heads", "kv")), (h, d // h))
        bias = self.param("bias", bias_init, (h,), self.param_dtype)
        a = jnp.einsum("blhd,hd->blh", x, w.astype(self.dtype)) + bias.astype(self.dtype)
        if self.gate == "conditional_per_head" and visible is None:
            a = jnp.mean(a, axis=1, keepdims=True)
        elif self.gate == "conditional_per_head":
            visible = visible.astype(a.dtype)
            count = jnp.maximum(jnp.sum(visible, axis=-1), 1.0)[..., None]
            a = jnp.einsum("bts,bsh->bth", visible, a) / count
        return nn.sigmoid(a)[..., None]


class AttentionProbe(nn.Module):
    """The identity, under a name: a point inside attention that hooks can reach.

    ``MultiHeadAttention`` passes its scores (the normalizer's input, [B, H, T, S]) through
    ``scores`` and its weights (the normalizer's output) through ``weights``, so
    ``capture_intermediates`` (attention statistics) and ``nn.intercept_methods``
    (quantizers: ``outeffhop.measure.quant.ATTENTION_SITES``) reach them without model changes. Only
    on the explicit-weights path (the CPU default, attention dropout in training, or
    ``attention.implementation='reference'``): fused kernels never form the weights.
    """

    @nn.compact
    def __call__(self, x):
        return x


def attention_path(cfg, *, dtype, head_dim, length, has_mask, dropout, backend=None):
    """(path, reason) of one attention layer: "reference" (explicit weights), "xla" or "cudnn".

    Explicit weights when attention dropout is active (jax.nn.dot_product_attention has no
    dropout; the weights must exist to be dropped), for the clipped normalizers, for
    ``implementation='reference'``, and by default on CPU (measured faster there). Otherwise
    the fused kernel: cuDNN where ``ops.attention.fused_kernel`` allows it, XLA's otherwise;
    the learned sink always takes XLA's (its bias gradient). ``cfg.implementation`` 'cudnn'
    or 'xla' forces that kernel (ValueError when cuDNN cannot take the inputs).
    """
    backend = jax.default_backend() if backend is None else backend
    normalizer = "softmax1" if cfg.normalizer == "sink" else cfg.normalizer
    if dropout:
        return "reference", "attention dropout needs explicit weights"
    impl = cfg.implementation
    if impl is None and backend == "cpu":
        return "reference", "CPU default (explicit weights measured faster)"
    if impl == "reference" or normalizer not in attn.FUSED_NORMALIZERS:
        return "reference", f"implementation={impl!r}, normalizer {cfg.normalizer}"
    if cfg.normalizer == "sink" and impl != "cudnn":
        return "xla", "XLA attention (learned sink: a bias with a gradient)"
    if impl == "xla":
        return "xla", "XLA attention (implementation='xla')"
    kernel, reason = attn.fused_kernel(
        dtype, head_dim, length, length, has_mask, normalizer, backend=backend
    )
    if impl == "cudnn" and kernel != "cudnn":
        raise ValueError(f"attention.implementation='cudnn' cannot run here: {reason}.")
    return kernel, reason


class MultiHeadAttention(nn.Module):
    """Self-attention: query/key/value -> normalizer -> dropout -> gate -> out_proj.

    Submodules: ``query``, ``key``, ``value``, ``scores`` and ``weights`` (AttentionProbe, on
    the explicit-weights path), ``gate`` (if any), ``out_proj``; parameter
    ``sink`` [H] (normalizer sink, init 0). ``attention_path`` picks the path (logged at
    INFO once per trace, with the layer's module path): explicit weights, or the fused
    cuDNN / XLA kernels of ``jax.nn.dot_product_attention``.
    """

    num_heads: int
    config: Any  # the attention ConfigDict (frozen)
    dropout_rate: float = 0.0
    dropout_masks: str = "hash"  # hash | bernoulli (outeffhop.nn.dropout)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask_BL=None, *, is_causal=False, deterministic=True, mask=None):
        cfg = self.config
        b, length, d = x.shape
        h = self.num_heads
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        q, k, v = self._project(x)
        if mask is None and mask_BL is not None:
            mask = mask_BL.astype(bool)[:, None, None, :]
        sink = None
        if cfg.normalizer == "sink":
            sink = self.param(
                "sink", partitioned(nn.initializers.zeros, ("heads",)), (h,), self.param_dtype
            )
        path, reason = attention_path(
            cfg,
            dtype=q.dtype,
            head_dim=d // h,
            length=length,
            has_mask=mask is not None,
            dropout=self.dropout_rate > 0 and not deterministic,
        )
        logging.info("attention %s: %s path (%s)", "/".join(self.path), path, reason)
        if path == "reference":
            ctx = self._explicit(q, k, v, sink, mask, is_causal, deterministic)
        elif sink is not None:
            ctx = attn.sink_attention(
                q, k, v, sink, mask=mask, is_causal=is_causal, implementation=path
            )
        else:
            ctx = attn.dot_product_attention(
                q, k, v, normalizer=cfg.normalizer, mask=mask, is_causal=is_causal,
                implementation=path,
            )  # fmt: skip
        ctx = constrain(ctx, HEADS)
        if cfg.gate != "none":
            visible = attn.combine_mask(mask, is_causal, length, length)
            if visible is not None:
                visible = jnp.broadcast_to(visible, (visible.shape[0], 1, length, length))[:, 0]
            gate = HeadGate(h, cfg.gate, cfg.gate_mlp, cfg.gate_init, name="gate", **dense)(
                x, visible
            )
            ctx = ctx * gate.astype(ctx.dtype)
        out = nn.Dense(
            d,
            name="out_proj",
            kernel_init=partitioned(nn.initializers.normal(INIT_STD), ("joined_kv", "embed")),
            bias_init=partitioned(nn.initializers.zeros, ("embed",)),
            dot_general=dense_dot_general,
            **dense,
        )
        return out(ctx.reshape(b, length, d))

    def _project(self, x):
        """q, k, v [B, L, H, Dh] (column-parallel: ``joined_kv`` splits over heads)."""
        b, length, d = x.shape
        proj = dict(
            dot_general=dense_dot_general,
            kernel_init=partitioned(nn.initializers.normal(INIT_STD), ("embed", "joined_kv")),
            bias_init=partitioned(nn.initializers.zeros, ("joined_kv",)),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        return tuple(
            constrain(
                nn.Dense(d, name=name, **proj)(x).reshape(b, length, self.num_heads, -1), HEADS
            )
            for name in ("query", "key", "value")
        )

    def _explicit(self, q, k, v, sink, mask, is_causal, deterministic):
        """Context [B, L, H, Dh] from explicit weights: probes, normalizer, dropout."""
        cfg = self.config
        gamma, zeta = clip_range(cfg, q.shape[1])
        logits = AttentionProbe(name="scores")(attn.attention_logits(q, k))
        if sink is not None:
            w = attn.sink_normalize(logits, sink, mask=mask, is_causal=is_causal)
        else:
            w = attn.normalize_logits(
                logits,
                normalizer=cfg.normalizer,
                mask=mask,
                is_causal=is_causal,
                gamma=gamma,
                zeta=zeta,
            )
        w = AttentionProbe(name="weights")(w.astype(q.dtype))
        w = Dropout(self.dropout_rate, masks=self.dropout_masks)(w, deterministic=deterministic)
        return jnp.einsum("bhts,bshd->bthd", w.astype(v.dtype), v)
