"""LayerNorm with two-pass variance: exact for activations whose mean dwarfs their spread.

flax's ``nn.LayerNorm`` defaults to ``use_fast_variance=True``, ``var = E[x^2] - E[x]^2``,
which cancels catastrophically in float32 once |mean| >> std: at mean 1e3 and std 1 the
two terms are 1e6 apart by 1, below float32's resolution there, and the output's relative
error reaches 0.14. Outliers in the residual stream are exactly such inputs, so every
LayerNorm of the models uses the two-pass form ``var = E[(x - E[x])^2]`` (as PyTorch does).
"""

from __future__ import annotations

import flax.linen as nn


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` with two-pass variance (same parameters ``scale`` / ``bias``).

    y = (x - mean) / sqrt(mean((x - mean)^2) + epsilon) * scale + bias, the statistics over
    ``reduction_axes`` in at least float32.
    """

    use_fast_variance: bool = False
