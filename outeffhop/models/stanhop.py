"""STanHop-Net (Wu, Hu et al., ICLR 2024): Hopfield multivariate time-series forecasting.

Shapes: B batch, T input steps, D series, G segments, E d_model, F factor (router patterns).
x [B, T, D] -> segments [B, D, G, seg_len] -> embedding + learned positions [B, D, G, E] ->
encoder of ``num_layers`` blocks (block i > 0 merges pairs of segments first), each an STHM
block -> decoder of ``num_layers + 1`` layers (STHM on learned output positions, Hopfield
cross-association with the encoder output of the same scale, MLP, a linear segment head) ->
the sum of the layers' segment predictions [B, out_len, D].

STHM block on [B, D, G, E]: cross-time Hopfield over the G segments of each series + MLP,
then a cross-series stage over the D series of each segment + MLP; every sublayer is
residual + LayerNorm. ``cross_series`` picks the stage (docs/stanhop.md):

  "paper"  (the STanHop code's STHMLayer) each series looks itself up in F = ``factor``
           learned stored patterns (``HopfieldLayer``: ``lookup``), the series associate
           with each other (``Hopfield(series, series)``: ``series``), and
           s = LN(lookup + series); O(D F + D^2) per segment.
  "router" (Crossformer's router) ``HopfieldPooling`` with F learned state patterns pools
           the D series into F patterns (``pool``), the series read them back (``receive``):
           s = LN(s + receive); O(D F).

``hopfield_sublayer``: "paper" (the STanHop code's Hopfield: no input LayerNorms, values
V = W_V W_K Y, dropout on the association) or "hflayers" (hflayers' defaults: LayerNorm on
the three inputs, V = W_V P). ``gate`` != "none" gates every Hopfield head
(``outeffhop.nn.hopfield_gate``; the router's ``pool`` has learned queries and stays ungated).

Module paths (for outlier capture): ``embed``, ``embed_ln``, ``enc_{i}/merge/{ln,proj}``,
``{enc,dec}_{i}/sthm/{time,time_ln,time_mlp,time_mlp_ln,lookup,series,pool,receive,
series_ln,series_mlp,series_mlp_ln}``, ``dec_{i}/{cross,cross_ln,mlp,mlp_ln,pred}``; MLPs
hold ``fc1``, ``fc2``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from outeffhop.nn.hopfield import Hopfield
from outeffhop.nn.hopfield_gate import GATES, GatedHopfield
from outeffhop.nn.pooling import HopfieldLayer, HopfieldPooling

NORMALIZERS = ("softmax", "softmax1", "clipped", "clipped_softmax1", "gsh")
CHOICES = {
    "cross_series": ("paper", "router"),
    "hopfield_sublayer": ("paper", "hflayers"),
    "series_values": ("series", "lookup"),
    "gate": ("none", *GATES),
}
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
    c.normalizer = "gsh"  # Hopfield normalizer: softmax | softmax1 | clipped(_softmax1) | gsh
    c.gamma = -0.025  # clipped: clip((zeta - gamma) softmax + gamma, 0, 1)
    c.zeta = 1.0  # clipped: upper stretch
    c.cross_series = "paper"  # paper: lookup in F learned patterns + series self-association;
    #                           router: Crossformer's router (F learned queries pool the series)
    c.hopfield_sublayer = "paper"  # paper: no input LNs, V = W_V W_K Y; hflayers: LNs, V = W_V P
    c.series_values = "series"  # paper stage's values: the series (the code) or the lookup
    c.gate = "none"  # per-head gate of every Hopfield layer: none | unconditional_per_head |
    #                  conditional_per_head | conditional_per_token
    c.gate_mlp = False  # gate function: Linear(d_head, 1) or MLP d_head -> d_head/4 -> 1
    c.gate_init = 0.5  # gate value at initialization (bias = logit(gate_init))
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
    for name, allowed in CHOICES.items():
        if cfg[name] not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {cfg[name]!r}.")
    if not 0.0 < cfg.gate_init < 1.0:
        raise ValueError(f"gate_init must lie in (0, 1); got {cfg.gate_init!r}.")
    if cfg.normalizer.startswith("clipped") and not cfg.zeta > cfg.gamma:
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


def _fields(cfg, **kw) -> dict:
    """Hopfield fields of every sublayer: sizes, normalizer, the sublayer design."""
    clipped = cfg.normalizer.startswith("clipped")
    fields = dict(
        input_size=cfg.d_model,
        num_heads=cfg.num_heads,
        normalizer=cfg.normalizer,
        gamma=cfg.gamma if clipped else None,
        zeta=cfg.zeta if clipped else None,
    )
    if cfg.hopfield_sublayer == "paper":
        fields.update(
            normalize_stored_pattern=False,
            normalize_state_pattern=False,
            normalize_pattern_projection=False,
            pattern_projection_as_connected=True,
            dropout=cfg.dropout,
        )
    return {**fields, **kw}


def _hopfield(cfg, kind: str = "hopfield", *, name: str, **kw):
    """A Hopfield sublayer: "hopfield" (Hopfield), "lookup" (HopfieldLayer) or "pool"
    (HopfieldPooling), gated per head when ``cfg.gate`` != "none" (not "pool")."""
    fields = _fields(cfg, **kw)
    if cfg.gate != "none" and kind != "pool":
        return GatedHopfield(kind, tuple(fields.items()), cfg.gate, cfg.gate_mlp, cfg.gate_init,
                             name=name)  # fmt: skip
    cls = {"hopfield": Hopfield, "lookup": HopfieldLayer, "pool": HopfieldPooling}[kind]
    return cls(**fields, name=name)


class Sthm(nn.Module):
    """STHM block: cross-time Hopfield + MLP, then the cross-series stage + MLP."""

    config: ml_collections.FrozenConfigDict

    @nn.compact
    def __call__(self, x_BDGE, deterministic: bool = True):
        cfg = self.config
        b, d, g, e = x_BDGE.shape
        drop = nn.Dropout(cfg.dropout, deterministic=deterministic)
        x = x_BDGE.reshape(b * d, g, e)
        t = _hopfield(cfg, name="time")(x, deterministic=deterministic)
        x = nn.LayerNorm(name="time_ln")(x + drop(t))
        x = nn.LayerNorm(name="time_mlp_ln")(x + drop(Mlp(cfg.d_ff, e, name="time_mlp")(x)))
        s = x.reshape(b, d, g, e).transpose(0, 2, 1, 3).reshape(b * g, d, e)
        s = self._series(s, drop, deterministic)
        s = nn.LayerNorm(name="series_mlp_ln")(s + drop(Mlp(cfg.d_ff, e, name="series_mlp")(s)))
        return s.reshape(b, g, d, e).transpose(0, 2, 1, 3)

    def _series(self, s, drop, deterministic):
        """The cross-series stage on [B*G, D, E], before its MLP."""
        cfg = self.config
        if cfg.cross_series == "router":
            pool = _hopfield(cfg, "pool", quantity=cfg.factor, name="pool")
            pooled = pool(s, deterministic=deterministic).reshape(s.shape[0], cfg.factor, -1)
            received = _hopfield(cfg, name="receive")(
                (pooled, s, pooled), deterministic=deterministic
            )
            return nn.LayerNorm(name="series_ln")(s + drop(received))
        lookup = _hopfield(cfg, "lookup", quantity=cfg.factor, name="lookup")(
            s, deterministic=deterministic
        )
        values = s if cfg.series_values == "series" else lookup
        mixed = _hopfield(cfg, name="series")((s, s, values), deterministic=deterministic)
        return nn.LayerNorm(name="series_ln")(lookup + drop(mixed))


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
        c = _hopfield(cfg, name="cross")((kv, q, kv), deterministic=deterministic)
        q = nn.LayerNorm(name="cross_ln")(q + drop(c))
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
        rf"{_B}/sthm/(time|lookup|series|pool|receive)",
        r"dec_\d+/cross",
        rf"{_B}/(sthm/)?\w*mlp/fc2",
        rf"{_B}/(sthm/)?\w*_ln",
    ),
    "layers": (rf"{_B}/sthm/series_mlp_ln", r"dec_\d+/mlp_ln"),
}
