"""W8A8 post-training fake quantization: quantizer, range estimators, sites, calibration.

Protocols: docs/outliers_and_w8a8.md and docs/references.md. Weights: symmetric per tensor
(or per output channel) from their current min/max; activations: asymmetric per tensor with
static ranges from calibration batches. Quantizer sites are inserted with
``nn.intercept_methods``: no model code changes. A site is (module class, path regex,
method, where): "input" / "output" quantize an argument or the outputs with a calibrated
range, "table" quantizes an embedding lookup with the range of its whole table (the lookup
of a quantized table). The defaults ("ours") quantize the inputs of every Dense /
DenseGeneral / Einsum and LayerNorm and the attention scores and weights (the models'
``AttentionProbe`` points, on the explicit-weights attention path, the CPU default); the
official protocol's sites are in ``outeffhop.measure.protocols``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.measure import sites
from outeffhop.measure.sites import (  # noqa: F401  (re-exported: quant.Site, quant.*_SITES)
    ATTENTION_SCORES,
    ATTENTION_SITES,
    ATTENTION_WEIGHTS,
    DEFAULT_SITES,
    LINEAR_INPUTS,
    NORM_INPUTS,
    SITE_KINDS,
    Site,
)

ESTIMATORS = ("current_minmax", "running_minmax", "global_minmax", "percentile", "mse")
MSE_GRID = 100  # candidate clipping ranges alpha * (lo, hi), alpha in (0, 1]


def _check_bits(bits):
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer in 2..16; got {bits!r}.")


def fake_quantize(x, lo, hi, *, bits: int = 8, symmetric: bool = False) -> jax.Array:
    """Quantize ``x`` to a ``bits``-bit uniform grid on [lo, hi] and back (same shape).

    The range is first widened to contain 0: ``lo = min(lo, 0)``, ``hi = max(hi, 0)``.
    Asymmetric: ``s = (hi - lo) / (2^b - 1)``, ``z = round(-lo / s)``,
    ``q = clip(round(x / s) + z, 0, 2^b - 1)``, ``x_hat = (q - z) s``.
    Symmetric: ``s = max(|lo|, |hi|) / (2^(b-1) - 1)``,
    ``q = clip(round(x / s), -(2^(b-1) - 1), 2^(b-1) - 1)``, ``x_hat = q s``.
    ``lo``/``hi`` broadcast against ``x`` (scalars per tensor, or per channel). A range of
    zero width (only 0 representable) maps everything to 0. Rounding is half-to-even.
    """
    _check_bits(bits)
    x = jnp.asarray(x)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    xf = x.astype(jnp.float32)
    lo = jnp.minimum(jnp.asarray(lo, jnp.float32), 0.0)
    hi = jnp.maximum(jnp.asarray(hi, jnp.float32), 0.0)
    if symmetric:
        qmax = 2.0 ** (bits - 1) - 1
        s = jnp.maximum(jnp.abs(lo), jnp.abs(hi)) / qmax
        ok = s > 0
        s1 = jnp.where(ok, s, 1.0)
        out = jnp.clip(jnp.round(xf / s1), -qmax, qmax) * s1
    else:
        qmax = 2.0**bits - 1
        s = (hi - lo) / qmax
        ok = s > 0
        s1 = jnp.where(ok, s, 1.0)
        z = jnp.round(-lo / s1)
        out = (jnp.clip(jnp.round(xf / s1) + z, 0.0, qmax) - z) * s1
    return jnp.where(ok, out, 0.0).astype(dtype)


def fake_quantize_weight(w, lo, hi, *, bits: int = 8, unsigned_nonnegative: bool = False):
    """Symmetric weight quantization; with ``unsigned_nonnegative`` a tensor with no negative
    entry uses the unsigned grid 0..2^b - 1 with s = hi / (2^b - 1) (the official code's
    symmetric quantizer, e.g. for LayerNorm scales), else the signed one of ``fake_quantize``.
    """
    signed = fake_quantize(w, lo, hi, bits=bits, symmetric=True)
    if not unsigned_nonnegative:
        return signed
    unsigned = fake_quantize(w, jnp.zeros_like(lo), hi, bits=bits, symmetric=False)
    return jnp.where(jnp.min(lo) < 0, signed, unsigned)


# ---------------------------------------------------------------- range estimators


def _minmax(x):
    x = jnp.asarray(x, jnp.float32)
    return jnp.min(x), jnp.max(x)


def _mse_range(x, bits, symmetric):
    """The clipping range alpha * (lo, hi) minimizing mean (fake_quantize(x) - x)^2."""
    x = jnp.asarray(x, jnp.float32).ravel()
    lo, hi = jnp.minimum(jnp.min(x), 0.0), jnp.maximum(jnp.max(x), 0.0)
    alphas = jnp.linspace(1.0 / MSE_GRID, 1.0, MSE_GRID)

    def err(a):
        return jnp.mean((fake_quantize(x, a * lo, a * hi, bits=bits, symmetric=symmetric) - x) ** 2)

    best = alphas[jnp.argmin(jax.lax.map(err, alphas))]
    return best * lo, best * hi


def batch_range(
    x, estimator: str, *, bits: int = 8, symmetric: bool = False, percentile: float = 99.999
) -> tuple[jax.Array, jax.Array]:
    """One batch's (lo, hi) estimate for ``estimator`` (per tensor, float32 scalars)."""
    check_estimator(estimator)
    if estimator == "percentile":
        x = jnp.asarray(x, jnp.float32).ravel()
        return jnp.percentile(x, 100.0 - percentile), jnp.percentile(x, percentile)
    if estimator == "mse":
        return _mse_range(x, bits, symmetric)
    return _minmax(x)


def combine_ranges(old, new, estimator: str, momentum: float = 0.9, xp=np):
    """Fold one batch's (lo, hi) into the running state (host side, numpy; ``xp=jnp`` traced).

    current_minmax keeps the latest batch; global_minmax the min/max over batches; the
    others an EMA ``momentum * old + (1 - momentum) * new`` started from the first batch.
    """
    new = tuple(xp.asarray(v, xp.float32) for v in new)
    if old is None or estimator == "current_minmax":
        return new
    if estimator == "global_minmax":
        return xp.minimum(old[0], new[0]), xp.maximum(old[1], new[1])
    return tuple(
        xp.float32(momentum * o + (1 - momentum) * n) for o, n in zip(old, new, strict=True)
    )


def check_estimator(estimator):
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}.")


# ---------------------------------------------------------------- weights


def quantize_weights(
    params,
    *,
    bits: int = 8,
    per_channel: bool = False,
    names: Sequence[str] = ("kernel",),
    exclude: Sequence[str] = (),
    unsigned_nonnegative: bool = False,
):
    """Symmetric fake quantization of every param leaf named in ``names`` (current min/max).

    Per channel reduces over all axes but the last (Dense output features). Leaves whose
    '/'-joined path fully matches an ``exclude`` regex (e.g. the LM head) stay as they are.
    ``unsigned_nonnegative``: see ``fake_quantize_weight``.
    """
    _check_bits(bits)
    excl = [re.compile(p) for p in exclude]

    def quant(path, w):
        keys = [str(getattr(k, "key", k)) for k in path]
        if keys[-1] not in names or any(r.fullmatch("/".join(keys)) for r in excl):
            return w
        axes = tuple(range(w.ndim - 1)) if per_channel and w.ndim > 1 else None
        lo, hi = jnp.min(w, axis=axes), jnp.max(w, axis=axes)
        return fake_quantize_weight(w, lo, hi, bits=bits, unsigned_nonnegative=unsigned_nonnegative)

    return jax.tree_util.tree_map_with_path(quant, params)


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    """A post-training quantization recipe (defaults: the papers' W8A8)."""

    weight_bits: int | None = 8  # None keeps weights in float
    act_bits: int | None = 8  # None keeps activations in float
    weight_per_channel: bool = False  # per output channel instead of per tensor
    weight_names: tuple[str, ...] = ("kernel",)  # param leaf names that are weights
    weight_exclude: tuple[str, ...] = ()  # param path regexes kept in float (LM head)
    estimator: str = "running_minmax"  # activation range estimator (ESTIMATORS)
    momentum: float = 0.9  # EMA momentum of the running estimators
    percentile: float = 99.999  # upper percentile of the percentile estimator
    sites: tuple[Site, ...] = DEFAULT_SITES  # activation quantizer sites
    weight_unsigned_nonnegative: bool = False  # no negative weight: grid 0..2^b - 1
    sequential_calibration: bool = False  # calibrate with the quantizers on (upstream sites
    # quantized with their running ranges while downstream ranges are estimated)

    def __post_init__(self):
        for field in ("weight_bits", "act_bits"):
            bits = getattr(self, field)
            bad = not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16
            if bits is not None and bad:
                raise ValueError(f"{field} must be None or an integer in 2..16; got {bits!r}.")
        check_estimator(self.estimator)
        for s in self.sites:
            if s.where not in SITE_KINDS:
                raise ValueError(
                    f"Site.where must be 'input', 'output' or 'table'; got {s.where!r}."
                )


def _interceptor(config, on_value):
    """The sites of ``config`` with ``on_value`` and its table quantizer."""
    return sites.interceptor(
        config.sites, on_value, functools.partial(_quantize_like_table, config=config)
    )


def _quantize_like_table(module, site, out, config):
    """``out`` (a lookup of the module's table) quantized with the whole table's range."""
    table = module.variables["params"][site.param]
    table = getattr(table, "value", table)  # unbox logically partitioned params
    lo, hi = jnp.min(table), jnp.max(table)
    bits = config.weight_bits
    if bits is None:
        return out
    q = functools.partial(
        fake_quantize_weight, bits=bits, unsigned_nonnegative=config.weight_unsigned_nonnegative
    )
    return jax.tree.map(lambda v: q(v, lo, hi), out)


# forward(variables, batch) -> metrics pytree. Sites must not sit inside lax control flow
# (cond/scan/while): ranges are recorded through Python side effects at trace time.
Forward = Callable[[object, object], object]


def observe_fn(forward: Forward, config: QuantConfig) -> Callable:
    """jit-able ``(variables, batch) -> {site: (lo, hi)}``: this batch's range estimates.

    Weights are quantized (if configured) and activations stay in float while observed.
    """

    def observe(variables, batch):
        found = {}

        def record(name, x):
            bits = config.act_bits or 8
            found[name] = batch_range(x, config.estimator, bits=bits, percentile=config.percentile)
            return x

        with nn.intercept_methods(_interceptor(config, record)):
            forward(_weights_quantized(variables, config), batch)
        return found

    return observe


def calibrate(forward: Forward, variables, batches: Iterable, config: QuantConfig) -> dict:
    """Static activation ranges {site: (lo, hi)} from held-out ``batches`` (deterministic).

    With ``config.sequential_calibration`` every site is quantized with its running range
    while the ranges are estimated (``calibrate_sequential``), as the official code does.
    """
    if config.sequential_calibration:
        return calibrate_sequential(forward, variables, batches, config)
    observe = jax.jit(observe_fn(forward, config))
    ranges: dict = {}
    n = 0
    for batch in batches:
        for name, r in jax.device_get(observe(variables, batch)).items():
            ranges[name] = combine_ranges(ranges.get(name), r, config.estimator, config.momentum)
        n += 1
    if n == 0:
        raise ValueError("batches must hold at least one calibration batch; got none.")
    return ranges


def calibrate_sequential(forward: Forward, variables, batches: Iterable, config) -> dict:
    """Ranges estimated with the quantizers on: batch t quantizes each site with its range
    after folding in batch t's estimate, so a site's statistics see the quantized values
    of every site upstream of it (the official code's range estimation)."""
    bits = config.act_bits or 8

    def step(variables, batch, state, first):
        found = {}

        def record(name, x):
            cur = batch_range(x, config.estimator, bits=bits, percentile=config.percentile)
            old = state.get(name, cur)
            new = combine_ranges(old, cur, config.estimator, config.momentum, xp=jnp)
            found[name] = tuple(jnp.where(first, c, n) for c, n in zip(cur, new, strict=True))
            return fake_quantize(x, *found[name], bits=bits)

        with nn.intercept_methods(_interceptor(config, record)):
            forward(_weights_quantized(variables, config), batch)
        return found

    step = jax.jit(step)
    state, n = {}, 0
    for batch in batches:
        if n == 0:  # the sites and their range shapes, then a state of that structure
            shapes = jax.eval_shape(step, variables, batch, {}, True)
            state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        state = step(variables, batch, state, n == 0)
        n += 1
    if n == 0:
        raise ValueError("batches must hold at least one calibration batch; got none.")
    return {
        k: tuple(np.asarray(v, np.float32) for v in r) for k, r in jax.device_get(state).items()
    }


def _weights_quantized(variables, config):
    if config.weight_bits is None or "params" not in variables:
        return variables
    params = quantize_weights(
        variables["params"],
        bits=config.weight_bits,
        per_channel=config.weight_per_channel,
        names=config.weight_names,
        exclude=config.weight_exclude,
        unsigned_nonnegative=config.weight_unsigned_nonnegative,
    )
    return {**variables, "params": params}


def quantized(forward: Forward, ranges: Mapping | None, config: QuantConfig) -> Forward:
    """``forward`` with quantized weights and fake-quantized activations at every site.

    ``ranges`` come from ``calibrate`` with the same config; a site without a range is an
    error (the model or config changed since calibration).
    """
    if config.act_bits is not None and not ranges:
        raise ValueError("ranges must come from calibrate() when act_bits is set; got none.")

    def quant_forward(variables, batch):
        def fq(name, x):
            if name not in ranges:
                raise ValueError(f"site {name!r} has no calibrated range; recalibrate.")
            lo, hi = ranges[name]
            return fake_quantize(x, lo, hi, bits=config.act_bits)

        variables = _weights_quantized(variables, config)
        if config.act_bits is None:
            fq = lambda name, x: x  # noqa: E731  (table sites still quantize lookups)
        with nn.intercept_methods(_interceptor(config, fq)):
            return forward(variables, batch)

    return quant_forward


def sum_metrics(forward: Forward, variables, batches: Iterable) -> tuple[dict[str, float], int]:
    """(sum over ``batches`` of each scalar in ``forward(variables, batch)``, batch count)."""
    fn = jax.jit(forward)
    sums: dict[str, float] = {}
    n = 0
    for batch in batches:
        for k, v in jax.device_get(fn(variables, batch)).items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    if n == 0:
        raise ValueError("batches must hold at least one batch; got none.")
    return sums, n


def mean_metrics(forward: Forward, variables, batches: Iterable) -> dict[str, float]:
    """Mean over ``batches`` of each scalar in ``forward(variables, batch)`` (jitted)."""
    sums, n = sum_metrics(forward, variables, batches)
    return {k: v / n for k, v in sums.items()}


def ptq_evaluate(
    forward: Forward, variables, calib_batches: Iterable, eval_batches: Iterable, config
) -> dict[str, float]:
    """Calibrate on ``calib_batches`` then return the quantized model's mean metrics."""
    ranges = calibrate(forward, variables, calib_batches, config) if config.act_bits else None
    return mean_metrics(quantized(forward, ranges, config), variables, eval_batches)


def ablations(per_channel_bits: int = 8, base: QuantConfig | None = None) -> dict:
    """The study's recipes, variations of ``base`` (default: ours): W8A8, per-channel W8A8,
    W8A16, W4A8 and the percentile and MSE estimators."""
    base = QuantConfig() if base is None else base
    change = functools.partial(dataclasses.replace, base)
    return {
        "W8A8": base,
        "W8A8-per-channel": change(weight_per_channel=True, weight_bits=per_channel_bits),
        "W8A16": change(act_bits=16),
        "W4A8": change(weight_bits=4),
        "W8A8-percentile": change(estimator="percentile"),
        "W8A8-mse": change(estimator="mse"),
    }
