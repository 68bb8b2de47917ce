"""OutEffHop: outlier-efficient modern Hopfield models and Softmax_1 attention in JAX.

The masked, stable plain softmax is ``outeffhop.softmax.softmax`` (the module keeps its name).
"""

from outeffhop.attention import attention_weights, dot_product_attention
from outeffhop.hopfield import hopfield_energy, hopfield_fixed_point, hopfield_retrieve
from outeffhop.hopfield_layers import HopfieldLayer, HopfieldPooling
from outeffhop.layers import Hopfield
from outeffhop.memory import associate, energy, retrieve
from outeffhop.outliers import inf_norm, kurtosis
from outeffhop.quant import fake_quantize
from outeffhop.softmax import (
    NORMALIZERS,
    clipped_softmax,
    logsumexp,
    lse_1,
    normalize,
    softmax_1,
)

__all__ = [
    "NORMALIZERS",
    "Hopfield",
    "HopfieldLayer",
    "HopfieldPooling",
    "associate",
    "energy",
    "retrieve",
    "attention_weights",
    "clipped_softmax",
    "dot_product_attention",
    "fake_quantize",
    "inf_norm",
    "kurtosis",
    "hopfield_energy",
    "hopfield_fixed_point",
    "hopfield_retrieve",
    "logsumexp",
    "lse_1",
    "normalize",
    "softmax_1",
]
