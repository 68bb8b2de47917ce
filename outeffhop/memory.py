"""Plain multi-head Hopfield association, retrieval and energy on raw patterns (no projections).

The pure-function API that ``hflayers`` lacks: give it state patterns ``states`` [..., L, d]
and stored patterns ``stored`` [..., S, d] (leading dims, e.g. [B, H], broadcast), get the
association matrix, the retrieved patterns per head, or the energy. ``beta`` and the
iteration controls are scalars or arrays broadcastable to the leading dims (e.g. [H]).

Association with ``update_steps_max = n`` (the hflayers iteration, in key space):
  xi_0     = N(beta * states @ stored^T)                       [..., L, S]
  xi_{t+1} = N(beta * (xi_t @ stored) @ stored^T)               for t < n,
stopping early where ||xi_{t+1} - xi_t||_F <= update_steps_eps (Frobenius over [L, S]).
N is softmax, softmax1 (Softmax_1), clipped or clipped_softmax1. Retrieval returns
xi @ values (values default to ``stored``: the pure Hopfield update T(x) applied n + 1 times).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop import softmax as sm

ENERGY_NORMALIZERS = ("softmax", "softmax1")


def _concrete_any(flag) -> bool:
    try:
        return bool(jnp.any(flag))
    except jax.errors.ConcretizationTypeError:  # traced: cannot check here
        return False


def _check(states, stored, beta, normalizer, allowed=sm.NORMALIZERS):
    sm.check_normalizer(normalizer, allowed)
    states, stored = jnp.asarray(states), jnp.asarray(stored)
    if states.ndim < 2 or stored.ndim < 2:
        raise ValueError(
            f"states and stored must be [..., L, d] and [..., S, d]; got shapes "
            f"{states.shape} and {stored.shape}."
        )
    if states.shape[-1] != stored.shape[-1]:
        raise ValueError(
            f"states and stored must share the pattern size d; got {states.shape[-1]} and "
            f"{stored.shape[-1]}."
        )
    if _concrete_any(jnp.asarray(beta) <= 0):
        raise ValueError(f"beta must be positive; got {beta}.")
    return states, stored


def _lead(a, extra: int = 2):
    """Appends ``extra`` unit axes so a per-leading-dim array broadcasts over [..., L, S]."""
    a = jnp.asarray(a)
    return a.reshape(a.shape + (1,) * extra)


def association_scores(states, stored, beta) -> jax.Array:
    """beta * states @ stored^T: [..., L, d] x [..., S, d] -> [..., L, S]."""
    return jnp.einsum("...ld,...sd->...ls", states, stored) * _lead(beta)


def associate(
    states,
    stored,
    *,
    beta,
    normalizer: str = "softmax1",
    update_steps_max: int | None = 0,
    update_steps_eps=1e-4,
    mask=None,
    gamma: float | None = None,
    zeta: float | None = None,
    stop_axes: tuple[int, ...] = (),
) -> tuple[jax.Array, jax.Array]:
    """Association matrix xi [..., L, S] after up to ``update_steps_max`` updates.

    ``mask``: boolean, broadcastable to [..., L, S], True = may associate. Masked entries
    are 0; a fully masked row is all zeros. ``update_steps_max``: a non-negative int, an
    array of them broadcastable to the leading dims (one per head), or None (iterate until
    the tolerance is met, forward-only: ``lax.while_loop`` has no reverse derivative).
    ``stop_axes``: leading axes that share one stopping decision (hflayers takes the max of
    the change over the batch axis, per head). Returns ``(xi, steps)`` with ``steps`` the
    number of updates each leading index took, int32 of the leading shape.
    """
    states, stored = _check(states, stored, beta, normalizer)
    lead = jnp.broadcast_shapes(states.shape[:-2], stored.shape[:-2], jnp.shape(beta))
    if update_steps_max is not None:
        update_steps_max = np.asarray(update_steps_max)
        if update_steps_max.dtype.kind not in "iu" or np.any(update_steps_max < 0):
            raise ValueError(
                f"update_steps_max must be a non-negative int (or one per head) or None; "
                f"got {update_steps_max}."
            )
    if _concrete_any(jnp.asarray(update_steps_eps) <= 0):
        raise ValueError(f"update_steps_eps must be positive; got {update_steps_eps}.")

    def norm(scores):
        return sm.normalize(scores, normalizer, axis=-1, where=mask, gamma=gamma, zeta=zeta)

    xi = norm(association_scores(states, stored, beta))
    lead = jnp.broadcast_shapes(lead, xi.shape[:-2])
    steps = jnp.zeros(lead, jnp.int32)
    if update_steps_max is not None and not np.any(update_steps_max > 0):
        return xi, steps
    limit = (
        jnp.full(lead, jnp.iinfo(jnp.int32).max, jnp.int32)
        if update_steps_max is None
        else jnp.broadcast_to(jnp.asarray(update_steps_max, jnp.int32), lead)
    )
    eps2 = jnp.broadcast_to(jnp.square(jnp.asarray(update_steps_eps, xi.dtype)), lead)
    xi = jnp.broadcast_to(xi, lead + xi.shape[-2:])

    def body(carry):
        xi, steps, active = carry
        xi_new = norm(association_scores(xi @ stored, stored, beta)).astype(xi.dtype)
        xi_new = jnp.where(active[..., None, None], xi_new, xi)
        change = jax.lax.stop_gradient(jnp.sum(jnp.square(xi_new - xi), axis=(-2, -1)))
        if stop_axes:
            change = jnp.broadcast_to(jnp.max(change, axis=stop_axes, keepdims=True), lead)
        steps = steps + active.astype(jnp.int32)
        return xi_new, steps, active & (steps < limit) & (change > eps2)

    carry = (xi, steps, limit > 0)
    if update_steps_max is None:
        xi, steps, _ = jax.lax.while_loop(lambda c: jnp.any(c[2]), body, carry)
    else:
        n = int(update_steps_max.max())  # static trip count: reverse-differentiable
        xi, steps, _ = jax.lax.fori_loop(0, n, lambda _, c: body(c), carry)
    return xi, steps


def retrieve(
    states,
    stored,
    values=None,
    *,
    beta,
    normalizer: str = "softmax1",
    update_steps_max: int | None = 0,
    update_steps_eps=1e-4,
    mask=None,
    gamma: float | None = None,
    zeta: float | None = None,
) -> jax.Array:
    """Retrieved patterns xi @ values [..., L, dv]; ``values`` [..., S, dv] default ``stored``.

    With values = stored and ``update_steps_max = n`` this is n + 1 Hopfield updates
    x <- N(beta * x @ stored^T) @ stored (the last one read out), per leading index.
    """
    xi, _ = associate(
        states,
        stored,
        beta=beta,
        normalizer=normalizer,
        update_steps_max=update_steps_max,
        update_steps_eps=update_steps_eps,
        mask=mask,
        gamma=gamma,
        zeta=zeta,
    )
    values = stored if values is None else jnp.asarray(values)
    if values.shape[-2] != jnp.shape(stored)[-2]:
        raise ValueError(
            f"values must be [..., S, dv] with S = {jnp.shape(stored)[-2]} stored patterns; "
            f"got shape {values.shape}."
        )
    return xi.astype(values.dtype) @ values


def energy(states, stored, *, beta, normalizer: str = "softmax1", mask=None) -> jax.Array:
    """E(x) = -(1/beta) lse(beta * stored @ x) + 0.5 x.x per state: [..., L, d] -> [..., L].

    lse is log(1 + sum exp) (lse_1) for softmax1 and log(sum exp) for softmax; masked
    stored patterns (``mask`` broadcastable to [..., L, S], True = present) are left out.
    """
    states, stored = _check(states, stored, beta, normalizer, ENERGY_NORMALIZERS)
    lse = sm.lse_1 if normalizer == "softmax1" else sm.logsumexp
    scores = association_scores(states, stored, beta)
    beta_l = _lead(beta, 1)
    return -lse(scores, axis=-1, where=mask) / beta_l + 0.5 * jnp.sum(states * states, axis=-1)
