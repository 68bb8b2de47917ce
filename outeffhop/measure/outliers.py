"""Activation outlier statistics: kurtosis and inf-norm of captured module outputs.

The protocol is the reference code's (Bondarenko et al. 2023, reused by OutEffHop): capture
the outputs of a model's module set, flatten each sample to a row of ``[B, T*D]``, compute
per-sample kurtosis and inf-norm, average each module's values over the eval set, then report
the mean kurtosis over modules ("avg kurtosis") and the max inf-norm over modules.

Capture works through ``capture_intermediates`` with a filter on the module path, so it needs
no change to model code. Paths are ``'/'.join(module.path)``, e.g. ``'encoder/layer_3/ffn_out'``;
a model's module sets are regexes on them (``outeffhop.models.outlier_modules``): this module
knows no model. A pattern may end in ``:input`` (capture the module's first positional input,
through ``nn.intercept_methods``, e.g. a LayerNorm's input) and/or ``:tokens`` (one row per
token, ``[B*T, D]``, as the official code sees the modules that HF's OPT runs on flattened
tokens); the captured names carry the same suffixes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

KURTOSIS_EPS = 1e-6


def kurtosis(x: jax.Array) -> jax.Array:
    """Per-row kurtosis of ``x`` [B, N] -> [B]: ``mean((x - mu)^4) / (std^4 + 1e-6)``.

    ``std`` is the unbiased (N - 1) standard deviation, as ``torch.std``. Not excess kurtosis:
    a Gaussian row gives about 3. Computed in float32.
    """
    x = _rows(x, "kurtosis")
    mu = jnp.mean(x, axis=1, keepdims=True)
    std = jnp.std(x, axis=1, ddof=1)
    mu4 = jnp.mean((x - mu) ** 4, axis=1)
    return mu4 / (std**4 + KURTOSIS_EPS)


def inf_norm(x: jax.Array) -> jax.Array:
    """Per-row infinity norm of ``x`` [B, N] -> [B]: ``max_j |x_ij|``."""
    return jnp.max(jnp.abs(_rows(x, "inf_norm")), axis=1)


def _rows(x, fn):
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"{fn}: x must be [B, N] with N >= 2; got shape {x.shape}.")
    return x.astype(jnp.float32)


def per_sample(x: jax.Array) -> jax.Array:
    """Flatten ``x`` [B, ...] to [B, prod(...)] (one row per sample)."""
    return jnp.reshape(x, (x.shape[0], -1))


SUFFIXES = (":input", ":tokens")


def split_suffix(pattern: str) -> tuple[str, str]:
    """``'regex:input:tokens'`` -> (``'regex'``, ``':input:tokens'``); no suffix -> ''."""
    suffix = ""
    while pattern.endswith(SUFFIXES):
        cut = next(x for x in SUFFIXES if pattern.endswith(x))
        pattern, suffix = pattern[: -len(cut)], cut + suffix
    return pattern, suffix


def _resolve(patterns: Sequence[str]) -> tuple[tuple[re.Pattern, str], ...]:
    """Module-path regexes (with optional suffixes) -> ((compiled regex, suffix), ...)."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    if not patterns:
        raise ValueError("patterns must name at least one module path regex; got none.")
    out = []
    for p in patterns:
        regex, suffix = split_suffix(p)
        out.append((re.compile(regex), suffix))
    return tuple(out)


def path_name(path: Sequence[str]) -> str:
    return "/".join(path)


def _suffixes(regs, path: str, want_input: bool) -> list[str]:
    """The suffixes under which module ``path`` is captured (outputs or inputs)."""
    return sorted({s for r, s in regs if r.fullmatch(path) and (":input" in s) == want_input})


def capture(
    model: nn.Module,
    variables,
    *args,
    patterns: Sequence[str],
    method: str = "__call__",
    **kwargs,
) -> tuple[object, dict[str, jax.Array]]:
    """Run ``model.apply(variables, *args, **kwargs)``; return (output, {name: activation}).

    Only ``method`` calls of modules whose path fully matches a pattern are kept. A module
    called k > 1 times gives entries ``path#0 .. path#k-1``; a tuple output gives ``path[i]``;
    pattern suffixes (``:input``, ``:tokens``) are appended to the name.
    """
    regs = _resolve(patterns)

    def keep(mdl, name):
        return name == method and bool(_suffixes(regs, path_name(mdl.path), False))

    inputs: dict[str, list] = {}

    def record_inputs(next_fun, args_, kwargs_, context):
        path = path_name(context.module.path)
        if context.method_name == method and args_ and _suffixes(regs, path, True):
            inputs.setdefault(path, []).append(args_[0])
        return next_fun(*args_, **kwargs_)

    with nn.intercept_methods(record_inputs):
        out, state = model.apply(
            variables, *args, capture_intermediates=keep, mutable=["intermediates"], **kwargs
        )
    found = {}
    flat = jax.tree_util.tree_flatten_with_path(
        state.get("intermediates", {}), is_leaf=lambda x: isinstance(x, tuple)
    )[0]
    calls_of = {}  # (path, captured an input) -> the calls' values
    for keypath, calls in flat:
        names = [k.key for k in keypath]
        if names[-1] == method:
            calls_of[path_name(names[:-1]), False] = calls
    calls_of.update({(p, True): tuple(c) for p, c in inputs.items()})
    for (base, is_input), calls in calls_of.items():
        for suffix in _suffixes(regs, base, is_input):
            for i, val in enumerate(calls):
                name = base if len(calls) == 1 else f"{base}#{i}"
                leaves = jax.tree.leaves(val)
                for j, leaf in enumerate(leaves):
                    found[(name if len(leaves) == 1 else f"{name}[{j}]") + suffix] = leaf
    return out, found


def rows(name: str, x: jax.Array) -> jax.Array:
    """The statistic's rows of a captured activation: [B, prod(...)], or [B*T, D] for
    ``:tokens`` names (every axis but the last flattened)."""
    if name.endswith(":tokens"):
        return jnp.reshape(x, (-1, x.shape[-1]))
    return per_sample(x)


def batch_outlier_stats(captured: Mapping[str, jax.Array]) -> dict[str, tuple[jax.Array, ...]]:
    """{name: activation [B, ...]} -> {name: (kurtosis [R], inf_norm [R])}, rows of ``rows``."""
    return {k: (kurtosis(rows(k, v)), inf_norm(rows(k, v))) for k, v in captured.items()}


class OutlierAccumulator:
    """Host-side running means of per-row kurtosis and inf-norm, per module.

    ``update(stats, kurtosis=False)`` adds the inf-norms only (the official code averages
    kurtosis over the first k evaluation batches and inf-norms over all of them).
    """

    def __init__(self):
        self.sums: dict[str, np.ndarray] = {}  # [kurtosis sum, inf-norm sum, inf-norm max]
        self.count: dict[str, int] = {}  # rows in the inf-norm mean
        self.kurtosis_count: dict[str, int] = {}  # rows in the kurtosis mean

    def update(self, stats: Mapping[str, tuple[jax.Array, jax.Array]], kurtosis=True) -> None:
        for name, (kurt, inf) in stats.items():
            kurt, inf = np.asarray(kurt, np.float64), np.asarray(inf, np.float64)
            s = np.array([kurt.sum() if kurtosis else 0.0, inf.sum(), inf.max(initial=0.0)])
            old = self.sums.get(name)
            self.sums[name] = (
                s if old is None else np.array([*(old[:2] + s[:2]), max(old[2], s[2])])
            )
            self.count[name] = self.count.get(name, 0) + inf.shape[0]
            k = self.kurtosis_count.get(name, 0)
            self.kurtosis_count[name] = k + (kurt.shape[0] if kurtosis else 0)

    def summary(self, patterns: Sequence[str] | None = None) -> dict:
        """Per-module means, the papers' aggregates and per-layer curves.

        ``patterns`` restricts the summary to the modules whose name (before any ``#k`` or
        ``[i]``) fully matches one of them, with the same ``:input`` / ``:tokens`` suffix.
        A module without kurtosis rows has kurtosis NaN.
        """
        regs = None if patterns is None else _resolve(patterns)
        per_module = {
            k: {
                "kurtosis": float(s[0] / self.kurtosis_count[k])
                if self.kurtosis_count[k]
                else float("nan"),
                "inf_norm": float(s[1] / self.count[k]),
                "inf_norm_max": float(s[2]),
            }
            for k, s in sorted(self.sums.items())
            if regs is None or _selected(regs, k)
        }
        if not per_module:
            raise ValueError("no module matched the patterns; nothing was captured.")
        kurts = [m["kurtosis"] for m in per_module.values()]
        infs = [m["inf_norm"] for m in per_module.values()]
        return {
            "avg_kurtosis": float(np.mean(kurts)),
            "max_kurtosis": float(np.max(kurts)),
            "max_inf_norm": float(np.max(infs)),
            "avg_inf_norm": float(np.mean(infs)),
            "num_modules": len(per_module),
            "num_samples": max(self.count[k] for k in per_module),
            "per_module": per_module,
            "per_layer": layer_curves(per_module),
        }


def _selected(regs, name: str) -> bool:
    base, suffix = split_suffix(name)
    base = re.split(r"[#\[]", base)[0]
    return any(suffix == s and r.fullmatch(base) for r, s in regs)


_LAYER = re.compile(r"^(.*?)(\d+)(.*)$")


def layer_curves(per_module: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, list]]:
    """Group modules by their path with the first integer replaced by ``*`` (the layer index).

    Returns {template: {"layer": [...], "kurtosis": [...], "inf_norm": [...]}} sorted by layer;
    paths without an integer are left out.
    """
    curves: dict[str, dict[str, list]] = {}
    for name, stats in per_module.items():
        m = _LAYER.match(name)
        if m is None:
            continue
        c = curves.setdefault(f"{m[1]}*{m[3]}", {"layer": [], "kurtosis": [], "inf_norm": []})
        c["layer"].append(int(m[2]))
        c["kurtosis"].append(stats["kurtosis"])
        c["inf_norm"].append(stats["inf_norm"])
    for c in curves.values():
        order = np.argsort(c["layer"])
        for key in c:
            c[key] = [c[key][i] for i in order]
    return curves


def default_inputs(batch) -> tuple[tuple, dict]:
    """A batch is the model's single positional input."""
    return (batch,), {}


def outlier_stats(
    model: nn.Module, variables, batches: Iterable, patterns: Sequence[str], **kw
) -> dict:
    """Outlier statistics of ``model`` over ``batches`` (see ``OutlierAccumulator.summary``).

    Keywords: ``inputs_fn(batch) -> (args, kwargs)`` maps a batch to the arguments of
    ``model.apply`` (default: the batch is the single positional input); array kwargs are
    traced, others (flags such as ``deterministic``) must be hashable. ``valid_fn(batch) ->
    bool [B]`` drops rows (eval padding) from the statistics. ``method``: the captured method.
    """
    return outlier_accumulator(model, variables, batches, patterns, **kw).summary()


def outlier_accumulator(
    model: nn.Module,
    variables,
    batches: Iterable,
    patterns: Sequence[str],
    *,
    inputs_fn: Callable[[object], tuple[tuple, dict]] = default_inputs,
    valid_fn: Callable[[object], np.ndarray] | None = None,
    method: str = "__call__",
    kurtosis_batches: int | None = None,
) -> OutlierAccumulator:
    """The filled accumulator behind ``outlier_stats`` (summarize subsets with ``summary``).

    ``kurtosis_batches``: kurtosis from the first k batches only (None: all); inf-norms
    always from every batch. ``valid_fn``'s [B] rows mask repeats over the tokens of
    ``:tokens`` rows.
    """
    patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    _resolve(patterns)
    run = jit_per_static(lambda static: _stats_fn(model, patterns, method, static))
    acc = OutlierAccumulator()
    for i, batch in enumerate(batches):
        stats = run(variables, *inputs_fn(batch))
        if valid_fn is not None:
            keep = np.asarray(valid_fn(batch), bool)
            stats = {k: tuple(_keep(np.asarray(a), keep) for a in v) for k, v in stats.items()}
        acc.update(stats, kurtosis=kurtosis_batches is None or i < kurtosis_batches)
    return acc


def _keep(values: np.ndarray, keep_B: np.ndarray) -> np.ndarray:
    """Rows of ``values`` [R] whose sample is kept; R = B * T repeats the [B] mask."""
    return values[np.repeat(keep_B, values.shape[0] // keep_B.shape[0])]


def jit_per_static(make: Callable[[dict], Callable]) -> Callable:
    """``run(variables, args, kwargs, *extra)`` calling ``jax.jit(make(static))``.

    ``kwargs`` of model inputs are split: arrays are traced, the rest (flags such as
    ``deterministic``) are static and must be hashable; ``make(static)`` is built and jitted
    once per distinct static set and called as ``f(variables, args, arrays, *extra)``.
    """
    compiled: dict[tuple, Callable] = {}

    def run(variables, args, kwargs, *extra):
        arrays = {k: v for k, v in kwargs.items() if isinstance(v, jax.Array | np.ndarray)}
        static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
        if static not in compiled:
            compiled[static] = jax.jit(make(dict(static)))
        return compiled[static](variables, args, arrays, *extra)

    return run


def _stats_fn(model, regs, method, static):
    def stats(variables, args, arr_kwargs):
        _, found = capture(
            model, variables, *args, patterns=regs, method=method, **arr_kwargs, **static
        )
        return batch_outlier_stats(found)

    return stats


def histogram(
    captured: Mapping[str, jax.Array], bins: int = 100
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{path: activation} -> {path: (counts [bins], edges [bins + 1])} over all entries."""
    return {
        k: np.histogram(np.asarray(v, np.float64).ravel(), bins=bins) for k, v in captured.items()
    }
