"""OutEffHop: outlier-efficient modern Hopfield models and Softmax_1 attention in JAX.

Layout (imports flow downwards only): ``ops`` pure JAX math; ``nn`` thin Linen layers;
``models`` BERT, OPT, ViT, STanHop-Net; ``measure`` outliers, attention mass, quantization,
evaluation (no model knowledge); ``data`` grain pipelines; ``train`` the sharded optax loop
and its tasks; ``experiments`` the studies; ``launch`` configs and process start-up.

The names below are the notebook API. ``hopfield_energy``, ``hopfield_retrieve`` and
``hopfield_fixed_point`` are the 0.1 names of ``energy``, ``update`` and ``fixed_point``,
kept for one release. The masked, stable plain softmax is ``outeffhop.ops.softmax.softmax``.
"""

import importlib

# name -> module that defines it; imported on first use, so that ``import outeffhop`` (and
# the scripts' start-up, which restarts the process once) does not pay for jax and flax.
_API = {
    "NORMALIZERS": "outeffhop.ops.softmax",
    "clipped_softmax": "outeffhop.ops.softmax",
    "logsumexp": "outeffhop.ops.softmax",
    "lse_1": "outeffhop.ops.softmax",
    "normalize": "outeffhop.ops.softmax",
    "softmax_1": "outeffhop.ops.softmax",
    "attention_weights": "outeffhop.ops.attention",
    "dot_product_attention": "outeffhop.ops.attention",
    "associate": "outeffhop.ops.hopfield",
    "energy": "outeffhop.ops.hopfield",
    "fixed_point": "outeffhop.ops.hopfield",
    "retrieve": "outeffhop.ops.hopfield",
    "update": "outeffhop.ops.hopfield",
    "hopfield_energy": "outeffhop.ops.hopfield",
    "hopfield_fixed_point": "outeffhop.ops.hopfield",
    "hopfield_retrieve": "outeffhop.ops.hopfield",
    "Hopfield": "outeffhop.nn.hopfield",
    "HopfieldLayer": "outeffhop.nn.pooling",
    "HopfieldPooling": "outeffhop.nn.pooling",
    "inf_norm": "outeffhop.measure.outliers",
    "kurtosis": "outeffhop.measure.outliers",
    "fake_quantize": "outeffhop.measure.quant",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'outeffhop' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_API})
