"""HopfieldPooling (learned state patterns) and HopfieldLayer (learned stored patterns).

Both are ``Hopfield`` (outeffhop.nn.hopfield) with one pattern set held as weights, as in
hflayers. The learned patterns are initialized N(0, 0.02); ``trainable=False`` keeps them
in the ``constants`` collection instead of ``params``, so optimizers never see them. They
enter the association with batch 1 (broadcast there): their LayerNorm and projection run
once, not once per batch element as in hflayers (which expands them first).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from outeffhop.nn import hopfield_checks as checks
from outeffhop.nn.hopfield import PATTERN_INIT, Hopfield

CONSTANTS = "constants"


def _learned(module, name: str, shape: tuple[int, ...], trainable: bool):
    """A [quantity, size] pattern array, N(0, 0.02), a param or a constant."""
    if trainable:
        return module.param(name, PATTERN_INIT, shape, module.param_dtype)
    init = lambda: PATTERN_INIT(module.make_rng("params"), shape, module.param_dtype)  # noqa: E731
    return module.variable(CONSTANTS, name, init).value


def _check_quantity(m) -> None:
    if m.input_size is None:
        raise ValueError(f"input_size is required by {type(m).__name__}; got None.")
    if not isinstance(m.quantity, int) or m.quantity < 1:
        raise ValueError(f"quantity must be a positive int; got {m.quantity!r}.")


def _batched(x, b: int) -> jax.ShapeDtypeStruct:
    """The shape [b, ...] a batch-1 pattern array broadcasts to (for the shape checks)."""
    return jax.ShapeDtypeStruct((b,) + x.shape[1:], x.dtype)


def _batch_first(x, batch_first: bool):
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"inputs must be 3-D [batch, length, features]; got shape {x.shape}.")
    return x if batch_first else jnp.swapaxes(x, 0, 1)


class HopfieldPooling(Hopfield):
    """Pools stored patterns with ``quantity`` learned state patterns (hflayers.HopfieldPooling).

    Call with one array (stored patterns = projections) or ``(stored, projection)``;
    returns [B, quantity * output_size] for either ``batch_first`` (inputs [L, B, D] when
    False). hflayers agrees for batch-first inputs only: with ``batch_first=False`` it
    flattens its [quantity, B, output_size] result from dim 1, i.e. returns
    [quantity, B * output_size], mixing the batch into the features.
    """

    quantity: int = 1  # number of learned state patterns
    trainable: bool = True  # False: state patterns live in the 'constants' collection

    def __post_init__(self):
        _check_quantity(self)
        super().__post_init__()

    def setup(self):
        super().setup()
        size = self.head_dim if self.state_pattern_as_static else self.input_size
        self.pooling_weights = _learned(
            self, "pooling_weights", (self.quantity, size), self.trainable
        )

    def __call__(
        self,
        inputs,
        stored_pattern_mask=None,
        association_mask=None,
        *,
        deterministic: bool = True,
        return_association: bool = False,
    ):
        """``stored_pattern_mask`` [B, S] (True = real pattern); masks as in ``Hopfield``."""
        if isinstance(inputs, tuple | list):
            if len(inputs) != 2:
                raise ValueError(f"inputs must be one array or 2 arrays; got {len(inputs)}.")
            stored, projection = inputs
        else:
            stored = projection = inputs
        stored = _batch_first(stored, self.batch_first)
        projection = _batch_first(projection, self.batch_first)
        b = stored.shape[0]
        state = self.pooling_weights[None]  # batch 1: normalized and projected once
        checks.check_inputs(self, stored, _batched(state, b), projection)
        out, xi = self._associate(
            stored, state, projection, stored_pattern_mask, association_mask, deterministic
        )
        out = out.reshape(b, -1)
        return (out, xi) if return_association else out


class HopfieldLayer(Hopfield):
    """Looks inputs up in ``quantity`` learned stored patterns (hflayers.HopfieldLayer).

    The input [B, L, input_size] is the state pattern; the learned lookup weights are the
    stored patterns and, unless ``lookup_weights_as_separated``, also the projections.
    Returns [B, L, output_size] (or [L, B, ...] without ``batch_first``).
    """

    quantity: int = 1  # number of learned stored patterns
    trainable: bool = True  # False: lookup weights live in the 'constants' collection
    lookup_weights_as_separated: bool = False  # learn separate targets (pattern projections)
    lookup_targets_as_trainable: bool = True

    def __post_init__(self):
        _check_quantity(self)
        super().__post_init__()

    def setup(self):
        super().setup()
        size = (
            self.head_dim
            if self.stored_pattern_as_static
            else self.stored_pattern_size or self.input_size
        )
        q = self.quantity
        self.lookup_weights = _learned(self, "lookup_weights", (q, size), self.trainable)
        self.target_weights = None
        if self.lookup_weights_as_separated:
            t = self.pattern_projection_size or size
            self.target_weights = _learned(
                self, "target_weights", (q, t), self.lookup_targets_as_trainable
            )

    def __call__(
        self,
        inputs,
        stored_pattern_mask=None,
        association_mask=None,
        *,
        deterministic: bool = True,
        return_association: bool = False,
    ):
        """``stored_pattern_mask`` [B, quantity] (True = keep); masks as in ``Hopfield``."""
        state = _batch_first(inputs, self.batch_first)
        b = state.shape[0]
        stored = self.lookup_weights[None]  # batch 1: normalized and projected once
        targets = self.lookup_weights if self.target_weights is None else self.target_weights
        projection = targets[None]
        checks.check_inputs(self, _batched(stored, b), state, _batched(projection, b))
        out, xi = self._associate(
            stored, state, projection, stored_pattern_mask, association_mask, deterministic
        )
        if not self.batch_first:
            out = jnp.swapaxes(out, 0, 1)
        return (out, xi) if return_association else out
