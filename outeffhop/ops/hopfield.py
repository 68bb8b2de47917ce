"""Modern Hopfield energy, update, association and retrieval on raw patterns (no projections).

States ``x_LD`` [..., L, d] (a single state [d] works too) and stored patterns ``xi_SD``
[..., S, d]; leading dims (e.g. [B, H]) broadcast, and ``beta`` is a scalar or broadcasts
to them (one per head). With (lse, N) = (lse_1, Softmax_1) for ``softmax1`` (OutEffHop) and
(logsumexp, softmax) for ``softmax`` (the vanilla modern Hopfield model):

  E(x)  = -(1/beta) lse(beta xi x) + 0.5 x.x                            (energy)
  T(x)  = N(beta xi x) xi                   (one CCCP update; E(T(x)) <= E(x))

The extra 1 of lse_1 is a no-op memory: a state that matches no stored pattern retrieves
about 0. ``associate`` iterates the update in association space, as hflayers does:
  a_0 = N(beta x xi^T),  a_{t+1} = N(beta (a_t xi) xi^T)   [..., L, S]
stopping after ``update_steps_max`` updates or where ||a_{t+1} - a_t||_F <= eps; ``retrieve``
reads out a values (default: xi itself, i.e. T applied update_steps_max + 1 times).
``fixed_point`` iterates T in state space until max|T(x) - x| <= tol per state.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.ops import matmul as products
from outeffhop.ops import softmax as sm

ENERGY_NORMALIZERS = ("softmax", "softmax1")


def _concrete_any(flag) -> bool:
    try:
        return bool(jnp.any(flag))
    except jax.errors.ConcretizationTypeError:  # traced: cannot check here
        return False


def _check(states, stored, beta, normalizer, allowed=sm.NORMALIZERS):
    """Arrays as [..., L, d] and [..., S, d] in one float dtype; ValueError naming the field."""
    sm.check_normalizer(normalizer, allowed)
    states, stored = jnp.asarray(states), jnp.asarray(stored)
    if states.ndim < 1 or stored.ndim < 2:
        raise ValueError(
            f"states and stored must be [..., L, d] and [..., S, d]; got shapes "
            f"{states.shape} and {stored.shape}."
        )
    if states.shape[-1] != stored.shape[-1]:
        raise ValueError(
            f"states and stored must share the pattern size d; got {states.shape[-1]} and "
            f"{stored.shape[-1]}."
        )
    if stored.shape[-2] == 0:
        raise ValueError(
            f"stored must hold at least one pattern (shape [..., S, d] with S >= 1); got "
            f"shape {stored.shape}."
        )
    if _concrete_any(~(jnp.asarray(beta) > 0) | ~jnp.isfinite(jnp.asarray(beta))):
        raise ValueError(
            f"beta must be a positive scalar (finite; or one per leading index); got {beta}."
        )
    dtype = jnp.result_type(states, stored)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.dtype(jnp.float32)
    return states.astype(dtype), stored.astype(dtype)


def _lead(a, extra: int = 2):
    """Appends ``extra`` unit axes so a per-leading-dim array broadcasts over [..., L, S]."""
    a = jnp.asarray(a)
    return a.reshape(a.shape + (1,) * extra)


def _as_rows(states):
    """[d] -> ([1, d], True); [..., L, d] -> (itself, False)."""
    return (states[None], True) if states.ndim == 1 else (states, False)


def association_scores(x_LD, xi_SD, beta) -> jax.Array:
    """beta x xi^T: [..., L, d] x [..., S, d] -> [..., L, S] (beta scales the smaller x).

    The product's backward is shaped for XLA's CPU matmuls (``outeffhop.ops.matmul``).
    """
    x_LD, xi_SD = jnp.asarray(x_LD), jnp.asarray(xi_SD)
    scaled = x_LD * _lead(beta).astype(x_LD.dtype) if jnp.ndim(beta) else x_LD * beta
    return products.matmul_t(scaled, xi_SD)


def energy(states, stored, *, beta, normalizer: str = "softmax1", mask=None) -> jax.Array:
    """E(x) = -(1/beta) lse(beta xi x) + 0.5 x.x per state: [..., L, d] -> [..., L].

    lse is log(1 + sum exp) (lse_1) for softmax1 and log(sum exp) for softmax; masked
    stored patterns (``mask`` broadcastable to [..., L, S], True = present) are left out.
    """
    x, xi = _check(states, stored, beta, normalizer, ENERGY_NORMALIZERS)
    x, single = _as_rows(x)
    lse = sm.lse_1 if normalizer == "softmax1" else sm.logsumexp
    scores = association_scores(x, xi, beta)
    e = -lse(scores, axis=-1, where=mask) / _lead(beta, 1) + 0.5 * jnp.sum(x * x, axis=-1)
    return e[0] if single else e


def update(states, stored, *, beta, normalizer: str = "softmax1", mask=None, gamma=None, zeta=None):
    """One Hopfield update T(x) = N(beta xi x) xi, [..., L, d] -> [..., L, d].

    For softmax and softmax1 this is the CCCP step of ``energy``: T(x) = grad_x of the lse
    term, so E(T(x)) <= E(x). Clipped normalizers (``gamma``, ``zeta``) apply too.
    """
    x, xi = _check(states, stored, beta, normalizer)
    x, single = _as_rows(x)
    a = sm.normalize(
        association_scores(x, xi, beta), normalizer, axis=-1, where=mask, gamma=gamma, zeta=zeta
    )
    out = (a @ xi).astype(x.dtype)
    return out[0] if single else out


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
    """Association matrix a [..., L, S] after up to ``update_steps_max`` updates.

    ``mask``: boolean, broadcastable to [..., L, S], True = may associate. Masked entries
    are 0; a fully masked row is all zeros. ``update_steps_max``: a non-negative int, an
    array of them broadcastable to the leading dims (one per head), or None: iterate until
    the tolerance is met (at most ``UNBOUNDED_STEPS_CAP`` updates) and differentiate
    implicitly (``_fixed_point``: the adjoint fixed point, as deep-equilibrium models do;
    the states then get zero gradient, since the fixed point a* = T(a*) depends on them
    only through its basin). ``stop_axes``:
    leading axes that share one stopping decision (hflayers takes the max of the change
    over the batch axis, per head). Returns ``(a, steps)`` with ``steps`` the number of
    updates each leading index took, int32 of the leading shape.
    """
    x, xi = _check(states, stored, beta, normalizer)
    x, _ = _as_rows(x)
    steps_max = _check_steps(update_steps_max, update_steps_eps)
    rule = _Rule(normalizer, gamma, zeta, tuple(stop_axes))
    a = rule.normalize(association_scores(x, xi, beta), mask)
    lead = jnp.broadcast_shapes(x.shape[:-2], xi.shape[:-2], jnp.shape(beta), a.shape[:-2])
    if steps_max is not None and not np.any(steps_max > 0):
        return a, jnp.zeros(lead, jnp.int32)
    eps2 = jnp.broadcast_to(jnp.square(jnp.asarray(update_steps_eps, a.dtype)), lead)
    a = jnp.broadcast_to(a, lead + a.shape[-2:])
    if steps_max is None:
        beta = jnp.asarray(beta, a.dtype)
        return _fixed_point(rule, a, xi, beta, eps2, mask)
    limit = jnp.broadcast_to(jnp.asarray(steps_max, jnp.int32), lead)
    carry = (a, jnp.zeros(lead, jnp.int32), limit > 0)
    body = functools.partial(_update_step, rule, xi, beta, mask, limit, eps2)
    n = int(steps_max.max())  # static trip count: reverse-differentiable by unrolling
    a, steps, _ = jax.lax.fori_loop(0, n, lambda _, c: body(c), carry)
    return a, steps


class _Rule(NamedTuple):
    """The static part of the association update: normalizer, clip range, stop axes."""

    normalizer: str
    gamma: float | None
    zeta: float | None
    stop_axes: tuple[int, ...]

    def normalize(self, scores, mask):
        return sm.normalize(
            scores, self.normalizer, axis=-1, where=mask, gamma=self.gamma, zeta=self.zeta
        )

    def update(self, a, xi, beta, mask):
        """One update in association space: T(a) = N(beta (a xi) xi^T)."""
        return self.normalize(association_scores(products.matmul(a, xi), xi, beta), mask).astype(
            a.dtype
        )


def _check_steps(update_steps_max, update_steps_eps):
    """``update_steps_max`` as a numpy int array (or None); ValueError for bad values."""
    if update_steps_max is not None:
        update_steps_max = np.asarray(update_steps_max)
        if update_steps_max.dtype.kind not in "iu" or np.any(update_steps_max < 0):
            raise ValueError(
                f"update_steps_max must be a non-negative int (or one per head) or None; "
                f"got {update_steps_max}."
            )
    if _concrete_any(jnp.asarray(update_steps_eps) <= 0):
        raise ValueError(f"update_steps_eps must be positive; got {update_steps_eps}.")
    return update_steps_max


def _update_step(rule, xi, beta, mask, limit, eps2, carry):
    """One guarded update: indices still active move, count a step and test ||da||_F^2."""
    a, steps, active = carry
    a_new = jnp.where(active[..., None, None], rule.update(a, xi, beta, mask), a)
    change = jax.lax.stop_gradient(jnp.sum(jnp.square(a_new - a), axis=(-2, -1)))
    if rule.stop_axes:
        change = jnp.broadcast_to(jnp.max(change, axis=rule.stop_axes, keepdims=True), a.shape[:-2])
    steps = steps + active.astype(jnp.int32)
    return a_new, steps, active & (steps < limit) & (change > eps2)


# Cap of the "until convergence" loops (update_steps_max=None, and its adjoint): a cycle or a
# divergent iteration would otherwise spin for ~2^31 updates. Converging problems need far
# fewer (the tests' take 1-40); at the cap the returned ``steps`` equals it.
UNBOUNDED_STEPS_CAP = 10_000


def _converge(rule, a, xi, beta, eps2, mask):
    """Iterate until every leading index meets ||a_{t+1} - a_t||_F <= eps, or for
    ``UNBOUNDED_STEPS_CAP`` updates: (a*, steps)."""
    lead = a.shape[:-2]
    limit = jnp.full(lead, UNBOUNDED_STEPS_CAP, jnp.int32)
    body = functools.partial(_update_step, rule, xi, beta, mask, limit, eps2)
    carry = (a, jnp.zeros(lead, jnp.int32), jnp.ones(lead, bool))
    a, steps, _ = jax.lax.while_loop(lambda c: jnp.any(c[2]), body, carry)
    return a, steps


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fixed_point(rule, a0, xi, beta, eps2, mask):
    """``_converge`` from a0, differentiated implicitly at a* = T(a*; xi, beta)."""
    return _converge(rule, a0, xi, beta, eps2, mask)


def _fixed_point_fwd(rule, a0, xi, beta, eps2, mask):
    a, steps = _converge(rule, a0, xi, beta, eps2, mask)
    return (a, steps), (a, a0, xi, beta, eps2, mask)


def _fixed_point_bwd(rule, res, cts):
    """Adjoint fixed point u = g + (dT/da)^T u at a*, then (xi, beta) cotangents (dT/dθ)^T u.

    Iterated like the forward pass until ||u_{k+1} - u_k||_F <= eps ||g||_F per leading
    index (the same contraction rate as the forward iteration near a*), at most
    ``UNBOUNDED_STEPS_CAP`` times. a0 (hence the
    states) gets zero cotangent: a* does not move with it.
    """
    a, a0, xi, beta, eps2, mask = res
    g = cts[0]
    _, vjp = jax.vjp(lambda a_, xi_, b_: rule.update(a_, xi_, b_, mask), a, xi, beta)
    tol = eps2 * jnp.sum(jnp.square(g), axis=(-2, -1))

    def body(carry):
        u, _, k = carry
        u_new = g + vjp(u)[0]
        return u_new, jnp.any(jnp.sum(jnp.square(u_new - u), axis=(-2, -1)) > tol), k + 1

    def cond(carry):
        return carry[1] & (carry[2] < UNBOUNDED_STEPS_CAP)

    u, _, _ = jax.lax.while_loop(cond, body, (g, jnp.bool_(True), jnp.int32(0)))
    _, xi_bar, beta_bar = vjp(u)
    zero = jax.tree.map(jnp.zeros_like, (a0, eps2))
    return zero[0], xi_bar, beta_bar, zero[1], None


_fixed_point.defvjp(_fixed_point_fwd, _fixed_point_bwd)


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
    """Retrieved patterns a @ values [..., L, dv]; ``values`` [..., S, dv] default ``stored``.

    With values = stored and ``update_steps_max = n`` this is n + 1 updates
    x <- T(x) = N(beta xi x) xi (the last one read out), per leading index; ``None``
    iterates until ||a_{t+1} - a_t||_F <= ``update_steps_eps``.
    """
    single = jnp.ndim(states) == 1
    a, _ = associate(
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
    out = a.astype(values.dtype) @ values
    return out[..., 0, :] if single else out


def fixed_point(
    states, stored, *, beta, normalizer: str = "softmax1", max_steps: int = 100, tol: float = 1e-6
) -> tuple[jax.Array, jax.Array]:
    """Iterates x <- T(x) until max|T(x) - x| <= tol per state or ``max_steps`` updates.

    Returns ``(x, steps)``: the final states [..., L, d] (or [d]) and the number of updates
    each state took, int32 [..., L]. A converged state stops moving while others continue.
    """
    x, xi = _check(states, stored, beta, normalizer, ENERGY_NORMALIZERS)
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0; got {max_steps}.")
    batch = x.shape[:-1]

    def cond(carry):
        _, _, done, i = carry
        return (i < max_steps) & ~jnp.all(done)

    def body(carry):
        x, steps, done, i = carry
        x_new = update(x, xi, beta=beta, normalizer=normalizer).astype(x.dtype)
        delta = jnp.max(jnp.abs(x_new - x), axis=-1)
        x = jnp.where(done[..., None], x, x_new)
        steps = steps + (~done).astype(jnp.int32)
        return x, steps, done | (delta <= tol), i + 1

    init = (x, jnp.zeros(batch, jnp.int32), jnp.zeros(batch, bool), jnp.int32(0))
    x, steps, _, _ = jax.lax.while_loop(cond, body, init)
    return x, steps


# ---------------------------------------------------------------- the 0.1 names, one release
# hopfield_energy(x, patterns, beta), hopfield_retrieve(x, patterns, beta, steps=k) and
# hopfield_fixed_point(x, patterns, beta) take one pattern matrix [M, d] and a scalar beta;
# they are ``energy``, ``update`` applied k times and ``fixed_point``.


def _legacy_check(x, patterns, beta):
    patterns = jnp.asarray(patterns)
    if patterns.ndim != 2:
        raise ValueError(f"patterns must be [M, d]; got shape {patterns.shape}.")
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != patterns.shape[-1]:
        raise ValueError(
            f"x must be [..., d] with d = patterns.shape[-1] = {patterns.shape[-1]}; "
            f"got shape {jnp.shape(x)}."
        )
    if jnp.ndim(beta) != 0:
        raise ValueError(f"beta must be a positive scalar; got shape {jnp.shape(beta)}.")


def hopfield_energy(x, patterns, beta, normalizer: str = "softmax1") -> jax.Array:
    """Alias of ``energy(x, patterns, beta=beta)`` for one pattern matrix [M, d]."""
    _legacy_check(x, patterns, beta)
    return energy(x, patterns, beta=beta, normalizer=normalizer)


def hopfield_retrieve(x, patterns, beta, normalizer: str = "softmax1", steps: int = 1):
    """Alias: ``steps`` updates x <- T(x) with one pattern matrix [M, d] (0 returns x)."""
    _legacy_check(x, patterns, beta)
    sm.check_normalizer(normalizer, ENERGY_NORMALIZERS)
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}.")
    x, patterns = _check(x, patterns, beta, normalizer)
    for _ in range(steps):
        x = update(x, patterns, beta=beta, normalizer=normalizer)
    return x


def hopfield_fixed_point(x, patterns, beta, normalizer: str = "softmax1", **kw):
    """Alias of ``fixed_point(x, patterns, beta=beta, max_steps=.., tol=..)``."""
    _legacy_check(x, patterns, beta)
    return fixed_point(x, patterns, beta=beta, normalizer=normalizer, **kw)


# ---------------------------------------------------------------- theory: the papers' bounds
# Patterns xi_i [N, d] of norm <= M (the pattern radius), separation
#   Delta_i = xi_i.xi_i - max_{j != i} xi_i.xi_j        (Ramsauer et al. 2021, "Hopfield
# Networks is All You Need", Sec. 2 / A.1.5). OutEffHop (Hu et al. 2024) states its
# retrieval and capacity results in the same form; the zero memory of Softmax_1 enters as
# one extra pattern xi_0 = 0 whose score is always 0.


def stationarity(states, stored, *, beta, normalizer: str = "softmax1", mask=None):
    """||grad E(x)|| = ||x - T(x)|| per state, [..., L, d] -> [..., L].

    grad_x E(x) = x - N(beta xi x) xi = x - T(x) for both energies, so this is 0 exactly at
    the fixed points of T, which are the stationary points of E.
    """
    t = update(states, stored, beta=beta, normalizer=normalizer, mask=mask)
    return jnp.linalg.norm(jnp.asarray(states, t.dtype) - t, axis=-1)


def memory_mass(states, stored, *, beta) -> jax.Array:
    """S / (1 + S), S = sum_j exp(beta xi_j.x): the total Softmax_1 weight on the memories.

    One Softmax_1 update is the softmax update scaled by it: T_1(x) = S / (1 + S) T(x).
    [..., L, d] -> [..., L].
    """
    x, xi = _check(states, stored, beta, "softmax")
    x, single = _as_rows(x)
    mass = jax.nn.sigmoid(sm.logsumexp(association_scores(x, xi, beta), axis=-1))
    return mass[0] if single else mass


def separation(stored) -> jax.Array:
    """Delta_i = xi_i.xi_i - max_{j != i} xi_i.xi_j per pattern, [..., N, d] -> [..., N].

    +inf when N = 1 (nothing to be confused with).
    """
    xi = jnp.asarray(stored)
    if xi.ndim < 2:
        raise ValueError(f"stored must be [..., N, d]; got shape {xi.shape}.")
    gram = jnp.einsum("...id,...jd->...ij", xi, xi)
    n = xi.shape[-2]
    others = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, gram)
    return jnp.diagonal(gram, axis1=-2, axis2=-1) - jnp.max(others, axis=-1)


def separation_threshold(beta, num_patterns, radius) -> jax.Array:
    """Ramsauer et al.'s sufficient separation for pattern i to be stored (a fixed point of T
    near xi_i that attracts the sphere of radius 1 / (beta N M) around it):

      Delta_i >= 2 / (beta N) + (1 / beta) log(2 (N - 1) N beta M^2).
    """
    b, n, m = (jnp.asarray(v, jnp.float32) for v in (beta, num_patterns, radius))
    return 2.0 / (b * n) + jnp.log(2.0 * (n - 1.0) * n * b * m * m) / b


def retrieval_error_bound(
    delta, beta, num_patterns, radius, distance, *, normalizer: str = "softmax", norm=None
) -> jax.Array:
    """Bound on the one-step retrieval error ||T(x) - xi_i|| for a state x at
    ``distance`` r = ||x - xi_i|| from pattern i of separation ``delta`` (Delta_i), with N
    = ``num_patterns`` patterns of norm <= M = ``radius`` (``norm`` = ||xi_i||, default M):

      softmax:   eps_0 = 2 M (N - 1) exp(-beta (Delta_i - 2 M r))
      softmax1:  eps_0 + ||xi_i|| exp(-beta (||xi_i||^2 - ||xi_i|| r))

    eps_0 is Ramsauer et al.'s Theorem 5 error 2 eps M, eps = (N - 1) exp(-beta (Delta_i -
    2 M max(r, ...))), in the one-step form its proof gives for every x: T(x) - xi_i =
    sum_{j != i} p_j (xi_j - xi_i), sum_{j != i} p_j <= sum_{j != i} p_j / p_i and
    (xi_i - xi_j).x >= Delta_i - 2 M r. Softmax_1 adds the zero memory's weight
    1 / (1 + S) <= exp(-beta xi_i.x) times ||0 - xi_i||: Ramsauer's bound on N + 1 patterns
    with xi_0 = 0, split into its two terms. Broadcasts over its arguments.
    """
    sm.check_normalizer(normalizer, ENERGY_NORMALIZERS)
    b, delta, n, m, r = (
        jnp.asarray(v, jnp.float32) for v in (beta, delta, num_patterns, radius, distance)
    )
    eps = 2.0 * m * (n - 1.0) * jnp.exp(-b * (delta - 2.0 * m * r))
    if normalizer == "softmax":
        return eps
    a = m if norm is None else jnp.asarray(norm, jnp.float32)
    return eps + a * jnp.exp(-b * (a * a - a * r))


@functools.partial(jax.jit, static_argnames="iters")
def lambert_w0(z, iters: int = 30) -> jax.Array:
    """The upper branch W_0 of the Lambert W function (w e^w = z), for z >= 0, by Halley's
    iteration from log(1 + z). Jitted: eagerly, the ``fori_loop`` is traced anew on every call."""
    z = jnp.asarray(z, jnp.float32)
    w = jnp.log1p(z)

    def body(_, w):
        ew = jnp.exp(w)
        f = w * ew - z
        return w - f / (ew * (w + 1.0) - (w + 2.0) * f / (2.0 * w + 2.0))

    return jax.lax.fori_loop(0, iters, body, w)


def capacity_bound(dim, beta, radius_scale, failure_prob) -> tuple[jax.Array, ...]:
    """Ramsauer et al.'s storage capacity (their Theorem 3) for N random patterns on the
    sphere of radius M = K sqrt(d - 1) (K = ``radius_scale``), failure probability p:

      a = 2 / (d - 1) (1 + log(2 beta K^2 p (d - 1))),   b = 2 K^2 beta / 5,
      c = b / W_0(exp(a + log b)),
      with probability 1 - p, N >= sqrt(p) c^((d - 1) / 4) patterns are stored,
      provided c >= (2 / sqrt(p))^(4 / (d - 1)).

    Returns ``(log2 N_bound, c, applies)``; log2 N_bound = log2(sqrt(p)) + (d - 1)/4 log2 c
    is linear in d: the exponential capacity. ``applies`` is the proviso.
    """
    d, b_, k, p = (jnp.asarray(v, jnp.float32) for v in (dim, beta, radius_scale, failure_prob))
    a = 2.0 / (d - 1.0) * (1.0 + jnp.log(2.0 * b_ * k * k * p * (d - 1.0)))
    b = 2.0 * k * k * b_ / 5.0
    c = b / lambert_w0(jnp.exp(a + jnp.log(b)))
    log2_n = 0.5 * jnp.log2(p) + (d - 1.0) / 4.0 * jnp.log2(c)
    applies = c >= (2.0 / jnp.sqrt(p)) ** (4.0 / (d - 1.0))
    return log2_n, c, applies
