"""The evaluation protocols of the outlier study: ``official`` (default) and ``ours``.

A protocol fixes everything the table's numbers depend on besides the model: the W8A8
quantizer sites and weight set, the activation range estimator, how many calibration
batches come from which split, on how many batches kurtosis is averaged, which module set
gives the headline kurtosis / inf-norm and which sets' maxima are reported alongside.

- ``official``: the official OutEffHop code (which reuses Bondarenko et al.'s quantization
  code; docs/references.md cites its files): every Linear *output* is quantized (Q, K, V,
  attention output and FFN dense outputs before the residual add; the first FFN dense
  after its activation), the attention scores, probabilities and context, the residual
  sums and LayerNorm outputs; weights are the Linear kernels, the embedding tables and the
  LayerNorm scales, symmetric, with the unsigned grid 0..255 for a tensor with no negative
  entry; ranges are estimated with the quantizers on; the LM heads stay float32 (BERT's
  whole MLM head; OPT's runs use ``--quant_setup fp32_head``). Per model (``spec``, from
  the model module's ``OFFICIAL_PROTOCOL``): BERT calibrates with plain running min/max on
  the first 16 *evaluation* batches, OPT with a running 99.999 percentile over 4 training
  batches; kurtosis over the first 257 (BERT) / 101 (OPT) evaluation batches.
- ``ours``: the input-side sites (inputs of every Dense and LayerNorm, attention scores and
  weights; ``quant.DEFAULT_SITES``), Dense kernels only, running min/max on held-out
  training batches, kurtosis on every evaluation batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from outeffhop.measure import quant

PROTOCOLS = ("official", "ours")
SPLITS = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One evaluation protocol for one model family."""

    name: str
    quant: quant.QuantConfig  # the W8A8 recipe: sites, weights, estimator
    num_calib: int = 16  # calibration batches
    calib_split: str = "train"  # "train" (held out from the eval split) or "eval"
    kurtosis_batches: int | None = None  # kurtosis on the first k outlier batches; None = all
    headline: str = "paper"  # module set of the table's avg kurtosis and max inf-norm
    reported: tuple[str, ...] = ("ffn", "layers")  # sets whose max inf-norm is reported too
    per_batch_metric: bool = False  # loss = mean over batches of each batch's mean loss

    def __post_init__(self):
        check_protocol(self.name)
        if self.calib_split not in SPLITS:
            raise ValueError(f"calib_split must be 'train' or 'eval'; got {self.calib_split!r}.")
        if not isinstance(self.num_calib, int) or self.num_calib < 1:
            raise ValueError(f"num_calib must be a positive int; got {self.num_calib!r}.")


def check_protocol(name: str) -> None:
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {name!r}.")


def sites(spec_sites) -> tuple[quant.Site, ...]:
    """(module_type, path, method, where) tuples -> ``quant.Site``s."""
    return tuple(quant.Site(module_type=t, path=p, method=m, where=w) for t, p, m, w in spec_sites)


def official(spec: Mapping) -> Protocol:
    """The official protocol for a model family's ``OFFICIAL_PROTOCOL`` spec (plain data)."""
    recipe = quant.QuantConfig(
        weight_names=tuple(spec["weight_names"]),
        weight_exclude=tuple(spec.get("weight_exclude", ())),
        weight_unsigned_nonnegative=True,
        estimator=spec["estimator"],
        percentile=spec.get("percentile", 99.999),
        sites=sites(spec["sites"]),
        sequential_calibration=True,
    )
    return Protocol(
        "official",
        recipe,
        num_calib=spec["num_calib"],
        calib_split=spec["calib_split"],
        kurtosis_batches=spec["kurtosis_batches"],
        headline=spec.get("headline", "official"),
        reported=tuple(spec.get("reported", ())),
        per_batch_metric=True,
    )


def ours(num_calib: int = 16) -> Protocol:
    """The input-side protocol of this project (the defaults of ``quant.QuantConfig``)."""
    return Protocol("ours", quant.QuantConfig(), num_calib=num_calib)


def get(name: str, spec: Mapping | None = None) -> Protocol:
    """``official(spec)`` or ``ours()``; ValueError for another name or a missing spec."""
    check_protocol(name)
    if name == "ours":
        return ours()
    if spec is None:
        raise ValueError("protocol 'official' needs the model family's OFFICIAL_PROTOCOL spec.")
    return official(spec)
