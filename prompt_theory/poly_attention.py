"""Polynomial low-rank attention (Alman and Song 2023): softmax attention in O(n r d), no n x n.

  exp(t) ~ T_g(t) = sum_{k<=g} t^k / k!                          (truncated Taylor, degree g)
  T_g(s q.k) = phi(q) . phi(k),  phi(x)_alpha = s^{|alpha|/2} x^alpha / sqrt(alpha!),  |alpha| <= g
  out = phi(Q) (phi(K)^T V) / phi(Q) (phi(K)^T 1)                 (rank r = C(d+g, g))

The features run over symmetric monomials (multisets of the d coordinates), so
r = C(d+g, g) instead of the (d^{g+1}-1)/(d-1) of tensor powers. Positions go in chunks of c:
non-causal time O(n r d), memory O(c r + n d); causal (a prefix scan) time O(n r (d + c)),
memory O(c r + c^2 + n d) forward (the backward pass keeps O(n r) of residuals).

Positivity: T_g(t) > 0 for all t when g is even. For odd g it goes negative for t well
below 0 (g = 1: t < -1). Either way, if the relative Taylor error ``taylor_rel_error(b, g)``
on [-b, b] is below 1 (b = max |s q.k|), then T_g > 0 on the range, so the denominator
is positive; ``attention_error_bound`` returns inf otherwise.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

MAX_DEGREE = 200  # taylor_degree gives up past this degree


def poly_rank(d: int, degree: int) -> int:
    """r = C(d + g, g): the number of monomials of total degree <= g in d variables."""
    if not isinstance(d, int | np.integer) or d < 1:
        raise ValueError(f"d must be a positive int; got {d!r}.")
    _check_degree(degree)
    return math.comb(d + degree, degree)


def _check_degree(degree):
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or degree < 0:
        raise ValueError(f"degree must be an int >= 0; got {degree!r}.")


def taylor_rel_error(bound: float, degree: int) -> float:
    """max_{|t| <= b} |T_g(t) - e^t| / e^t, exactly, for b = bound >= 0.

    (T_g(t) e^{-t})' = -t^g e^{-t} / g!, so the maximum sits at t = -b, where the integral
    remainder gives  e^b |e^{-b} - T_g(-b)| = int_0^b e^y y^g / g! dy
                                          = sum_{m>=0} b^{g+m+1} / (g! m! (g+m+1)),
    a series of positive terms (summed in log space: no cancellation, any b).
    """
    total = log_taylor_rel_error(bound, degree)
    return math.exp(total) if total < 700.0 else math.inf


def log_taylor_rel_error(bound: float, degree: int) -> float:
    """log of ``taylor_rel_error(bound, degree)`` (-inf at b = 0); no under- or overflow."""
    _check_degree(degree)
    b = float(bound)
    if not b >= 0 or not math.isfinite(b):
        raise ValueError(f"bound must be a finite float >= 0; got {bound!r}.")
    if b == 0.0:
        return -math.inf
    g, logb, logs = int(degree), math.log(b), []
    for m in itertools.count():
        logs.append(
            (g + m + 1) * logb - math.lgamma(g + 1) - math.lgamma(m + 1) - math.log(g + m + 1)
        )
        if m > b and logs[-1] < max(logs) - 40.0:
            break
    top = max(logs)
    return top + math.log(sum(math.exp(x - top) for x in logs))


def taylor_degree(bound: float, eps: float) -> int:
    """The smallest g with taylor_rel_error(bound, g) <= eps (relative error of exp on [-b, b])."""
    if not eps > 0:
        raise ValueError(f"eps must be positive; got {eps!r}.")
    for g in range(MAX_DEGREE + 1):
        if taylor_rel_error(bound, g) <= eps:
            return g
    raise ValueError(
        f"bound {bound} needs degree > {MAX_DEGREE} for eps {eps}; use exact attention."
    )


def attention_error_bound(rel_eps: float, v_range=1.0):
    """Entrywise |poly - exact| <= eps / (1 - eps) * (max_j v_j - min_j v_j) when every kernel
    entry has relative error <= eps < 1 (the weights move by a ratio within (1 +- eps)/(1 -+ eps)
    and sum to 1 either way). Returns inf for eps >= 1. ``v_range`` may be an array."""
    if rel_eps >= 1.0:
        return math.inf
    return rel_eps / (1.0 - rel_eps) * v_range


@functools.lru_cache(maxsize=64)
def _monomials(d: int, degree: int):
    """Per total degree k = 1..g: (parent index into degree k-1, last variable, coefficient).

    A degree-k monomial is a sorted multiset (i_1 <= ... <= i_k) of variables; its parent is
    (i_1..i_{k-1}), so x^alpha = parent(x) * x_{i_k}. Coefficients are 1 / sqrt(alpha!).
    """
    out, prev = [], {(): 0}
    for k in range(1, degree + 1):
        cur, parents, lasts, coefs = {}, [], [], []
        for j, mono in enumerate(itertools.combinations_with_replacement(range(d), k)):
            cur[mono] = j
            parents.append(prev[mono[:-1]])
            lasts.append(mono[-1])
            counts = np.bincount(np.asarray(mono), minlength=d)
            coefs.append(1.0 / math.sqrt(math.prod(math.factorial(int(c)) for c in counts)))
        out.append((np.asarray(parents), np.asarray(lasts), np.asarray(coefs)))
        prev = cur
    return tuple(out)


def poly_features(x: jax.Array, degree: int, scale: float = 1.0) -> jax.Array:
    """phi(x) [..., n, r] for x [..., n, d]: phi(x)_alpha = scale^{|alpha|/2} x^alpha / sqrt(alpha!)
    over |alpha| <= degree, so phi(q) . phi(k) = sum_{k<=g} (scale q.k)^k / k!. Memory O(n r)."""
    return jnp.swapaxes(_features_t(x, degree, scale), -1, -2)


def _features_t(x, degree, scale):
    """phi(x) transposed, [..., r, n]: each monomial row is a contiguous run over positions."""
    _check_degree(degree)
    x = jnp.swapaxes(x * jnp.sqrt(jnp.asarray(scale, x.dtype)), -1, -2)
    feats = [jnp.ones(x.shape[:-2] + (1, x.shape[-1]), x.dtype)]
    raw = feats[0]
    for parents, lasts, coefs in _monomials(x.shape[-2], int(degree)):
        raw = jnp.take(raw, parents, axis=-2) * jnp.take(x, lasts, axis=-2)
        feats.append(raw * jnp.asarray(coefs, x.dtype)[:, None])
    return jnp.concatenate(feats, axis=-2)


def _check_qkv(q, k, v, causal):
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(
            f"q, k, v must be [..., n, d]; got shapes {q.shape}, {k.shape}, {v.shape}."
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the last dim d; got {q.shape[-1]} and {k.shape[-1]}.")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must share the length n; got {k.shape[-2]} and {v.shape[-2]}.")
    if not q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
        raise ValueError(
            f"q, k, v must share leading dims; got {q.shape[:-2]}, {k.shape[:-2]}, {v.shape[:-2]}."
        )
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"causal needs as many queries as keys; got {q.shape[-2]} and {k.shape[-2]}."
        )


def poly_attention(q, k, v, *, degree: int, scale=None, causal: bool = False, chunk: int = 256):
    """phi(Q)(phi(K)^T V) / phi(Q)(phi(K)^T 1) ~ softmax(scale q k^T) v without the n x n matrix.

    q [..., n, d], k [..., m, d], v [..., m, d_v] -> [..., n, d_v]. scale defaults to 1/sqrt(d).
    Positions go through in chunks of ``chunk`` (features of one chunk at a time: memory
    O(chunk r + n d), and the working set stays in cache). Non-causal: a scan sums
    phi(K)^T [V, 1] -> [r, d_v + 1], then a map applies it to each query chunk. Causal: query
    i sees keys j <= i, through a scan carrying the prefix sums sum_j phi(k_j) v_j^T [r, d_v]
    and sum_j phi(k_j) [r], plus a masked chunk x chunk block inside each chunk.
    """
    _check_degree(degree)
    _check_qkv(q, k, v, causal)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int; got {chunk!r}.")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if causal:
        return _causal(q, k, v, degree, scale, min(chunk, q.shape[-2]))
    return _noncausal(q, k, v, degree, scale, chunk)


def _chunks(a, c):
    """[..., n, e] -> [ceil(n / c), ..., c, e], zero-padded at the end."""
    pad = -a.shape[-2] % c
    a = jnp.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, pad), (0, 0)])
    a = a.reshape(a.shape[:-2] + (a.shape[-2] // c, c, a.shape[-1]))
    return jnp.moveaxis(a, -3, 0)


def _unchunk(a, n):
    """[n_chunks, ..., c, e] -> [..., n, e] (padding dropped)."""
    a = jnp.moveaxis(a, 0, -3)
    return a.reshape(a.shape[:-3] + (-1, a.shape[-1]))[..., :n, :]


def _key_sums(k, v, degree, scale, chunk):
    """phi(K)^T [V, 1] -> [..., r, d_v + 1] by a scan over key chunks (padded keys add 0)."""
    v1 = jnp.concatenate([v, jnp.ones(v.shape[:-1] + (1,), v.dtype)], axis=-1)
    ck, r = min(chunk, k.shape[-2]), poly_rank(k.shape[-1], degree)

    def add(kv, kc_vc):
        return kv + _features_t(kc_vc[0], degree, scale) @ kc_vc[1], None

    init = jnp.zeros(k.shape[:-2] + (r, v1.shape[-1]), k.dtype)
    kv, _ = jax.lax.scan(add, init, (_chunks(k, ck), _chunks(v1, ck)))
    return kv


def _noncausal(q, k, v, degree, scale, chunk):
    # Padded keys get v1 rows of zeros (the ones column too), so they add nothing.
    kv = _key_sums(k, v, degree, scale, chunk)
    apply = lambda qc: jnp.einsum("...rn,...re->...ne", _features_t(qc, degree, scale), kv)  # noqa: E731
    out = _unchunk(jax.lax.map(apply, _chunks(q, min(chunk, q.shape[-2]))), q.shape[-2])
    return out[..., :-1] / out[..., -1:]


def _causal(q, k, v, degree, scale, c, init=None):
    # Zero padding goes after every real key, so no real query sees it; padded queries see
    # phi(0) . phi(k) >= 1 > 0, so nothing divides by zero (even in the backward pass).
    # ``init`` = (sum phi(k) v^T [r, d_v], sum phi(k) [r]) of keys every query sees.
    lead, r, dv = q.shape[:-2], poly_rank(q.shape[-1], degree), v.shape[-1]
    mask = jnp.tril(jnp.ones((c, c), bool))

    def step(carry, qkv):
        s, z = carry
        fq, fk = poly_features(qkv[0], degree, scale), poly_features(qkv[1], degree, scale)
        a = jnp.where(mask, jnp.einsum("...ir,...jr->...ij", fq, fk), 0.0)
        num = jnp.einsum("...ir,...re->...ie", fq, s) + a @ qkv[2]
        den = jnp.einsum("...ir,...r->...i", fq, z) + a.sum(-1)
        s = s + jnp.einsum("...jr,...je->...re", fk, qkv[2])
        return (s, z + fk.sum(-2)), num / den[..., None]

    if init is None:
        init = (jnp.zeros(lead + (r, dv), q.dtype), jnp.zeros(lead + (r,), q.dtype))
    _, out = jax.lax.scan(step, init, tuple(_chunks(a, c) for a in (q, k, v)))
    return _unchunk(out, q.shape[-2])


def poly_attention_rows(q, k, v, *, degree: int, scale=None, causal=False, chunk: int = 256):
    """Poly attention of the last L = q.shape[-2] of the m = k.shape[-2] positions only.

    q [..., L, d] are the queries of positions m - L .. m - 1; k [..., m, d], v [..., m, d_v].
    Equals poly_attention(Q, k, v)[..., -L:, :] for queries Q whose last L rows are q, in
    O((m + L) r d_v): non-causal, every row sees all m keys; causal, row j sees keys
    <= m - L + j, so the sums phi(K)^T [V, 1] of the first m - L keys start the causal scan
    over the last L.
    """
    _check_degree(degree)
    _check_qkv(q, k, v, False)
    n_rows, m = q.shape[-2], k.shape[-2]
    if n_rows > m:
        raise ValueError(f"q must have at most m = {m} rows (the last positions); got {n_rows}.")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not causal:
        return _noncausal(q, k, v, degree, scale, chunk)
    init = None
    if m > n_rows:
        kv = _key_sums(k[..., : m - n_rows, :], v[..., : m - n_rows, :], degree, scale, chunk)
        init = (kv[..., :-1], kv[..., -1])
    rest = (k[..., m - n_rows :, :], v[..., m - n_rows :, :])
    return _causal(q, *rest, degree, scale, min(chunk, n_rows), init)


def poly_attention_fn(degree: int, chunk: int = 256):
    """The model hook: attention_fn(q, k, v, scale, causal) running poly_attention of ``degree``."""
    _check_degree(degree)

    def fn(q, k, v, scale, causal=False):
        return poly_attention(q, k, v, degree=degree, scale=scale, causal=causal, chunk=chunk)

    return fn


def poly_rows_fn(degree: int, chunk: int = 256):
    """The rows hook of ``model.prompted_rows``: rows_fn(q_L, k, v, scale, causal)."""
    _check_degree(degree)

    def fn(q, k, v, scale, causal=False):
        return poly_attention_rows(q, k, v, degree=degree, scale=scale, causal=causal, chunk=chunk)

    return fn
