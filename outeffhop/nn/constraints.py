"""Activation sharding constraints by logical axis names (identity unless a trainer asks).

``activation_sharding(mesh, rules)`` (entered inside the traced train step) makes every
``constrain(x, names)`` a ``jax.lax.with_sharding_constraint`` to the spec that the logical
``rules`` give ``names`` (``outeffhop.models.partitioning.logical_axis_rules``). Outside it,
``constrain`` returns ``x``: models run unchanged on one device, in tests and in eval code.
"""

from __future__ import annotations

import contextlib
import contextvars

import flax.linen as nn
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

_ACTIVE = contextvars.ContextVar("outeffhop_activation_sharding", default=None)


@contextlib.contextmanager
def activation_sharding(mesh, rules):
    """Within the block, ``constrain`` pins activations to ``rules`` on ``mesh``.

    Enter it inside the traced function (the train step), so that every trace sees it.
    """
    token = _ACTIVE.set((mesh, rules))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def activation_spec(shape, names, mesh, rules) -> P:
    """The PartitionSpec of an activation of ``shape`` with logical ``names``.

    A dimension that its mesh axis does not divide stays whole (e.g. a batch of 1 at init).
    """
    axes = nn.logical_to_mesh_axes(names, rules)
    out = []
    for dim, axis in zip(shape, tuple(axes), strict=True):
        size = 1 if axis is None else mesh.shape[axis]
        out.append(axis if axis is not None and dim % size == 0 else None)
    return P(*out)


def constrain(x, names):
    """``x`` with a sharding constraint from its logical ``names``; identity outside
    ``activation_sharding`` (single device, tests, eval outside the trainer)."""
    active = _ACTIVE.get()
    if active is None:
        return x
    mesh, rules = active
    spec = activation_spec(x.shape, names, mesh, rules)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


# Activation names of the arrays the models constrain.
RESIDUAL = ("batch", "act_seq", "act_embed")  # [B, L, D] (act_seq: sequence parallel)
HEADS = ("batch", "act_length", "act_heads", "act_kv")  # [B, L, H, Dh]
FFN_HIDDEN = ("batch", "act_length", "act_mlp")  # [B, L, F]
LOGITS = ("batch", "act_length", "act_vocab")  # [B, L, V]
