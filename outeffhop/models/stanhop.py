"""STanHop-Net (Wu, Hu et al., ICLR 2024): Hopfield multivariate time-series forecasting.

Shapes: B batch, T input steps, D series, G segments, E d_model, F factor (router patterns).
x [B, T, D] -> segments [B, D, G, seg_len] -> embedding + learned positions [B, D, G, E] ->
encoder of ``num_layers`` blocks (block i > 0 merges pairs of segments first), each an STHM
block -> decoder of ``num_layers + 1`` layers (STHM on learned output positions, Hopfield
cross-association with the encoder output of the same scale, MLP, a linear segment head) ->
the sum of the layers' segment predictions [B, out_len, D].

STHM block on [B, D, G, E]: cross-time Hopfield over the G segments of each series + MLP;
cross-series: ``HopfieldPooling`` with F learned router patterns pools the D series of each
segment into F patterns (linear in D), then a Hopfield layer maps the series back onto the
pooled patterns + MLP; every sublayer is residual + LayerNorm (Crossformer's two-stage layout).

Module paths (for outlier capture): ``embed``, ``embed_ln``, ``enc_{i}/merge/{ln,proj}``,
``{enc,dec}_{i}/sthm/{time,time_ln,time_mlp,time_mlp_ln,pool,receive,series_ln,series_mlp,
series_mlp_ln}``, ``dec_{i}/{cross,cross_ln,mlp,mlp_ln,pred}``; MLPs hold ``fc1``, ``fc2``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from outeffhop.nn.hopfield import Hopfield
from outeffhop.nn.pooling import HopfieldPooling

NORMALIZERS = ("softmax", "softmax1", "clipped", "gsh")
PRESETS = ("paper", "tiny")


def get_config(preset: str = "paper", **overrides) -> ml_collections.ConfigDict:
    """STanHop-Net model fields: ``paper`` (the paper's sizes) or ``tiny`` (tests, CPU)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}.")
    c = ml_collections.ConfigDict()
    c.model = "stanhop"  # model family name
    c.num_series = 7  # D input/output variables (ETTh1: 7); the task sets it from the data
    c.in_len = 168  # input steps T
    c.out_len = 24  # forecast horizon
    c.seg_len = 6  # steps per segment (patch)
    c.win_size = 2  # segments merged per encoder block after the first
    c.d_model = 256  # embedding width E
    c.d_ff = 512  # MLP hidden width
    c.num_heads = 4  # Hopfield heads (d_model % num_heads == 0)
    c.num_layers = 3  # encoder blocks (the decoder has num_layers + 1 layers)
    c.factor = 10  # learned router patterns F of the cross-series HopfieldPooling
    c.dropout = 0.2  # residual-branch dropout
    c.normalizer = "gsh"  # Hopfield normalizer: softmax | softmax1 | clipped | gsh
    c.gamma = -0.025  # clipped: clip((zeta - gamma) softmax + gamma, 0, 1)
    c.zeta = 1.0  # clipped: upper stretch
    if preset == "tiny":
        c.update(num_series=3, in_len=24, out_len=6, seg_len=4, d_model=16, d_ff=32)
        c.update(num_heads=2, num_layers=2, factor=3, dropout=0.0)
    for key, value in overrides.items():
        if key not in c:
            raise ValueError(f"unknown stanhop config field {key!r}; known: {', '.join(c)}.")
        c[key] = value
    return c


def check_config(cfg) -> None:
    """Raises ValueError naming the first bad field of a STanHop-Net config."""
    if cfg.normalizer not in NORMALIZERS:
        raise ValueError(
            f"normalizer must be one of {', '.join(NORMALIZERS)}; got {cfg.normalizer!r}."
        )
    for name in ("num_series", "in_len", "out_len", "seg_len", "win_size", "d_model", "d_ff"):
        if not isinstance(cfg[name], int) or cfg[name] < 1:
            raise ValueError(f"{name} must be a positive integer; got {cfg[name]!r}.")
    for name in ("num_heads", "num_layers", "factor"):
        if not isinstance(cfg[name], int) or cfg[name] < 1:
            raise ValueError(f"{name} must be a positive integer; got {cfg[name]!r}.")
    if cfg.d_model % cfg.num_heads:
        raise ValueError(
            f"d_model must be divisible by num_heads; got {cfg.d_model} and {cfg.num_heads}."
        )
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1); got {cfg.dropout!r}.")
    if cfg.normalizer == "clipped" and not cfg.zeta > cfg.gamma:
        raise ValueError(f"zeta must exceed gamma; got gamma={cfg.gamma}, zeta={cfg.zeta}.")


def segment(x_BTD, seg_len: int):
    """[B, T, D] -> [B, D, G, seg_len], G = ceil(T / seg_len); the front is padded with the
    first step (Crossformer's convention) when seg_len does not divide T."""
    pad = -x_BTD.shape[1] % seg_len
    if pad:
        x_BTD = jnp.concatenate([jnp.repeat(x_BTD[:, :1], pad, axis=1), x_BTD], axis=1)
    b, t, d = x_BTD.shape
    return x_BTD.transpose(0, 2, 1).reshape(b, d, t // seg_len, seg_len)


def merge_segments(x_BDGE, win: int):
    """[B, D, G, E] -> [B, D, ceil(G / win), win * E]: concatenates ``win`` neighbours; the
    end is padded by repeating the last segments."""
    pad = -x_BDGE.shape[2] % win
    if pad:
        x_BDGE = jnp.concatenate([x_BDGE, x_BDGE[:, :, -pad:]], axis=2)
    b, d, g, e = x_BDGE.shape
    return x_BDGE.reshape(b, d, g // win, win * e)


class Mlp(nn.Module):
    d_ff: int
    d_out: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.d_out, name="fc2")(nn.gelu(nn.Dense(self.d_ff, name="fc1")(x)))


def _hopfield(cfg, cls=Hopfield, **kw):
    clipped = cfg.normalizer == "clipped"
    return cls(
        input_size=cfg.d_model,
        num_heads=cfg.num_heads,
        normalizer=cfg.normalizer,
        gamma=cfg.gamma if clipped else None,
        zeta=cfg.zeta if clipped else None,
        **kw,
    )


class Sthm(nn.Module):
    """STHM block: cross-time Hopfield + MLP, then cross-series pooling/receiving + MLP."""

    config: ml_collections.FrozenConfigDict

    @nn.compact
    def __call__(self, x_BDGE, deterministic: bool = True):
        cfg = self.config
        b, d, g, e = x_BDGE.shape
        drop = nn.Dropout(cfg.dropout, deterministic=deterministic)
        x = x_BDGE.reshape(b * d, g, e)
        x = nn.LayerNorm(name="time_ln")(x + drop(_hopfield(cfg, name="time")(x)))
        x = nn.LayerNorm(name="time_mlp_ln")(x + drop(Mlp(cfg.d_ff, e, name="time_mlp")(x)))
        s = x.reshape(b, d, g, e).transpose(0, 2, 1, 3).reshape(b * g, d, e)
        pooled = _hopfield(cfg, HopfieldPooling, quantity=cfg.factor, name="pool")(s)
        pooled = pooled.reshape(b * g, cfg.factor, e)
        received = _hopfield(cfg, name="receive")((pooled, s, pooled))
        s = nn.LayerNorm(name="series_ln")(s + drop(received))
        s = nn.LayerNorm(name="series_mlp_ln")(s + drop(Mlp(cfg.d_ff, e, name="series_mlp")(s)))
        return s.reshape(b, g, d, e).transpose(0, 2, 1, 3)


class SegMerge(nn.Module):
    win: int

    @nn.compact
    def __call__(self, x_BDGE):
        e = x_BDGE.shape[-1]
        return nn.Dense(e, name="proj")(nn.LayerNorm(name="ln")(merge_segments(x_BDGE, self.win)))


class EncoderBlock(nn.Module):
    config: ml_collections.FrozenConfigDict
    merge: bool

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        if self.merge and self.config.win_size > 1:
            x = SegMerge(self.config.win_size, name="merge")(x)
        return Sthm(self.config, name="sthm")(x, deterministic)


class DecoderLayer(nn.Module):
    """STHM on the decoder state, Hopfield cross-association with one encoder scale, MLP,
    and the layer's segment prediction [B, D, G_out, seg_len]."""

    config: ml_collections.FrozenConfigDict

    @nn.compact
    def __call__(self, x_BDGE, enc_BDGE, deterministic: bool = True):
        cfg = self.config
        drop = nn.Dropout(cfg.dropout, deterministic=deterministic)
        x = Sthm(cfg, name="sthm")(x_BDGE, deterministic)
        b, d, g, e = x.shape
        q = x.reshape(b * d, g, e)
        kv = enc_BDGE.reshape(b * d, enc_BDGE.shape[2], e)
        q = nn.LayerNorm(name="cross_ln")(q + drop(_hopfield(cfg, name="cross")((kv, q, kv))))
        q = nn.LayerNorm(name="mlp_ln")(q + drop(Mlp(cfg.d_ff, e, name="mlp")(q)))
        out = q.reshape(b, d, g, e)
        return out, nn.Dense(cfg.seg_len, name="pred")(out)


class StanHop(nn.Module):
    """STanHop-Net: ``apply(variables, x [B, in_len, D], deterministic=...)`` -> [B, out_len, D]."""

    config: ml_collections.FrozenConfigDict

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        cfg = self.config
        if x.ndim != 3 or x.shape[1:] != (cfg.in_len, cfg.num_series):
            raise ValueError(
                f"x must be [batch, in_len={cfg.in_len}, num_series={cfg.num_series}]; "
                f"got shape {x.shape}."
            )
        e = cfg.d_model
        seg = segment(x.astype(jnp.float32), cfg.seg_len)  # [B, D, G, seg_len]
        g_in = seg.shape[2]
        g_out = math.ceil(cfg.out_len / cfg.seg_len)
        init = nn.initializers.normal(1.0)
        h = nn.Dense(e, name="embed")(seg)
        h = h + self.param("pos", init, (cfg.num_series, g_in, e))
        h = nn.LayerNorm(name="embed_ln")(h)
        scales = [h]
        for i in range(cfg.num_layers):
            h = EncoderBlock(cfg, merge=i > 0, name=f"enc_{i}")(h, deterministic)
            scales.append(h)
        dec_pos = self.param("dec_pos", init, (cfg.num_series, g_out, e))
        y = jnp.broadcast_to(dec_pos, (x.shape[0],) + dec_pos.shape)
        pred = 0.0
        for i, enc in enumerate(scales):
            y, p = DecoderLayer(cfg, name=f"dec_{i}")(y, enc, deterministic)
            pred = pred + p
        b, d = x.shape[0], cfg.num_series
        pred = pred.reshape(b, d, g_out * cfg.seg_len).transpose(0, 2, 1)
        return pred[:, : cfg.out_len]


def model_inputs(batch) -> dict:
    """``{"x": ...}``: the input window [B, in_len, D] of a forecasting batch."""
    return {"x": batch["x"]}


def build(config) -> StanHop:
    """The STanHop-Net module for a ``get_config`` ConfigDict, after checking it."""
    check_config(config)
    return StanHop(ml_collections.FrozenConfigDict(config))


# Outlier module sets (regexes on module paths, outeffhop.measure.outliers): "paper" = every
# Hopfield output, MLP output (fc2) and LayerNorm output (the residual stream) of every
# encoder/decoder block; "layers" = the residual stream only.
_B = r"(enc|dec)_\d+"
OUTLIER_MODULES = {
    "paper": (
        rf"{_B}/sthm/(time|pool|receive)",
        r"dec_\d+/cross",
        rf"{_B}/(sthm/)?\w*mlp/fc2",
        rf"{_B}/(sthm/)?\w*_ln",
    ),
    "layers": (rf"{_B}/sthm/series_mlp_ln", r"dec_\d+/mlp_ln"),
}
