"""Validation of ``Hopfield`` layers: every bad field fails at construction, one sentence each."""

from __future__ import annotations

import jax
import numpy as np

from outeffhop.ops import softmax as sm

# gsh: STanHop's Generalized Sparse Hopfield, alpha-entmax with a learned alpha per head.
NORMALIZERS = (*sm.NORMALIZERS, "gsh")


def static_execution(m) -> bool:
    """hflayers' static-only mode: every projection, the norm in Hopfield space and W_O off."""
    return (
        m.stored_pattern_as_static
        and m.state_pattern_as_static
        and m.pattern_projection_as_static
        and not m.pattern_projection_as_connected
        and not m.normalize_hopfield_space
        and m.disable_out_projection
    )


def per_head(value, dtype):
    """A scalar stays a scalar; a per-head sequence becomes an array [H] (lead dims [B, H])."""
    arr = np.asarray(value, dtype)
    return arr if arr.ndim == 0 else arr.reshape(-1)


def _check_normalizer(m) -> None:
    sm.check_normalizer(m.normalizer, NORMALIZERS)
    if m.normalizer.startswith("clipped") and (m.gamma is None or m.zeta is None):
        raise ValueError(f"normalizer={m.normalizer!r} needs gamma and zeta; got None.")


def _check_sizes(m) -> None:
    if not isinstance(m.num_heads, int) or m.num_heads < 1:
        raise ValueError(f"num_heads must be a positive int; got {m.num_heads!r}.")
    for name in (
        "input_size",
        "hidden_size",
        "output_size",
        "pattern_size",
        "stored_pattern_size",
        "pattern_projection_size",
    ):
        v = getattr(m, name)
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int or None; got {v!r}.")
    if m.input_size is None and not static_execution(m):
        raise ValueError(
            "input_size is required unless all patterns are static, the Hopfield-space norm "
            "is off and the output projection is disabled."
        )
    if m.hidden_size is None and m.input_size is not None and m.input_size % m.num_heads:
        raise ValueError(
            f"num_heads={m.num_heads} must divide input_size={m.input_size} when "
            "hidden_size (the per-head size) is not given."
        )


def _check_iteration(m) -> None:
    steps = m.update_steps_max
    if steps is not None:
        arr = np.asarray(steps)
        if arr.dtype.kind not in "iu" or np.any(arr < 0) or arr.ndim > 1:
            raise ValueError(
                f"update_steps_max must be a non-negative int, one per head, or None; "
                f"got {steps!r}."
            )
        if arr.ndim == 1 and arr.shape[0] != m.num_heads:
            raise ValueError(f"update_steps_max must have num_heads={m.num_heads} entries.")
    for name in ("scaling", "update_steps_eps"):
        v = getattr(m, name)
        if v is None:
            continue
        arr = np.asarray(v, dtype=np.float64)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != m.num_heads) or np.any(arr <= 0):
            raise ValueError(
                f"{name} must be a positive float or one per head ({m.num_heads}); got {v!r}."
            )


def _check_options(m) -> None:
    if not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {m.dropout!r}.")
    if not isinstance(m.batch_first, bool):
        raise ValueError(f"batch_first must be a bool; got {m.batch_first!r}.")
    act = m.association_activation
    if act is not None and not callable(getattr(jax.nn, str(act), None)):
        raise ValueError(f"association_activation must name a jax.nn function; got {act!r}.")
    if m.concat_bias_pattern and (m.stored_pattern_as_static or m.pattern_projection_as_static):
        raise ValueError("concat_bias_pattern needs non-static stored patterns and projections.")


def _check_connected(m) -> None:
    if not m.pattern_projection_as_connected:
        return
    if m.stored_pattern_as_static:
        raise ValueError(
            "pattern_projection_as_connected needs stored_pattern_as_static=False "
            "(values are formed with the stored-pattern projection)."
        )
    if m.pattern_projection_as_static and m.pattern_dim != m.head_dim:
        raise ValueError(
            f"pattern_size must equal the per-head hidden size {m.head_dim} for static "
            f"connected projections; got {m.pattern_size}."
        )
    kdim = m.stored_pattern_size or m.input_size
    vdim = m.pattern_projection_size or m.input_size
    if kdim != vdim:
        raise ValueError(
            f"pattern_projection_as_connected needs pattern_projection_size == "
            f"stored_pattern_size; got {vdim} and {kdim}."
        )


def check_config(m) -> None:
    """Raises ValueError (one sentence naming the field) for a bad Hopfield configuration."""
    _check_normalizer(m)
    _check_sizes(m)
    _check_iteration(m)
    _check_options(m)
    _check_connected(m)


def check_inputs(m, stored, state, projection) -> None:
    """Raises ValueError naming the pattern whose shape does not fit the layer ``m``."""

    def need(x, name, size, field):
        if x.ndim != 3:
            raise ValueError(f"{name} must be 3-D [batch, length, features]; got {x.shape}.")
        if size is not None and x.shape[-1] != size:
            raise ValueError(f"{name} has {x.shape[-1]} features; {field} needs {size}.")

    hd, pd, d = m.head_dim, m.pattern_dim, m.input_size
    if static_execution(m):
        need(state, "state pattern", None, "")
        hd = pd = state.shape[-1]
    size = hd if m.stored_pattern_as_static else m.stored_pattern_size or d
    need(stored, "stored pattern", size, "stored_pattern_size (or input_size)")
    need(state, "state pattern", hd if m.state_pattern_as_static else d, "input_size")
    if m.pattern_projection_as_static and not m.pattern_projection_as_connected:
        size = None if m.disable_out_projection else pd
        need(projection, "pattern projection", size, "pattern_size (static projection)")
    else:
        size = m.pattern_projection_size or d
        need(projection, "pattern projection", size, "pattern_projection_size (or input_size)")
    if stored.shape[:2] != projection.shape[:2] or stored.shape[0] != state.shape[0]:
        raise ValueError(
            f"stored patterns and pattern projections must share batch and length, and the "
            f"state patterns the batch; got {stored.shape}, {projection.shape}, {state.shape}."
        )
