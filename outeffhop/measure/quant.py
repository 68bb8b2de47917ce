"""W8A8 post-training fake quantization: quantizer, range estimators, sites, calibration.

Protocol (docs/outliers_and_w8a8.md): weights symmetric per tensor (or per output channel)
from their current min/max; activations asymmetric per tensor with static ranges from calibration
batches. Quantizer sites are inserted with ``nn.intercept_methods``: no model code changes.
A site is (module class, path regex, method, input or output); the defaults quantize the
inputs of every Dense / DenseGeneral / Einsum (linear inputs, hence attention inputs, FFN
inputs and the LM head input), of every LayerNorm (residual sums, embedding sums), and the
attention scores and softmax outputs (the models' ``AttentionProbe`` points; present on the
explicit-weights attention path, the CPU default).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


def combine_ranges(old, new, estimator: str, momentum: float = 0.9):
    """Fold one batch's (lo, hi) into the running state (host side, numpy).

    current_minmax keeps the latest batch; global_minmax the min/max over batches; the
    others an EMA ``momentum * old + (1 - momentum) * new`` started from the first batch.
    """
    new = tuple(np.asarray(v, np.float32) for v in new)
    if old is None or estimator == "current_minmax":
        return new
    if estimator == "global_minmax":
        return np.minimum(old[0], new[0]), np.maximum(old[1], new[1])
    return tuple(
        np.float32(momentum * o + (1 - momentum) * n) for o, n in zip(old, new, strict=True)
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
):
    """Symmetric fake quantization of every param leaf named in ``names`` (current min/max).

    Per channel reduces over all axes but the last (Dense output features). Leaves whose
    '/'-joined path fully matches an ``exclude`` regex (e.g. the LM head) stay as they are.
    """
    _check_bits(bits)
    excl = [re.compile(p) for p in exclude]

    def quant(path, w):
        keys = [str(getattr(k, "key", k)) for k in path]
        if keys[-1] not in names or any(r.fullmatch("/".join(keys)) for r in excl):
            return w
        axes = tuple(range(w.ndim - 1)) if per_channel and w.ndim > 1 else None
        lo, hi = jnp.min(w, axis=axes), jnp.max(w, axis=axes)
        return fake_quantize(w, lo, hi, bits=bits, symmetric=True)

    return jax.tree_util.tree_map_with_path(quant, params)


# ---------------------------------------------------------------- activation sites


@dataclasses.dataclass(frozen=True)
class Site:
    """Where an activation quantizer sits: an argument or the output of a module method."""

    module_type: str = ".*"  # regex on the module's class name
    path: str = ".*"  # regex on '/'.join(module.path)
    method: str = "__call__"  # method name (exact)
    where: str = "input"  # "input" (positional arg ``arg``) or "output" (every array leaf)
    arg: int = 0

    def matches(self, module: nn.Module, method: str) -> bool:
        return (
            method == self.method
            and re.fullmatch(self.module_type, type(module).__name__) is not None
            and re.fullmatch(self.path, "/".join(module.path)) is not None
        )


LINEAR_INPUTS = Site(module_type="Dense|DenseGeneral|Einsum")
NORM_INPUTS = Site(module_type="LayerNorm|RMSNorm")
# The attention scores (softmax input) and weights (softmax output): the models pass them
# through identity ``AttentionProbe`` modules on the explicit-weights path (the CPU default).
ATTENTION_SCORES = Site(module_type="AttentionProbe", path=r".*/scores", where="output")
ATTENTION_WEIGHTS = Site(module_type="AttentionProbe", path=r".*/weights", where="output")
ATTENTION_SITES = (ATTENTION_SCORES, ATTENTION_WEIGHTS)
# The papers' sites: linear inputs (Q/K/V inputs, context, FFN), LayerNorm inputs (residual
# and embedding sums), attention scores and softmax outputs.
DEFAULT_SITES = (LINEAR_INPUTS, NORM_INPUTS, *ATTENTION_SITES)


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

    def __post_init__(self):
        for field in ("weight_bits", "act_bits"):
            bits = getattr(self, field)
            bad = not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16
            if bits is not None and bad:
                raise ValueError(f"{field} must be None or an integer in 2..16; got {bits!r}.")
        check_estimator(self.estimator)
        for s in self.sites:
            if s.where not in ("input", "output"):
                raise ValueError(f"Site.where must be 'input' or 'output'; got {s.where!r}.")


def _match(config, module, method) -> Site | None:
    return next((s for s in config.sites if s.matches(module, method)), None)


class _Namer:
    """Deterministic site names ``path:method:in0``; repeated calls get ``#k``."""

    def __init__(self):
        self.seen: dict[str, int] = {}

    def __call__(self, module, method, suffix):
        base = f"{'/'.join(module.path)}:{method}:{suffix}"
        k = self.seen.get(base, 0)
        self.seen[base] = k + 1
        return base if k == 0 else f"{base}#{k}"


def _interceptor(config, on_value):
    """An interceptor calling ``on_value(name, x) -> x'`` at every site (inputs and outputs)."""
    namer = _Namer()

    def intercept(next_fun, args, kwargs, context):
        module, method = context.module, context.method_name
        site = _match(config, module, method)
        if site is None:
            return next_fun(*args, **kwargs)
        if site.where == "input":
            args = list(args)
            name = namer(module, method, f"in{site.arg}")
            args[site.arg] = on_value(name, args[site.arg])
            return next_fun(*args, **kwargs)
        leaves, tree = jax.tree.flatten(next_fun(*args, **kwargs))
        leaves = [on_value(namer(module, method, f"out{i}"), v) for i, v in enumerate(leaves)]
        return jax.tree.unflatten(tree, leaves)

    return intercept


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
    """Static activation ranges {site: (lo, hi)} from held-out ``batches`` (deterministic)."""
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


def _weights_quantized(variables, config):
    if config.weight_bits is None or "params" not in variables:
        return variables
    params = quantize_weights(
        variables["params"],
        bits=config.weight_bits,
        per_channel=config.weight_per_channel,
        names=config.weight_names,
        exclude=config.weight_exclude,
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
            return forward(variables, batch)
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


def ablations(per_channel_bits: int = 8) -> dict[str, QuantConfig]:
    """The study's quantization recipes: W8A8, per-channel W8A8, W8A16, W4A8, estimators."""
    return {
        "W8A8": QuantConfig(),
        "W8A8-per-channel": QuantConfig(weight_per_channel=True, weight_bits=per_channel_bits),
        "W8A16": QuantConfig(act_bits=16),
        "W4A8": QuantConfig(weight_bits=4),
        "W8A8-percentile": QuantConfig(estimator="percentile"),
        "W8A8-mse": QuantConfig(estimator="mse"),
    }
