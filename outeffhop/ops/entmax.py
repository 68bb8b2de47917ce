"""alpha-entmax by bisection, with exact gradients in x and alpha (the GSH normalizer).

  entmax_alpha(z)_i = [(alpha - 1) z_i - tau]_+ ^ (1 / (alpha - 1)),  tau such that sum_i p_i = 1.

alpha -> 1 gives softmax, alpha = 2 sparsemax; 1 < alpha < 2 interpolates and gives exact
zeros. STanHop-Net's Generalized Sparse Hopfield (GSH) layer learns alpha = 1 + sigmoid(a).

Gradients (derived from the support equations, g_i = p_i^(2 - alpha) on the support,
g_hat = g / sum g, H = sum_i p_i log p_i):
  dp/dz     = diag(g) - g g^T / sum(g)
  dp_i/dalpha = (p_i - g_hat_i) / (alpha - 1)^2 - (p_i log p_i - g_hat_i H) / (alpha - 1)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _xlogx(p):
    return jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)


def _forward(z, alpha, n_iter):
    """Bisection on tau over [max - 1, max - n^(1 - alpha)] (on the scaled logits)."""
    am1 = alpha - 1.0
    x = z * am1
    n = z.shape[-1]
    hi_p = jnp.max(x, axis=-1, keepdims=True)
    lo = hi_p - 1.0  # p_max = 1 here: sum >= 1
    hi = hi_p - (1.0 / n) ** am1  # every p <= 1/n here: sum <= 1

    def p_of(tau):
        return jnp.maximum(x - tau, 0.0) ** (1.0 / am1)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        big = jnp.sum(p_of(mid), axis=-1, keepdims=True) >= 1.0
        return jnp.where(big, mid, lo), jnp.where(big, hi, mid)

    lo, hi = jax.lax.fori_loop(0, n_iter, body, (lo, hi))
    p = p_of(lo)
    return p / jnp.sum(p, axis=-1, keepdims=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _entmax(z, alpha, n_iter):
    return _forward(z, alpha, n_iter)


def _entmax_fwd(z, alpha, n_iter):
    p = _forward(z, alpha, n_iter)
    return p, (p, alpha)


def _entmax_bwd(n_iter, res, dp):
    del n_iter
    p, alpha = res
    am1 = alpha - 1.0
    g = jnp.where(p > 0, p ** (2.0 - alpha), 0.0)
    g_sum = jnp.sum(g, axis=-1, keepdims=True)
    dz = g * dp - g * jnp.sum(g * dp, axis=-1, keepdims=True) / g_sum
    g_hat = g / g_sum
    ent = jnp.sum(_xlogx(p), axis=-1, keepdims=True)
    dp_dalpha = (p - g_hat) / am1**2 - (_xlogx(p) - g_hat * ent) / am1
    dalpha = jnp.sum(dp * dp_dalpha, axis=-1, keepdims=True)
    return dz, dalpha


_entmax.defvjp(_entmax_fwd, _entmax_bwd)


def entmax_bisect(z: jax.Array, alpha, axis: int = -1, n_iter: int = 50) -> jax.Array:
    """alpha-entmax of ``z`` along ``axis``; ``alpha`` > 1 is a scalar or broadcastable to
    ``z`` with size 1 along ``axis``. Low-precision inputs are computed in fp32."""
    z = jnp.asarray(z)
    dtype = z.dtype
    zf = jnp.moveaxis(z.astype(jnp.float32), axis, -1)
    a = jnp.asarray(alpha, jnp.float32)
    if a.ndim:
        a = jnp.moveaxis(jnp.broadcast_to(a, z.shape), axis, -1)[..., :1]
    try:
        bad = bool(jnp.any(a <= 1.0))
    except jax.errors.ConcretizationTypeError:
        bad = False
    if bad:
        raise ValueError(f"alpha must be greater than 1; got {alpha}.")
    a = jnp.broadcast_to(a, zf.shape[:-1] + (1,))
    return jnp.moveaxis(_entmax(zf, a, n_iter), -1, axis).astype(dtype)


def sparsemax(z: jax.Array, axis: int = -1) -> jax.Array:
    """Sparsemax (Martins and Astudillo, 2016) by sorting: the Euclidean projection of z onto
    the simplex. Used as an independent check of ``entmax_bisect`` at alpha = 2."""
    z = jnp.moveaxis(jnp.asarray(z, jnp.float32), axis, -1)
    zs = jnp.flip(jnp.sort(z, axis=-1), axis=-1)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cs = jnp.cumsum(zs, axis=-1)
    support = 1 + k * zs > cs
    k_max = jnp.sum(support, axis=-1, keepdims=True)
    tau = (jnp.take_along_axis(cs, k_max.astype(jnp.int32) - 1, axis=-1) - 1) / k_max
    return jnp.moveaxis(jnp.maximum(z - tau, 0.0), -1, axis)


def gsh_alpha(param: jax.Array) -> jax.Array:
    """The GSH layer's learnable alpha = 1 + sigmoid(param), in (1, 2)."""
    return 1.0 + jax.nn.sigmoid(param)


# ------------------------------------------------------- the Generalized Sparse Hopfield model
# alpha-entmax is the maximizer of <p, z> - Omega_alpha(p) over the simplex, with the Tsallis
# negentropy Omega_alpha(p) = (sum_i p_i^alpha - 1) / (alpha (alpha - 1)) (-> sum p log p, the
# Shannon negentropy, as alpha -> 1). Its convex conjugate
#   Psi_alpha(z) = max_p <p, z> - Omega_alpha(p) = <p*, z> - Omega_alpha(p*),  p* = entmax(z),
# is convex with gradient entmax_alpha(z) (Danskin); for alpha -> 1 it is logsumexp. The GSH
# energy of STanHop (Wu, Hu et al. 2024; the sparse modern Hopfield model of Hu et al. 2023
# at alpha = 2) is
#   E(x) = -(1 / beta) Psi_alpha(beta xi x) + 0.5 x.x,   T(x) = entmax_alpha(beta xi x) xi,
# a convex 0.5 x.x plus a concave term whose gradient at x_t is T(x_t): T is the CCCP step,
# so E(T(x)) <= E(x) for every alpha > 1.


def tsallis_negentropy(p: jax.Array, alpha) -> jax.Array:
    """Omega_alpha(p) = (sum_i p_i^alpha - 1) / (alpha (alpha - 1)) over the last axis, as
    sum_i p_i expm1((alpha - 1) log p_i) / (alpha (alpha - 1)) (equal for sum p = 1, and
    stable as alpha -> 1). ``alpha`` > 1 broadcasts to p[..., 0]. [..., n] -> [...]."""
    p = jnp.asarray(p, jnp.float32)
    a = jnp.asarray(alpha, jnp.float32)
    logp = jnp.log(jnp.where(p > 0, p, 1.0))
    terms = jnp.where(p > 0, p * jnp.expm1((a[..., None] - 1.0) * logp), 0.0)
    return jnp.sum(terms, axis=-1) / (a * (a - 1.0))


def entmax_conjugate(z: jax.Array, alpha, n_iter: int = 50) -> jax.Array:
    """Psi_alpha(z) = <p*, z> - Omega_alpha(p*), p* = entmax_alpha(z), over the last axis
    (``alpha`` a scalar or broadcastable to z[..., :1]). [..., n] -> [...]."""
    z = jnp.asarray(z, jnp.float32)
    p = entmax_bisect(z, alpha, n_iter=n_iter)
    a = jnp.asarray(alpha, jnp.float32)
    a = a[..., 0] if a.ndim else a
    return jnp.sum(p * z, axis=-1) - tsallis_negentropy(p, a)


def _gsh_args(states, stored, beta, alpha):
    """States [..., L, d] (or [d]) and patterns [..., S, d] in fp32; ValueError naming the field."""
    x, xi = jnp.asarray(states, jnp.float32), jnp.asarray(stored, jnp.float32)
    if x.ndim < 1 or xi.ndim < 2 or x.shape[-1] != xi.shape[-1]:
        raise ValueError(
            f"states and stored must be [..., L, d] and [..., S, d] with one d; got shapes "
            f"{x.shape} and {xi.shape}."
        )
    _check_positive(beta, "beta", 0.0)
    _check_positive(alpha, "alpha", 1.0)
    return x, xi


def _check_positive(value, name: str, bound: float) -> None:
    try:
        bad = bool(jnp.any(jnp.asarray(value) <= bound))
    except jax.errors.ConcretizationTypeError:  # traced: cannot check here
        bad = False
    if bad:
        raise ValueError(f"{name} must be greater than {bound:g}; got {value}.")


def gsh_energy(states, stored, *, beta, alpha) -> jax.Array:
    """E(x) = -(1/beta) Psi_alpha(beta xi x) + 0.5 x.x per state: [..., L, d] -> [..., L]
    (a single state [d] -> []). ``beta`` > 0 and ``alpha`` > 1 are scalars or broadcast to
    the leading dims [...] (one per head), as in ``gsh_update``."""
    x, xi = _gsh_args(states, stored, beta, alpha)
    single = x.ndim == 1
    x = x[None] if single else x
    b = jnp.asarray(beta, jnp.float32)[..., None]
    a = jnp.asarray(alpha, jnp.float32)[..., None, None]
    psi = entmax_conjugate(b[..., None] * jnp.einsum("...ld,...sd->...ls", x, xi), a)
    e = -psi / b + 0.5 * jnp.sum(x * x, axis=-1)
    return e[0] if single else e


def gsh_update(states, stored, *, beta, alpha) -> jax.Array:
    """One GSH update T(x) = entmax_alpha(beta xi x) xi, [..., L, d] -> [..., L, d]; the CCCP
    step of ``gsh_energy`` (E(T(x)) <= E(x)). ``beta``, ``alpha``: scalars or one per
    leading index."""
    x, xi = _gsh_args(states, stored, beta, alpha)
    single = x.ndim == 1
    x = x[None] if single else x
    b = jnp.asarray(beta, jnp.float32)
    a = jnp.asarray(alpha, jnp.float32)
    scores = jnp.einsum("...ld,...sd->...ls", x, xi) * b[..., None, None]
    out = entmax_bisect(scores, a[..., None, None]) @ xi
    return out[0] if single else out


def gsh_retrieve(states, stored, *, beta, alpha, steps: int = 1) -> jax.Array:
    """``steps`` GSH updates x <- T(x) (0 returns the states)."""
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int; got {steps!r}.")
    x = jnp.asarray(states, jnp.float32)
    return jax.lax.fori_loop(
        0, steps, lambda _, x: gsh_update(x, stored, beta=beta, alpha=alpha), x
    )


def gsh_associate(
    q, k, *, beta, alpha, update_steps_max=0, update_steps_eps=1e-4, mask=None, stop_axes=()
) -> jax.Array:
    """GSH association a [..., L, S] in association space (hflayers' iteration, as
    ``ops.hopfield.associate`` does for softmax): a_0 = entmax_alpha(beta q k^T),
    a_{t+1} = entmax_alpha(beta (a_t k) k^T), up to ``update_steps_max`` updates (an int, one
    per leading index, or None: until ||a_{t+1} - a_t||_F <= ``update_steps_eps``, forward
    only). ``beta``, ``alpha``: broadcast to the leading dims. ``mask`` (True = may
    associate, broadcastable to [..., L, S]): masked entries are exactly 0, a fully masked
    row is all zeros. ``stop_axes``: leading axes that share one stopping decision.
    """
    b = jnp.asarray(beta, jnp.float32)[..., None, None]
    a_ = jnp.asarray(alpha, jnp.float32)[..., None, None]

    def norm(x):
        scores = b * jnp.einsum("...ld,...sd->...ls", x, k)
        if mask is not None:
            scores = jnp.where(mask, scores, -1e9)
        p = entmax_bisect(scores, a_)
        return p if mask is None else jnp.where(mask, p, 0.0)

    a = norm(q)
    if update_steps_max is not None:
        steps_max = np.asarray(update_steps_max)
        if steps_max.dtype.kind not in "iu" or np.any(steps_max < 0):
            raise ValueError(
                f"update_steps_max must be a non-negative int (or one per head) or None; "
                f"got {update_steps_max}."
            )
        if not np.any(steps_max > 0):
            return a
    lead = a.shape[:-2]
    big = jnp.iinfo(jnp.int32).max
    limit = jnp.broadcast_to(
        jnp.asarray(big if update_steps_max is None else update_steps_max, jnp.int32), lead
    )
    eps2 = jnp.square(jnp.asarray(update_steps_eps, jnp.float32))

    def body(carry):
        a, steps, active = carry
        a_new = jnp.where(active[..., None, None], norm(a @ k), a)
        change = jax.lax.stop_gradient(jnp.sum(jnp.square(a_new - a), axis=(-2, -1)))
        if stop_axes:
            change = jnp.broadcast_to(jnp.max(change, axis=stop_axes, keepdims=True), lead)
        steps = steps + active.astype(jnp.int32)
        return a_new, steps, active & (steps < limit) & (change > eps2)

    carry = (a, jnp.zeros(lead, jnp.int32), limit > 0)
    if update_steps_max is None:
        return jax.lax.while_loop(lambda c: jnp.any(c[2]), body, carry)[0]
    n = int(np.max(update_steps_max))  # static trip count: reverse-differentiable
    return jax.lax.fori_loop(0, n, lambda _, c: body(c), carry)[0]
