"""Dropout whose backward pass reuses the forward mask instead of regenerating it.

``flax.linen.Dropout`` draws its mask inside the differentiated function, and XLA may
recompute the random bits wherever the backward pass needs the mask (with counter-based
PRNGs such as philox, whose bits fuse into elementwise loops, it does). This module draws
the same mask from the same key (same module name, same ``make_rng`` call, same
``bernoulli``), so its outputs equal ``nn.Dropout``'s, but a custom VJP keeps the boolean
mask as the residual and an optimization barrier makes XLA materialize it once.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def masked_scale(x, keep, keep_prob: float):
    """``where(keep, x / keep_prob, 0)`` with a VJP that reads ``keep`` (no recomputation)."""
    return jax.lax.select(keep, x / keep_prob, jnp.zeros_like(x))


def _fwd(x, keep, keep_prob):
    return masked_scale(x, keep, keep_prob), keep


def _bwd(keep_prob, keep, g):
    return jax.lax.select(keep, g / keep_prob, jnp.zeros_like(g)), None


masked_scale.defvjp(_fwd, _bwd)


class Dropout(nn.Module):
    """Inverted dropout; the same mask and outputs as ``nn.Dropout`` (no broadcast dims)."""

    rate: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, inputs, deterministic: bool | None = None):
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        keep = jax.random.bernoulli(self.make_rng(self.rng_collection), keep_prob, inputs.shape)
        return masked_scale(inputs, jax.lax.optimization_barrier(keep), keep_prob)
