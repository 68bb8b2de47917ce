"""Polynomial attention: Taylor formulas, features, agreement with exact attention, bad input."""

import importlib
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

from prompt_theory.model import exact_attention

# the module (prompt_theory.poly_attention is the exported function of the same name)
pa = importlib.import_module("prompt_theory.poly_attention")


def _qkv(n, d, bound, seed=0, lead=(), m=None):
    rng = np.random.default_rng(seed)
    m = n if m is None else m
    q = rng.uniform(-bound, bound, lead + (n, d))
    k = rng.uniform(-bound, bound, lead + (m, d))
    v = rng.normal(size=lead + (m, 3))
    return (jnp.asarray(a, jnp.float32) for a in (q, k, v))


def _taylor(t, g):
    return sum(t**i / math.factorial(i) for i in range(g + 1))


@pytest.mark.parametrize("bound", [0.05, 0.7, 2.0, 6.0])
@pytest.mark.parametrize("degree", [0, 1, 2, 3, 6])
def test_taylor_rel_error_is_the_max_over_the_interval(bound, degree):
    t = np.linspace(-bound, bound, 20001)
    brute = np.max(np.abs(_taylor(t, degree) * np.exp(-t) - 1.0))
    # the brute force loses ~1e-15 to cancellation; the series has none
    np.testing.assert_allclose(pa.taylor_rel_error(bound, degree), brute, rtol=1e-6, atol=1e-13)


@given(st.floats(0.0, 20.0), st.sampled_from([1e-1, 1e-3, 1e-6]))
def test_taylor_degree_is_the_smallest_degree_reaching_eps(bound, eps):
    g = pa.taylor_degree(bound, eps)
    assert pa.taylor_rel_error(bound, g) <= eps
    assert g == 0 or pa.taylor_rel_error(bound, g - 1) > eps
    assert pa.taylor_degree(bound * 1.5 + 0.1, eps) >= g


@pytest.mark.parametrize("bound", [0.5, 0.99, 1.0, 1.5, 3.0])
def test_odd_degree_error_below_one_iff_taylor_stays_positive(bound):
    # T_1(t) = 1 + t is positive on [-b, b] iff b < 1; the relative error crosses 1 there.
    assert (pa.taylor_rel_error(bound, 1) < 1.0) == (bound < 1.0)
    assert pa.attention_error_bound(pa.taylor_rel_error(bound, 1)) == (
        math.inf
        if bound >= 1.0
        else pytest.approx(pa.taylor_rel_error(bound, 1) / (1 - pa.taylor_rel_error(bound, 1)))
    )


@pytest.mark.parametrize("d,degree", [(1, 0), (1, 5), (3, 2), (4, 3), (8, 2), (8, 3)])
def test_rank_counts_the_features(d, degree):
    feats = pa.poly_features(jnp.ones((2, d)), degree)
    assert feats.shape == (2, pa.poly_rank(d, degree)) == (2, math.comb(d + degree, degree))


@pytest.mark.parametrize("d,degree,scale", [(1, 4, 1.0), (3, 0, 0.3), (3, 3, 1.7), (5, 2, 0.5)])
def test_feature_inner_product_is_truncated_taylor_of_the_score(d, degree, scale):
    q, k, _ = _qkv(4, d, 1.0, seed=d + degree)
    fq, fk = pa.poly_features(q, degree, scale), pa.poly_features(k, degree, scale)
    direct = _taylor(scale * (q @ k.T), degree)
    np.testing.assert_allclose(fq @ fk.T, direct, rtol=2e-5, atol=2e-6)


class PolyAttentionTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(False, True)
    def test_matches_exact_within_the_taylor_bound(self, causal):
        q, k, v = _qkv(50, 4, 0.5, lead=(2,))
        scale = 0.5
        b = scale * float(jnp.max(jnp.abs(jnp.einsum("...id,...jd->...ij", q, k))))
        v_range = float(jnp.max(v.max(-2) - v.min(-2)))
        exact = exact_attention(q, k, v, scale, causal)
        for degree in (2,):
            fn = self.variant(
                lambda q, k, v, g=degree: pa.poly_attention(
                    q, k, v, degree=g, scale=scale, causal=causal, chunk=16
                )
            )
            err = float(jnp.max(jnp.abs(fn(q, k, v) - exact)))
            assert err <= pa.attention_error_bound(pa.taylor_rel_error(b, degree), v_range) + 1e-6

    def test_error_decreases_with_degree(self):
        q, k, v = _qkv(64, 4, 0.8, seed=1)
        exact = exact_attention(q, k, v, 1.0)
        errs = [
            float(jnp.max(jnp.abs(pa.poly_attention(q, k, v, degree=g, scale=1.0) - exact)))
            for g in range(4)
        ]
        assert all(a > b for a, b in zip(errs, errs[1:], strict=False)), errs

    @chex.variants(with_jit=True)
    @parameterized.parameters((33, 8), (5, 128))
    def test_causal_matches_masked_exact(self, n, chunk):
        q, k, v = _qkv(n, 3, 0.4, seed=n, lead=(2, 1))
        out = self.variant(
            lambda q, k, v: pa.poly_attention(
                q, k, v, degree=6, scale=1.0, causal=True, chunk=chunk
            )
        )(q, k, v)
        chex.assert_trees_all_close(out, exact_attention(q, k, v, 1.0, True), atol=2e-5)

    def test_noncausal_allows_more_keys_than_queries(self):
        q, k, v = _qkv(7, 3, 0.3, m=19)
        out = pa.poly_attention(q, k, v, degree=6)
        chex.assert_trees_all_close(out, exact_attention(q, k, v, 3**-0.5), atol=2e-6)

    @parameterized.parameters(False, True)
    def test_gradients_close_to_exact(self, causal):
        q, k, v = _qkv(16, 3, 0.3, seed=3)

        def loss(fn):
            return lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v)))

        def poly_fn(q, k, v):
            return pa.poly_attention(q, k, v, degree=4, scale=1.0, causal=causal, chunk=8)

        exact = jax.jit(
            jax.grad(loss(lambda q, k, v: exact_attention(q, k, v, 1.0, causal)), (0, 1, 2))
        )
        poly = jax.jit(jax.grad(loss(poly_fn), (0, 1, 2)))(q, k, v)
        exact = exact(q, k, v)
        chex.assert_tree_all_finite(poly)
        chex.assert_trees_all_close(poly, exact, atol=1e-4)

    def test_model_hook_runs_in_the_transformer(self):
        from prompt_theory import model as pm

        params = pm.init_params(jax.random.PRNGKey(0), 4)
        prompt, x = 0.1 * jnp.ones((3, 4)), 0.1 * jnp.ones((2, 5, 4))
        run = jax.jit(pm.prompted, static_argnames=("scale", "causal", "attention_fn"))
        exact = run(params, prompt, x, scale="1/d", causal=True)
        poly = run(
            params, prompt, x, scale="1/d", causal=True, attention_fn=pa.poly_attention_fn(6)
        )
        chex.assert_trees_all_close(poly, exact, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_long_sequence_runs_in_little_memory(causal):
    n, d, degree = 65536, 4, 2
    q, k, v = _qkv(n, d, 0.5, seed=5)
    fn = jax.jit(
        lambda q, k, v: pa.poly_attention(
            q, k, v, degree=degree, scale=1.0 / d, causal=causal, chunk=256
        )
    )
    compiled = fn.lower(q, k, v).compile()
    stats = compiled.memory_analysis()
    r = pa.poly_rank(d, degree)
    if stats is not None:  # O(n r) scratch, far below the 4 n^2 = 17 GB of the score matrix
        assert stats.temp_size_in_bytes < 64 * n * r
    out = compiled(q, k, v)
    rows = slice(n - 64, n) if causal else slice(0, 64)
    ref = exact_attention(q[rows], k, v, 1.0 / d) if not causal else None
    if causal:  # the last 64 queries see every key but the ones after them
        s = (q[rows] @ k.T) / d
        s = jnp.where(jnp.arange(n)[None, :] <= jnp.arange(n - 64, n)[:, None], s, -jnp.inf)
        ref = jax.nn.softmax(s, -1) @ v
    chex.assert_tree_all_finite(out)
    chex.assert_trees_all_close(out[rows], ref, atol=5e-4)


def test_bad_input_fails_early():
    q, k, v = _qkv(4, 3, 1.0)
    with pytest.raises(ValueError, match="degree"):
        pa.poly_attention(q, k, v, degree=-1)
    with pytest.raises(ValueError, match="degree"):
        pa.poly_attention(q, k, v, degree=1.5)
    with pytest.raises(ValueError, match="degree"):
        pa.poly_rank(3, -2)
    with pytest.raises(ValueError, match="last dim d"):
        pa.poly_attention(q, k[:, :2], v, degree=2)
    with pytest.raises(ValueError, match="length n"):
        pa.poly_attention(q, k, v[:3], degree=2)
    with pytest.raises(ValueError, match="causal"):
        pa.poly_attention(q[:3], k, v, degree=2, causal=True)
    with pytest.raises(ValueError, match="chunk"):
        pa.poly_attention(q, k, v, degree=2, chunk=0)
    with pytest.raises(ValueError, match="eps"):
        pa.taylor_degree(1.0, 0.0)
    with pytest.raises(ValueError, match="bound"):
        pa.taylor_rel_error(-1.0, 2)
    with pytest.raises(ValueError, match="needs degree"):
        pa.taylor_degree(500.0, 1e-3)
