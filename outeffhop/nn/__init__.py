"""Thin Flax Linen wrappers over ``outeffhop.ops``: Hopfield layers, attention, dense, dropout."""

from outeffhop.nn.attention import AttentionProbe, HeadGate, MultiHeadAttention
from outeffhop.nn.dropout import Dropout
from outeffhop.nn.hopfield import Hopfield
from outeffhop.nn.pooling import HopfieldLayer, HopfieldPooling

__all__ = [
    "AttentionProbe",
    "Dropout",
    "HeadGate",
    "Hopfield",
    "HopfieldLayer",
    "HopfieldPooling",
    "MultiHeadAttention",
]
