"""Real int8 static-range PTQ of a Linen model's matmuls with qwix (docs/outliers_and_w8a8.md).

Every ``dot_general`` (the Dense / DenseGeneral matmuls; attention's q.k and p.v einsums
stay in float) runs as int8 x int8 -> int32: weights symmetric int8 (absmax), activations
asymmetric int8 with static ranges. Two qwix defaults differ from the papers' protocol and
are overridden: (1) its "minmax" calibration averages per-example ranges, while the papers
take a running min/max over whole batches, so the ranges come from ``quant.calibrate``
(sites: Dense inputs), widened to contain 0, and are written into qwix's ``quant_stats``;
(2) its PTQ weights are per output channel with scale absmax / 127.5, so they are rebuilt
after ``quantize_params`` with the papers' absmax / 127, per tensor (default) or channel.
With both, the int8 model computes exactly the ``quant.fake_quantize`` grid (tested).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import qwix

from outeffhop.measure import quant

DENSE_INPUTS = quant.Site(module_type="Dense|DenseGeneral")
# Every module but a tied LM head (``word_embeddings.attend``): qwix would take the
# embedding table for an activation, and the papers keep the LM head in float.
DEFAULT_MODULE_PATH = r"(?!word_embeddings).*"


def rules(module_path: str = DEFAULT_MODULE_PATH, *, per_channel: bool = False) -> list:
    """The qwix rule: int8 weights and static int8 activations on ``dot_general`` ops."""
    return [
        qwix.QtRule(
            module_path=module_path,
            op_names=("dot_general",),
            weight_qtype=jnp.int8,
            act_qtype=jnp.int8,
            act_static_scale=True,
            act_calibration_method="minmax",
            act_batch_axes=(0, 1),
            disable_channelwise_axes=not per_channel,
        )
    ]


def calibration_config(estimator: str = "running_minmax") -> quant.QuantConfig:
    """The ``quant.calibrate`` recipe whose ranges feed qwix: float weights, Dense inputs."""
    return quant.QuantConfig(
        weight_bits=None, act_bits=8, estimator=estimator, sites=(DENSE_INPUTS,)
    )


def _quant_stats(abstract_stats, ranges):
    """qwix ``quant_stats`` (count 1, sums = our ranges) from {site: (lo, hi)}."""
    flat = jax.tree_util.tree_flatten_with_path(
        abstract_stats, is_leaf=lambda x: isinstance(x, dict) and "count" in x
    )[0]
    out: dict = {}
    for keypath, stat in flat:
        names = [k.key for k in keypath]
        if names[-1] != "dot_general0_lhs":
            raise ValueError(
                f"qwix site {'/'.join(names)!r} is not the single Dense matmul input; "
                "only modules with one dot_general per call are supported."
            )
        site = f"{'/'.join(names[:-1])}:__call__:in0"
        if site not in ranges:
            raise ValueError(f"ranges has no entry for {site!r}; calibrate with DENSE_INPUTS.")
        lo, hi = min(float(ranges[site][0]), 0.0), max(float(ranges[site][1]), 0.0)
        node = out
        for n in names[:-1]:
            node = node.setdefault(n, {})
        node[names[-1]] = {
            "count": jnp.ones((), jnp.int32),
            "sum_of_min": jnp.full(stat["sum_of_min"].shape, lo, jnp.float32),
            "sum_of_max": jnp.full(stat["sum_of_max"].shape, hi, jnp.float32),
        }
    return out


def _is_qweight(x) -> bool:
    return isinstance(getattr(x, "array", None), qwix.QArray)


def _symmetric_127(qparams, params, per_channel):
    """qwix int8 weights rebuilt with the papers' scale ``absmax / 127`` (qwix uses 127.5).

    Per tensor: one absmax; per channel: absmax over the axes qwix reduces (its scale has
    size 1 there). Integers are clipped to [-127, 127].
    """

    def fix(path, leaf):
        if not _is_qweight(leaf):
            return leaf
        w = params
        for k in path:
            w = w[k.key]
        qa = leaf.array
        w = w.reshape(qa.qvalue.shape).astype(jnp.float32)
        axes = tuple(i for i, n in enumerate(qa.scale.shape) if n == 1 or not per_channel)
        scale = jnp.max(jnp.abs(w), axis=axes, keepdims=True) / 127.0
        scale = jnp.where(scale > 0, scale, 1.0)
        qvalue = jnp.clip(jnp.round(w / scale), -127, 127)
        qa = dataclasses.replace(
            qa,
            qvalue=qvalue.astype(qa.qvalue.dtype),
            scale=jnp.broadcast_to(scale, qa.scale.shape).astype(qa.scale.dtype),
        )
        return dataclasses.replace(leaf, array=qa)

    return jax.tree_util.tree_map_with_path(fix, qparams, is_leaf=_is_qweight)


def int8_ptq(
    model: nn.Module,
    variables,
    ranges: dict,
    *init_args,
    module_path: str = DEFAULT_MODULE_PATH,
    per_channel: bool = False,
    **init_kwargs,
) -> tuple[nn.Module, dict]:
    """(int8 model, its variables) for ``model``; ``init_args/kwargs`` are example inputs.

    ``ranges`` is ``quant.calibrate(forward, variables, batches, calibration_config())``.
    ``module_path`` restricts which modules are quantized (e.g. to leave the LM head out).
    """
    rs = rules(module_path, per_channel=per_channel)
    key = jax.random.key(0)
    qt = qwix.quantize_model(model, qwix.QtProvider(rs))
    abstract_qt = jax.eval_shape(lambda: qt.init(key, *init_args, **init_kwargs))
    stats = _quant_stats(abstract_qt.get("quant_stats", {}), ranges)
    ptq = qwix.quantize_model(model, qwix.PtqProvider(rs))
    abstract = jax.eval_shape(lambda: ptq.init(key, *init_args, **init_kwargs))
    params = nn.unbox(variables["params"])
    qparams = qwix.quantize_params(params, abstract["params"], stats)
    qparams = _symmetric_127(qparams, params, per_channel)
    rest = {k: v for k, v in variables.items() if k != "params"}
    return ptq, {**rest, "params": qparams}


def int8_evaluate(
    make_forward: Callable[[nn.Module], quant.Forward],
    model: nn.Module,
    variables,
    calib_batches: Iterable,
    eval_batches: Iterable,
    *init_args,
    estimator: str = "running_minmax",
    module_path: str = DEFAULT_MODULE_PATH,
    per_channel: bool = False,
    **init_kwargs,
) -> dict[str, float]:
    """Calibrate, convert to int8 with qwix, and return the mean metrics over ``eval_batches``.

    ``make_forward(model)`` gives ``forward(variables, batch) -> metrics`` for that model.
    """
    ranges = quant.calibrate(
        make_forward(model), variables, calib_batches, calibration_config(estimator)
    )
    qmodel, qvars = int8_ptq(
        model,
        variables,
        ranges,
        *init_args,
        module_path=module_path,
        per_channel=per_channel,
        **init_kwargs,
    )
    return quant.mean_metrics(make_forward(qmodel), qvars, eval_batches)
