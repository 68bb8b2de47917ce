"""The one evaluator of the outlier protocol: FP metric, outlier statistics, calibration, W8A8.

Every study (the transformers' table, STanHop-Net, the induction task) evaluates a trained
model the same way:

1. FP metric: ``metric(sums)`` of ``forward`` summed over the evaluation batches;
2. outlier statistics (``outliers``) of each named module set over the outlier batches
   (kurtosis over the first ``kurtosis_batches`` of them, inf-norms over all);
3. for each quantization recipe: static activation ranges from the calibration batches
   (``quant.calibrate``), then the quantized model's ``metric(sums)`` on the same
   evaluation batches.

The protocols that fix recipes, batch counts and reported sets are in
``outeffhop.measure.protocols`` (``official`` and ``ours``).

``forward(variables, batch) -> {name: scalar}`` returns per-batch *sums* (loss * tokens,
tokens, ...), so ``metric`` sees totals and any batch split gives the same value; quantizer
sites record ranges by Python side effects, so ``forward`` must not put them inside lax
control flow (cond/scan/while).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from outeffhop.measure import outliers, quant

Metric = Callable[[Mapping[str, float]], dict]


def quantized_metrics(forward, variables, calib_batches, eval_batches, recipes, metric) -> dict:
    """{recipe name: metric(sums) of the quantized model} for each ``quant.QuantConfig``."""
    out = {}
    for name, qc in recipes.items():
        ranges = quant.calibrate(forward, variables, calib_batches, qc) if qc.act_bits else None
        out[name] = metric(
            quant.sum_metrics(quant.quantized(forward, ranges, qc), variables, eval_batches)[0]
        )
    return out


def evaluate(
    model,
    variables,
    *,
    forward: quant.Forward,
    metric: Metric,
    eval_batches: Sequence,
    calib_batches: Sequence,
    module_sets: Mapping[str, Sequence[str]],
    inputs_fn: Callable,
    valid_fn: Callable | None = None,
    outlier_batches: Sequence | None = None,
    recipes: Mapping[str, quant.QuantConfig] | None = None,
    headline: str = "paper",
    kurtosis_batches: int | None = None,
    reported: Sequence[str] = (),
) -> dict:
    """The protocol's numbers for one trained model.

    ``module_sets``: {name: module-path regexes}; ``headline`` names the set whose
    ``avg_kurtosis`` and ``max_inf_norm`` are the table's columns. ``inputs_fn(batch) ->
    (args, kwargs)`` of ``model.apply`` for the outlier capture; ``valid_fn(batch) -> bool
    [B]`` drops padding rows from the statistics. ``outlier_batches`` default to the
    evaluation batches; ``recipes`` to the papers' W8A8 alone (key "W8A8").
    ``kurtosis_batches``: kurtosis from the first k outlier batches (None: all).
    ``reported``: module sets whose max inf-norm is reported separately ("maxima").

    Returns {"fp": metric, "outliers": {set: summary}, "quantized": {recipe: metric},
    "avg_kurtosis", "max_inf_norm", "maxima": {set: max inf-norm},
    "w8a8" (= quantized["W8A8"] when present)}.
    """
    for name in (headline, *reported):
        if name not in module_sets:
            raise ValueError(
                f"headline and reported must name module sets {sorted(module_sets)}; got {name!r}."
            )
    recipes = {"W8A8": quant.QuantConfig()} if recipes is None else recipes
    fp = metric(quant.sum_metrics(forward, variables, eval_batches)[0])
    union = tuple(dict.fromkeys(p for patterns in module_sets.values() for p in patterns))
    acc = outliers.outlier_accumulator(
        model,
        variables,
        eval_batches if outlier_batches is None else outlier_batches,
        union,
        inputs_fn=inputs_fn,
        valid_fn=valid_fn,
        kurtosis_batches=kurtosis_batches,
    )
    stats = {name: acc.summary(tuple(p)) for name, p in module_sets.items()}
    quantized = quantized_metrics(forward, variables, calib_batches, eval_batches, recipes, metric)
    return {
        "fp": fp,
        "outliers": stats,
        "quantized": quantized,
        "avg_kurtosis": stats[headline]["avg_kurtosis"],
        "max_inf_norm": stats[headline]["max_inf_norm"],
        "maxima": {name: stats[name]["max_inf_norm"] for name in reported},
        "w8a8": quantized.get("W8A8"),
    }


def weighted_rows(batch) -> np.ndarray:
    """bool [B]: rows with a positive ``weight`` (eval padding has weight 0), else all."""
    if "weight" in batch:
        return np.asarray(batch["weight"]) > 0
    return np.ones(len(next(iter(batch.values()))), bool)
