"""Normalizers: Softmax_1 identities, masks, clipped softmax, adversarial inputs, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

from outeffhop.ops.softmax import (
    NORMALIZERS,
    check_normalizer,
    clipped_softmax,
    logsumexp,
    lse_1,
    normalize,
    softmax,
    softmax_1,
)

GZ = {"gamma": -0.025, "zeta": 1.0}  # the BERT clipped-softmax preset


def _x(shape, scale=3.0, seed=0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _softmax_with_zero(x, axis):
    """Direct formula: softmax over [x, 0] along ``axis``, zero entry dropped."""
    x = jnp.moveaxis(x, axis, -1)
    padded = jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (1,), x.dtype)], axis=-1)
    return jnp.moveaxis(jax.nn.softmax(padded, axis=-1)[..., :-1], -1, axis)


class SoftmaxTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(-1, 0)
    def test_softmax_1_is_softmax_over_x_and_zero(self, axis):
        x = _x((4, 6))
        y = self.variant(lambda x: softmax_1(x, axis=axis))(x)
        chex.assert_trees_all_close(y, _softmax_with_zero(x, axis), atol=1e-6)
        assert bool(jnp.all(jnp.sum(y, axis=axis) < 1.0))
        assert bool(jnp.all(y > 0))

    @chex.variants(with_jit=True, without_jit=True)
    def test_lse_1_is_direct_formula_and_its_grad_is_softmax_1(self):
        x = _x((3, 5), scale=2.0)
        f = self.variant(lse_1)
        chex.assert_trees_all_close(f(x), jnp.log1p(jnp.sum(jnp.exp(x), -1)), rtol=1e-6)
        grad = self.variant(jax.grad(lambda x: jnp.sum(lse_1(x))))(x)
        chex.assert_trees_all_close(grad, softmax_1(x), atol=1e-6)

    def test_softmax_and_logsumexp_match_jax(self):
        x = _x((3, 5))
        chex.assert_trees_all_close(softmax(x), jax.nn.softmax(x), atol=1e-6)
        chex.assert_trees_all_close(logsumexp(x), jax.nn.logsumexp(x, -1), rtol=1e-6)
        g = jax.grad(lambda x: jnp.sum(logsumexp(x)))(x)
        chex.assert_trees_all_close(g, jax.nn.softmax(x), atol=1e-6)

    @parameterized.parameters("softmax", "softmax1", "clipped", "clipped_softmax1")
    def test_masked_path_agrees_with_unmasked_on_kept_entries(self, normalizer):
        x, keep = _x((3, 7)), 4
        where = jnp.arange(7) < keep

        def f(x, w):
            return normalize(x, normalizer, where=w, **GZ)

        masked = f(x, where)
        chex.assert_trees_all_close(masked[:, :keep], f(x[:, :keep], None), atol=1e-6)
        np.testing.assert_array_equal(masked[:, keep:], 0.0)
        # A random mask equals sending the dropped logits to -inf on the unmasked path.
        where = jnp.asarray(np.random.default_rng(1).random((3, 7)) < 0.6)
        chex.assert_trees_all_close(f(x, where), f(jnp.where(where, x, -jnp.inf), None), atol=1e-6)

    @parameterized.parameters(lse_1, logsumexp)
    def test_masked_lse_agrees_with_unmasked(self, fn):
        x, where = _x((3, 7)), jnp.arange(7) < 4
        chex.assert_trees_all_close(fn(x, where=where), fn(x[:, :4]), rtol=1e-6)

    @parameterized.parameters("softmax", "softmax1")
    def test_clipped_matches_direct_formula(self, base):
        x, gamma, zeta = _x((3, 6)), -0.3, 1.2
        direct = _softmax_with_zero(x, -1) if base == "softmax1" else jax.nn.softmax(x)
        expected = np.clip((zeta - gamma) * np.asarray(direct) + gamma, 0.0, 1.0)
        got = clipped_softmax(x, gamma=gamma, zeta=zeta, normalizer=base)
        chex.assert_trees_all_close(got, expected, atol=1e-6)
        assert bool(jnp.any(got == 0.0))  # gamma < 0 gives exact zeros
        name = "clipped" if base == "softmax" else "clipped_softmax1"
        chex.assert_trees_all_close(normalize(x, name, gamma=gamma, zeta=zeta), got)

    @given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=6))
    def test_softmax_1_identity_on_any_finite_row(self, row):
        # Rows of any length 1..6, padded to 6 and masked: one shape, one compilation.
        x = jnp.asarray(row + [0.0] * (6 - len(row)), jnp.float32)
        y, direct = _identity_check(x, jnp.arange(6) < len(row))
        assert bool(jnp.all(jnp.isfinite(y)))
        chex.assert_trees_all_close(y[: len(row)], direct[: len(row)], atol=1e-6)
        assert float(jnp.sum(y)) <= 1.0


@jax.jit
def _identity_check(x, where):
    return softmax_1(x, where=where), _softmax_with_zero(jnp.where(where, x, -jnp.inf), -1)


ADVERSARIAL = [
    [1e4, -1e4, 0.0, 3.0],
    [-1e4, -1e4, -1e4, -1e4],
    [1e4, 1e4, 1e4, 1e4],
    [-jnp.inf, 2.0, -jnp.inf, 1e4],
    [-jnp.inf, -jnp.inf, -jnp.inf, -jnp.inf],
]


def test_softmax_1_equals_textbook_stable_form():
    # The textbook stable form: m = max(max_j x_j, 0), exp(x - m) / (exp(-m) + sum_j exp(x_j - m)).
    x = jnp.asarray(ADVERSARIAL[:4] + [[-30.0, -25.0, -40.0, -20.0], [1.0, 2.0, 3.0, 4.0]])
    m = jnp.maximum(jnp.max(x, -1, keepdims=True), 0.0)
    textbook = jnp.exp(x - m) / (jnp.exp(-m) + jnp.sum(jnp.exp(x - m), -1, keepdims=True))
    chex.assert_trees_all_close(softmax_1(x), textbook, rtol=1e-5, atol=1e-30)
    lse = jnp.squeeze(m, -1) + jnp.log(jnp.squeeze(jnp.exp(-m), -1) + jnp.sum(jnp.exp(x - m), -1))
    chex.assert_trees_all_close(lse_1(x), lse, rtol=1e-6, atol=1e-8)  # softplus: more exact


@pytest.mark.parametrize("normalizer", NORMALIZERS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
def test_adversarial_rows_give_finite_values_and_grads(normalizer, dtype):
    x = jnp.asarray(ADVERSARIAL, dtype)
    where = jnp.ones(x.shape, bool).at[2].set(False).at[0, 1].set(False)
    w = _x(x.shape, scale=1.0)

    def loss(x):
        return jnp.sum(w * normalize(x, normalizer, where=where, **GZ).astype(jnp.float32))

    y = normalize(x, normalizer, where=where, **GZ)
    assert y.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_array_equal(y[2], 0.0)  # fully masked by `where`
    np.testing.assert_array_equal(y[4], 0.0)  # all logits -inf
    np.testing.assert_array_equal(y[3, 0], 0.0)
    g = jax.grad(loss)(x)
    assert g.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_array_equal(g[2], 0.0)
    # Low precision is computed in fp32: it matches the fp32 result to output rounding.
    ref = normalize(x.astype(jnp.float32), normalizer, where=where, **GZ)
    chex.assert_trees_all_close(y.astype(jnp.float32), ref, atol=1e-2)


@pytest.mark.parametrize("fn", [lse_1, logsumexp])
def test_lse_adversarial_finite_grads(fn):
    x = jnp.asarray(ADVERSARIAL, jnp.float32)
    where = jnp.ones(x.shape, bool).at[2].set(False)
    out = fn(x, where=where)
    assert bool(jnp.all(jnp.isfinite(out[jnp.array([0, 1, 3])])))
    assert float(out[2]) == (0.0 if fn is lse_1 else -jnp.inf)
    g = jax.grad(lambda x: jnp.sum(jnp.where(jnp.isfinite(out), fn(x, where=where), 0.0)))(x)
    assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_length_one(normalizer):
    x = jnp.asarray([[2.0], [-1e4], [1e4]])
    y = normalize(x, normalizer, **GZ)
    if normalizer == "softmax":
        np.testing.assert_array_equal(y, 1.0)
    if normalizer == "softmax1":
        chex.assert_trees_all_close(y, jax.nn.sigmoid(x), atol=1e-6)
    g = jax.grad(lambda x: jnp.sum(normalize(x, normalizer, **GZ)))(x)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_bad_input_names_the_argument():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="normalizer must be one of"):
        normalize(x, "sparsemax")
    with pytest.raises(ValueError, match="normalizer must be one of"):
        check_normalizer("softmax_1")
    with pytest.raises(ValueError, match="normalizer must be one of softmax, softmax1"):
        clipped_softmax(x, gamma=-0.1, zeta=1.0, normalizer="clipped")
    with pytest.raises(ValueError, match="needs gamma and zeta"):
        normalize(x, "clipped")
    with pytest.raises(ValueError, match="zeta must be greater than gamma"):
        clipped_softmax(x, gamma=1.0, zeta=0.5)
    with pytest.raises(ValueError, match="where must be a boolean mask broadcastable"):
        softmax_1(x, where=jnp.ones((4,), bool))
