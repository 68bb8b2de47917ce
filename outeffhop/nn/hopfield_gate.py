"""A per-head gate for Hopfield layers: the gated-attention baseline in Hopfield form.

``GatedHopfield`` runs a ``Hopfield`` (or ``HopfieldLayer``) with its output projection off,
multiplies each head's retrieved pattern by ``HeadGate`` (outeffhop.nn.attention: sigmoid of
a per-head function of the state pattern R, split into heads) and applies the output
projection W_O itself:

  out = W_O concat_h( g_h(R) * (xi_h V_h) ),   g_h in (0, 1)

so a head can output ~0 by closing its gate instead of by concentrating its association on
a no-op pattern (the outlier mechanism OutEffHop removes with Softmax_1). ``Hopfield`` has
no gate of its own; wrapping keeps it untouched. Parameters: ``hopfield/...`` (the wrapped
layer), ``gate/...``, ``out_proj/...``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from outeffhop.nn.attention import HeadGate
from outeffhop.nn.hopfield import PATTERN_INIT, Hopfield
from outeffhop.nn.pooling import HopfieldLayer

GATES = ("unconditional_per_head", "conditional_per_head", "conditional_per_token")
LAYERS = {"hopfield": Hopfield, "lookup": HopfieldLayer}


class GatedHopfield(nn.Module):
    """``layer`` ("hopfield": inputs as ``Hopfield``; "lookup": ``HopfieldLayer``, the input
    is the state) with fields ``kwargs`` ((name, value) pairs; ``input_size`` and
    ``num_heads`` required), each head's output gated by ``HeadGate(gate, mlp, gate_init)``
    of the state pattern [B, L, input_size]."""

    layer: str = "hopfield"
    kwargs: tuple[tuple[str, Any], ...] = ()
    gate: str = "conditional_per_token"
    gate_mlp: bool = False
    gate_init: float = 0.5

    def __post_init__(self):
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}; got {self.layer!r}.")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {', '.join(GATES)}; got {self.gate!r}.")
        fields = dict(self.kwargs)
        if fields.get("input_size") is None:
            raise ValueError("kwargs must give input_size (the state pattern width); got None.")
        if fields.get("disable_out_projection"):
            raise ValueError("kwargs must not set disable_out_projection: the gate needs W_O.")
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs, *, deterministic: bool = True, return_association: bool = False):
        fields = dict(self.kwargs)
        hop = LAYERS[self.layer](**fields, disable_out_projection=True, name="hopfield")
        out, xi = hop(inputs, deterministic=deterministic, return_association=True)
        state = inputs[1] if isinstance(inputs, tuple | list) else inputs
        b, length, width = out.shape
        h = fields.get("num_heads", 1)
        g = HeadGate(h, self.gate, self.gate_mlp, self.gate_init, name="gate")(state)
        out = (out.reshape(b, length, h, width // h) * g.astype(out.dtype)).reshape(out.shape)
        size = fields.get("output_size") or fields["input_size"]
        out = nn.Dense(size, fields.get("input_bias", True), kernel_init=PATTERN_INIT,
                       name="out_proj")(out)  # fmt: skip
        return (out, xi) if return_association else out
