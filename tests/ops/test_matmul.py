"""ops.matmul: the CPU-shaped products and the fused read equal their plain formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop.ops import matmul as products


def _direct_read(scores, v, normalizer, mask):
    """N(scores) @ v with the normalizer written out (masked entries and empty rows weigh 0)."""
    s = jnp.where(mask, scores, -jnp.inf)
    m = jnp.maximum(jnp.max(s, -1, keepdims=True), 0.0 if normalizer == "softmax1" else -jnp.inf)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.where(mask, jnp.exp(scores - m), 0.0)
    z = jnp.sum(e, -1, keepdims=True) + (jnp.exp(-m) if normalizer == "softmax1" else 0.0)
    return (e / jnp.where(z > 0, z, 1.0)) @ v


def _grads(f, *args):
    w = jax.random.normal(jax.random.key(9), jax.eval_shape(f, *args).shape, jnp.float64)
    return jax.jit(jax.grad(lambda *a: jnp.sum(w * f(*a)), argnums=(0, 1)))(*args)


def test_products_and_their_gradients_equal_plain_matmuls_in_float64():
    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.key(0), (2, 3, 5, 4), jnp.float64)
        b = jax.random.normal(jax.random.key(1), (1, 3, 4, 6), jnp.float64)  # broadcast batch
        bt = jnp.swapaxes(b, -1, -2)
        np.testing.assert_allclose(products.matmul(a, b), a @ b, rtol=0, atol=1e-13)
        np.testing.assert_allclose(products.matmul_t(a, bt), a @ b, rtol=0, atol=1e-13)
        for got, want in (
            (_grads(products.matmul, a, b), _grads(jnp.matmul, a, b)),
            (
                _grads(products.matmul_t, a, bt),
                _grads(lambda x, y: x @ jnp.swapaxes(y, -1, -2), a, bt),
            ),
        ):
            for g, h in zip(got, want, strict=True):
                np.testing.assert_allclose(g, h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("normalizer", ["softmax", "softmax1"])
def test_fused_read_value_and_flash_backward_equal_the_direct_formula(normalizer):
    with jax.enable_x64(True):
        scores = 3 * jax.random.normal(jax.random.key(2), (2, 3, 5, 7), jnp.float64)
        v = jax.random.normal(jax.random.key(3), (2, 3, 7, 4), jnp.float64)
        mask = jax.random.uniform(jax.random.key(4), (2, 1, 5, 7)) > 0.3
        mask = mask.at[0, 0, 1].set(False)  # one fully masked row: weighs 0, no NaN
        full = jnp.broadcast_to(mask, scores.shape)

        def fused(s, x):
            return products.normalize_read(s, x, normalizer, mask)

        def direct(s, x):
            return _direct_read(s, x, normalizer, full)

        np.testing.assert_allclose(fused(scores, v), direct(scores, v), rtol=0, atol=1e-13)
        np.testing.assert_array_equal(fused(scores, v)[0, :, 1], 0.0)
        for g, h in zip(_grads(fused, scores, v), _grads(direct, scores, v), strict=True):
            assert np.all(np.isfinite(g))
            np.testing.assert_allclose(g, h, rtol=0, atol=1e-12)


def test_fused_read_rejects_other_normalizers():
    with pytest.raises(ValueError, match="normalizer"):
        products.normalize_read(jnp.zeros((2, 3)), jnp.zeros((3, 1)), "clipped")
