"""Prompt tuning is universal: frozen 1-layer 1-head weights, f-independent; only P holds f.

Setting. X in [0,1]^{L x d} (L tokens of width d); target f: [..., L, d] -> [..., L, d_out],
vectorised, |f| <= B (``value_bound``), C-Lipschitz entrywise: |f(X)-f(Y)|_inf <= C|X-Y|_inf.
Grid: G = ceil(1/delta) cells per coordinate, boundaries b_k = k delta (k = 1..G-1), digit
g(t) = #{k : t > b_k}; a grid sequence is the digit array g in {0..G-1}^{L x d}; its index
c = sum_j code_j G^{jd} with code_j = sum_i g_{ji} G^i < G^d. There are N = G^{dL} cells.

Assumptions (fixed linear maps, part of the frozen model, independent of f):
 * embedding [x_l, e_l, 1, 0...] with e_l the one-hot position (without positions tau is
   permutation-equivariant in X and cannot realise a general f); readout: d_out fixed columns.
 * score scale 1 (beta lives in W_Q); width D = 3d + 4L + 3 + d_out + K d_out, K = G^{d(L-1)}.

Step 1, F_pre quantiser (4 layers, ReLU between): a_k = relu(t - b_k), r_k = relu(1 - s a_k) with
s = 2^40, step_k = 1 - r_k. In exact arithmetic step_k = [t > b_k] outside strips of width
1/s (total measure <= dL(G-1)/s ~ 1e-11); in float32 t - b_k is exact near b_k (Sterbenz) and
its smallest non-zero value is >> 1/s, so digits are exact integers for every float input.
Then g = sum_k step_k, |g|^2 = sum_{i,k} (2k-1) step_{ik}, code_j e_j = relu(code - G^d(1-e_j)).

Step 2, one softmax as retrieval and contextual mapping. P has one token per (position l',
grid sequence c'): L_p = L N. Its key region is (c'_{l'}, e_{l'}, |c'_{l'}|^2); its payload
region holds f(centre(c'))_{l'} in slot s = k_{l'}(c') (the index of c' without position l',
mixed radix, K slots). With q = beta(2g, e_l, -1, |g|^2 + 1) for input token l and keys
(c, e, |c|^2, 0) (prompt) or (0, 0, 0, 1) (input):
    logit(prompt l',c') = beta(|g|^2 - |g - c'_{l'}|^2 + [l = l']),  logit(input) = beta(|g|^2 + 1).
So the K prompt tokens with (l', c'_{l'}) = (l, g_l) and all L input tokens tie at the maximum
and every other token is >= beta below it (integer digits; beta a power of 2 keeps the logits
exact in float32). The weights are 1/(K + L + ell) on the tie set, leak
ell = sum e^{-beta Delta} <= (L_p - K) e^{-beta}. The input tokens' values carry code_j e_j, so
the context region gets ctx = code / (K + L + ell): the whole grid sequence in L numbers (the
contextual mapping; the prompt contributes 0 there). Scaled by K + L the ids are the integers
code_j up to |eta| <= G^d L_p e^{-beta} / (K+L); the compressed index k_l then errs by
<= L N e^{-beta}. beta is the least power of 2 with L N e^{-beta} <= 1/8 and
2 B L G^d e^{-beta} <= attn_tol; the margin 1/4 > error is asserted in ``build``.
The constraint of one layer shows here: a query sees only its own token, so the prompt can
deliver to token l only the K entries consistent with (l, g_l), spread over K slots; the
rest of X reaches token l through the same softmax (ctx), and F_post combines the two. Since
P's influence on row l is the (D+1)-vector (sum_p e^{q.k_p} v_p, sum_p e^{q.k_p}), a fixed
finite-precision width D cannot carry the N d_out table: D >= K d_out is forced, as used here.

Step 3, F_post lookup (4 layers, ReLU between): k = sum_l relu(k_l(cs) - (K+1)(1 - e_l)) with
cs = (K+L) ctx; trapezoid indicator T_s(k) = 2[r(k-s+3/4) - r(k-s+1/4) - r(k-s-1/4) +
r(k-s-3/4)] (= 1 for |k-s| <= 1/4, 0 for |k-s| >= 3/4); payload P_s = (K+L) pay_s; gated
product relu(P_s + 2B(T_s - 1)) - relu(-P_s + 2B(T_s - 1)) = P_s T_s exactly for T_s in {0,1}.

Result (delta >= 2^-16, so that the float32 quantiser is exact). For every float32 X:
    |tau([P,X])[L_p:] - f(X)|_inf <= C delta / 2 + eps_attn + eps_fp,
eps_attn = 2 B L G^d e^{-beta}, eps_fp (float32 rounding, 16 B (K + L + 1) 2^-23); the L^p
error (sum over the L d_out output entries) is at most (L d_out)^{1/p} times that: within the
theory's C delta (dL)^{1/p} when d_out = d and eps_attn + eps_fp <= C delta / 2.
Exact: quantiser, ids, slot choice. Approximate: softmax leak (bounded above), float rounding.
Costs: L_p = L G^{dL} tokens (exponent dL in 1/delta), width D ~ G^{d(L-1)} d_out.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from prompt_theory import model

STEEP = 2.0**40  # quantiser slope s: far above 1 / (smallest float32 gap near a boundary)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["params"],
    meta_fields=["d", "L", "d_out", "G", "delta", "beta", "value_bound", "regions"],
)
@dataclasses.dataclass(frozen=True)
class Construction:
    """Frozen weights ``params`` (run with ``scale=1.0``) and the layout they assume."""

    params: dict
    d: int
    L: int
    d_out: int
    G: int
    delta: float
    beta: float
    value_bound: float
    regions: tuple  # ((name, (start, stop)), ...): column ranges in the width-D residual

    def region(self, name: str) -> slice:
        return slice(*dict(self.regions)[name])

    @property
    def n_cells(self) -> int:
        return self.G ** (self.d * self.L)

    @property
    def slots(self) -> int:
        return self.G ** (self.d * (self.L - 1))

    @property
    def prompt_len(self) -> int:
        return self.L * self.n_cells

    @property
    def width(self) -> int:
        return max(b for _, (_, b) in self.regions)

    def leak_bound(self) -> float:
        """eps_attn = 2 B L G^d e^{-beta}: softmax leak into the returned value."""
        return 2 * self.value_bound * self.L * self.G**self.d * math.exp(-self.beta)

    def fp_bound(self) -> float:
        """eps_fp: float32 rounding of the index k (~ulp(K)) times the gate scale 2B, doubled."""
        return 8 * 2 * self.value_bound * (self.slots + self.L + 1) * 2.0**-23

    def error_bound(self, lipschitz: float) -> float:
        """Per-entry sup bound C delta/2 + eps_attn + eps_fp."""
        return lipschitz * self.delta / 2 + self.leak_bound() + self.fp_bound()


def grid_size(delta: float) -> int:
    """G = ceil(1/delta) cells per coordinate; delta must lie in (0, 1]."""
    if not (isinstance(delta, numbers.Real) and 0 < delta <= 1):
        raise ValueError(f"delta must be a number in (0, 1]; got {delta!r}.")
    return max(1, math.ceil(round(1.0 / delta, 9)))


def _thresholds(G: int, delta: float) -> np.ndarray:
    """Cell boundaries b_k = k delta, k = 1..G-1, as float32 (shared by F_pre and references)."""
    return np.array([k * delta for k in range(1, G)], np.float32)


def _layout(d: int, L: int, d_out: int, K: int) -> dict:
    sizes = [("x", d), ("pos", L), ("flag", 1), ("kdig", d), ("kpos", L), ("ksq", 1)]
    sizes += [("pay", K * d_out), ("dig", d), ("sq", 1), ("code", L), ("ctx", L)]
    sizes += [("out", d_out)]
    regions, start = {}, 0
    for name, n in sizes:
        regions[name] = (start, start + n)
        start += n
    return regions


def plan(d: int, L: int, delta: float, d_out: int | None = None) -> dict:
    """Sizes of the construction (no allocation): cells, slots, prompt length, width, bytes."""
    for name, v in (("d", d), ("L", L)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name} must be a positive int; got {v!r}.")
    d_out = d if d_out is None else d_out
    G = grid_size(delta)
    N, K = G ** (d * L), G ** (d * (L - 1))
    D = 3 * d + 4 * L + 3 + d_out + K * d_out
    w_pre = (D + d * G + L) * (d * G + L) + (d * G + L) * (L + d + 1) + (L + d + 1) * D
    h1, h2 = L + 2 * K * d_out, 4 * K + 2 * K * d_out
    w_post = D * h1 + h1 * h2 + h2 * 2 * K * d_out + 2 * K * d_out * D
    floats = L * N * D + w_pre + w_post + D * (2 * (d + L + 2) + 2 * (K * d_out + L))
    return dict(G=G, n_cells=N, slots=K, prompt_len=L * N, width=D, bytes=4 * floats)


def _check_build(p: dict, delta: float, value_bound: float, max_bytes: float) -> None:
    if p["bytes"] > max_bytes:
        raise ValueError(
            f"delta={delta} gives a grid of {p['n_cells']} cells: a prompt of "
            f"{p['prompt_len']} x {p['width']} plus weights needs {p['bytes'] / 2**30:.2f} GiB "
            f"> max_bytes={max_bytes / 2**30:.2f} GiB; use a larger delta or a smaller d*L."
        )
    if p["n_cells"] > 2**22:
        raise ValueError(f"ids up to n_cells={p['n_cells']} exceed float32's exact range 2^22.")
    if not value_bound > 0:
        raise ValueError(f"value_bound must be positive; got {value_bound}.")
    if delta < 2.0**-16:
        raise ValueError(f"delta must be >= 2^-16 for the float32-exact quantiser; got {delta}.")


def retrieval_beta(L: int, G: int, d: int, value_bound: float, attn_tol: float) -> float:
    """Step 2's inverse temperature: the least power of 2 with L N e^-beta <= 1/8 and
    2 B L G^d e^-beta <= attn_tol (N = G^{dL}); a power of 2 keeps the logits exact."""
    N = G ** (d * L)
    beta_min = max(math.log(8 * L * N), math.log(2 * value_bound * L * G**d / attn_tol), 1.0)
    return 2.0 ** math.ceil(math.log2(beta_min))


def quantiser_layers(d: int, L: int, G: int, delta: float, D: int, sl: dict) -> list:
    """Step 1, F_pre (4 layers): digits g, code_j e_j and |g|^2 written into the residual.

    [a (d M) | pos (L)] -> [r (d M) | pos (L)] -> [code (L) | g (d) | sq] -> residual, with
    a_k = relu(t - b_k), r_k = relu(1 - s a_k), g_i = M - sum_k r, M = G - 1 thresholds.
    """
    f32, M = np.float32, G - 1
    w1, b1 = np.zeros((D, d * M + L), f32), np.zeros(d * M + L, f32)
    w2, b2 = np.zeros((d * M + L, d * M + L), f32), np.zeros(d * M + L, f32)
    w3, b3 = np.zeros((d * M + L, L + d + 1), f32), np.zeros(L + d + 1, f32)
    w4, b4 = np.zeros((L + d + 1, D), f32), np.zeros(D, f32)
    radix = G ** np.arange(d)
    for i in range(d):
        for k in range(M):
            u = i * M + k
            w1[sl["x"].start + i, u], b1[u] = 1.0, -_thresholds(G, delta)[k]
            w2[u, u], b2[u] = -STEEP, 1.0  # r = relu(1 - s a)
            # g_i = M - sum_k r; code = sum_i g_i G^i; sq = sum (2k+1) (1 - r)
            w3[u, :L] = -radix[i]
            w3[u, L + i] = -1.0
            w3[u, L + d] = -(2 * k + 1)
    for j in range(L):
        w1[sl["pos"].start + j, d * M + j] = 1.0
        w2[d * M + j, d * M + j] = 1.0
        w3[d * M + j, j] = G**d  # relu(code - G^d (1 - e_j))
    b3[:L] = M * radix.sum() - G**d
    b3[L : L + d] = M
    b3[L + d] = M * M * d
    w4[:L, sl["code"]] = np.eye(L)
    w4[L : L + d, sl["dig"]] = np.eye(d)
    w4[L + d, sl["sq"].start] = 1.0
    return _layers((w1, b1), (w2, b2), (w3, b3), (w4, b4))


def retrieval_attention(d: int, L: int, K: int, d_out: int, D: int, beta: float, sl: dict):
    """Step 2, one softmax as retrieval and contextual mapping: W_Q, W_K, W_V, W_O.

    q = beta (2g, e, -1, sq + 1); k = (kdig, kpos, ksq, flag); v = (pay, code).
    """
    f32 = np.float32
    dh, dv = d + L + 2, K * d_out + L
    wq, wk = np.zeros((D, dh), f32), np.zeros((D, dh), f32)
    wv, wo = np.zeros((D, dv), f32), np.zeros((dv, D), f32)
    wq[sl["dig"], :d] = 2 * beta * np.eye(d)
    wq[sl["pos"], d : d + L] = beta * np.eye(L)
    wq[sl["flag"].start, d + L] = -beta
    wq[sl["sq"].start, d + L + 1] = beta
    wq[sl["flag"].start, d + L + 1] = beta
    wk[sl["kdig"], :d] = np.eye(d)
    wk[sl["kpos"], d : d + L] = np.eye(L)
    wk[sl["ksq"].start, d + L] = 1.0
    wk[sl["flag"].start, d + L + 1] = 1.0
    wv[sl["pay"], : K * d_out] = np.eye(K * d_out)
    wv[sl["code"], K * d_out :] = np.eye(L)
    wo[: K * d_out, sl["pay"]] = np.eye(K * d_out)
    wo[K * d_out :, sl["ctx"]] = np.eye(L)
    return {k: jnp.asarray(v) for k, v in (("wq", wq), ("wk", wk), ("wv", wv), ("wo", wo))}


def lookup_layers(d: int, L: int, G: int, K: int, d_out: int, D: int, value_bound, sl) -> list:
    """Step 3, F_post (4 layers): the compressed index k, trapezoid indicators T_s, the gated
    payload product P_s T_s, and the sum into the output region.

    [k_l (L) | P+ P- (2 K d_out)] -> [T units (4K) | P+ P-] -> [u+ u-] -> out.
    """
    f32 = np.float32
    KP, ups = K * d_out, K + L
    gate = 2.0 * value_bound
    v1, c1 = np.zeros((D, L + 2 * KP), f32), np.zeros(L + 2 * KP, f32)
    for l in range(L):
        for j in range(L):
            if j != l:
                v1[sl["ctx"].start + j, l] = ups * float(G ** (d * (j if j < l else j - 1)))
        v1[sl["pos"].start + l, l] = K + 1
        c1[l] = -(K + 1)
    v1[sl["pay"], L : L + KP] = ups * np.eye(KP)
    v1[sl["pay"], L + KP :] = -ups * np.eye(KP)
    offs = np.array([-0.75, -0.25, 0.25, 0.75], f32)
    v2, c2 = np.zeros((L + 2 * KP, 4 * K + 2 * KP), f32), np.zeros(4 * K + 2 * KP, f32)
    v2[:L, : 4 * K] = 1.0
    c2[: 4 * K] = -(np.repeat(np.arange(K, dtype=f32), 4) + np.tile(offs, K))
    v2[L:, 4 * K :] = np.eye(2 * KP)
    v3, c3 = np.zeros((4 * K + 2 * KP, 2 * KP), f32), np.full(2 * KP, -gate, f32)
    tw = 2 * gate * np.array([1, -1, -1, 1], f32)  # gate * T_s from the four units
    for s in range(K):
        for c in range(d_out):
            a = s * d_out + c
            for sign, col in ((1, a), (-1, KP + a)):
                v3[4 * s : 4 * s + 4, col] = tw
                v3[4 * K + a, col] = sign
                v3[4 * K + KP + a, col] = -sign
    v4, c4 = np.zeros((2 * KP, D), f32), np.zeros(D, f32)
    for s in range(K):
        for c in range(d_out):
            v4[s * d_out + c, sl["out"].start + c] = 1.0
            v4[KP + s * d_out + c, sl["out"].start + c] = -1.0
    return _layers((v1, c1), (v2, c2), (v3, c3), (v4, c4))


def _layers(*pairs):
    return [{"w": jnp.asarray(w), "b": jnp.asarray(b)} for w, b in pairs]


def build(
    d: int,
    L: int,
    delta: float,
    *,
    d_out: int | None = None,
    value_bound: float = 1.0,
    attn_tol: float = 1e-6,
    max_bytes: float = 2.0**31,
) -> Construction:
    """The frozen weights for grid step ``delta``; independent of any target f."""
    p = plan(d, L, delta, d_out)
    _check_build(p, delta, value_bound, max_bytes)
    d_out = d if d_out is None else d_out
    G, N, K, D = p["G"], p["n_cells"], p["slots"], p["width"]
    beta = retrieval_beta(L, G, d, value_bound, attn_tol)
    eta = L * N * math.exp(-beta) + 16 * (K + L) * 2.0**-23  # index error: leak + rounding
    assert eta < 0.25, f"contextual-id margin violated: index error {eta} >= 1/4"
    R = _layout(d, L, d_out, K)
    sl = {k: slice(*v) for k, v in R.items()}
    params = {
        "ffn_pre": quantiser_layers(d, L, G, delta, D, sl),
        "attn": retrieval_attention(d, L, K, d_out, D, beta, sl),
        "ffn": lookup_layers(d, L, G, K, d_out, D, value_bound, sl),
    }
    regions = tuple(R.items())
    return Construction(params, d, L, d_out, G, float(delta), beta, float(value_bound), regions)


def approximate(target, lipschitz: float, delta: float, d: int, L: int, **kw):
    """(construction, prompt, sup error bound) for a C-Lipschitz ``target`` at grid ``delta``.

    ``kw`` goes to ``build`` (d_out, value_bound, attn_tol, max_bytes). The weights depend on
    (d, L, delta, kw) only; the target enters through the prompt alone.
    """
    if not callable(target):
        raise ValueError(
            f"target must be a callable X[..., L, d] -> [..., L, d_out]; got {target!r}."
        )
    if not (isinstance(lipschitz, numbers.Real) and 0 <= lipschitz < math.inf):
        raise ValueError(f"lipschitz must be a finite number >= 0; got {lipschitz!r}.")
    con = build(d, L, delta, **kw)
    return con, make_prompt(con, target), con.error_bound(lipschitz)


def cell_centres(G: int, delta: float) -> np.ndarray:
    """Centre of each cell per coordinate, [G]; the last cell is [(G-1) delta, 1]."""
    c = (np.arange(G) + 0.5) * delta
    c[-1] = ((G - 1) * delta + 1.0) / 2
    return c


def grid_digits(con: Construction) -> np.ndarray:
    """All grid sequences, [N, L, d] digits, in index order c = sum_j code_j G^{jd}."""
    idx = np.arange(con.n_cells)
    flat = (idx[:, None] // con.G ** np.arange(con.d * con.L)[None]) % con.G
    return flat.reshape(con.n_cells, con.L, con.d)


def compressed_index(digits: np.ndarray, l: int, G: int) -> np.ndarray:
    """k_l: the mixed-radix index of a grid sequence [..., L, d] with position l removed."""
    d = digits.shape[-1]
    code = (digits * G ** np.arange(d)).sum(-1)
    rest = np.delete(code, l, axis=-1)
    return (rest * G ** (d * np.arange(rest.shape[-1]))).sum(-1)


def make_prompt(con: Construction, target, *, batch: int = 4096) -> jax.Array:
    """The soft prompt [L_p, D] that makes ``con`` realise ``target``: one token per (l, cell)."""
    if not callable(target):
        raise ValueError(
            f"target must be a callable f(X[..., L, d]) -> [..., L, d_out]; got {target!r}."
        )
    dig = grid_digits(con)
    X = cell_centres(con.G, con.delta)[dig].astype(np.float32)
    F = np.concatenate(
        [np.asarray(target(jnp.asarray(X[i : i + batch]))) for i in range(0, len(X), batch)]
    )
    want = (con.n_cells, con.L, con.d_out)
    if F.shape != want or not np.all(np.isfinite(F)):
        raise ValueError(
            f"target must return finite [..., L, d_out] = {want[1:]} values; got {F.shape}."
        )
    fmax = float(np.abs(F).max())
    if fmax > con.value_bound:
        raise ValueError(
            f"target values must lie in +-value_bound = {con.value_bound}; max |f| = {fmax:.3g}."
        )
    R = {k: slice(*v) for k, v in con.regions}
    P = np.zeros((con.L, con.n_cells, con.width), np.float32)
    for l in range(con.L):
        P[l, :, R["kdig"]] = dig[:, l]
        P[l, :, R["kpos"].start + l] = 1.0
        P[l, :, R["ksq"].start] = (dig[:, l] ** 2).sum(-1)
        cols = R["pay"].start + compressed_index(dig, l, con.G)[:, None] * con.d_out
        P[l, np.arange(con.n_cells)[:, None], cols + np.arange(con.d_out)] = F[:, l]
    return jnp.asarray(P.reshape(con.prompt_len, con.width))


def embed(con: Construction, x: jax.Array) -> jax.Array:
    """[x_l, e_l, 1, 0, ...]: [..., L, d] -> [..., L, D]."""
    if x.shape[-2:] != (con.L, con.d):
        raise ValueError(f"x must be [..., L, d] = [..., {con.L}, {con.d}]; got {x.shape}.")
    pos = jnp.broadcast_to(jnp.eye(con.L, dtype=x.dtype), x.shape[:-1] + (con.L,))
    ones = jnp.ones(x.shape[:-1] + (1,), x.dtype)
    pad = jnp.zeros(x.shape[:-1] + (con.width - con.d - con.L - 1,), x.dtype)
    return jnp.concatenate([x, pos, ones, pad], -1)


def readout(con: Construction, y: jax.Array) -> jax.Array:
    """The output columns: [..., L, D] -> [..., L, d_out]."""
    return y[..., con.region("out")]


@jax.jit
def realise(con: Construction, prompt: jax.Array, x: jax.Array) -> jax.Array:
    """readout(tau([P, embed(x)])[L_p:]) through ``model.prompted``, [..., L, d_out]."""
    return readout(con, model.prompted(con.params, prompt, embed(con, x), scale=1.0))


@jax.jit
def prompt_cache(con: Construction, prompt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keys and values of the prompt tokens, [L_p, d_h] and [L_p, d_v]: computed once."""
    zp = prompt + model.mlp(con.params["ffn_pre"], prompt)
    return zp @ con.params["attn"]["wk"], zp @ con.params["attn"]["wv"]


def after_attention(con: Construction, cache, x: jax.Array) -> jax.Array:
    """A(F_pre([P, X])) on the input rows only, [..., L, D] (rows are independent)."""
    a, (kp, vp) = con.params["attn"], cache
    z = embed(con, x)
    z = z + model.mlp(con.params["ffn_pre"], z)
    q, kx, vx = z @ a["wq"], z @ a["wk"], z @ a["wv"]
    logits = jnp.concatenate([q @ kp.T, jnp.einsum("...id,...jd->...ij", q, kx)], -1)
    w = jax.nn.softmax(logits, axis=-1)
    o = w[..., : kp.shape[0]] @ vp + w[..., kp.shape[0] :] @ vx
    return z + o @ a["wo"]


@jax.jit
def realise_rows(con: Construction, cache, x: jax.Array) -> jax.Array:
    """Same as ``realise`` (tested), computing only the L input rows; the prompt cached."""
    z = after_attention(con, cache, x)
    return readout(con, z + model.mlp(con.params["ffn"], z))


@jax.jit
def context_ids(con: Construction, cache, x: jax.Array) -> jax.Array:
    """The contextual mapping: (K+L) ctx, one grid-sequence id per input token, [..., L]."""
    z = after_attention(con, cache, x)
    cs = z[..., con.region("ctx")] * (con.slots + con.L)
    return (cs * con.G ** (con.d * jnp.arange(con.L))).sum(-1)


def quantise(con: Construction, x: np.ndarray) -> np.ndarray:
    """The reference piecewise-constant input map: X -> centre of its cell, [..., L, d]."""
    g = (np.asarray(x, np.float32)[..., None] > _thresholds(con.G, con.delta)).sum(-1)
    return cell_centres(con.G, con.delta)[g].astype(np.float32)
