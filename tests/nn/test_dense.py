"""Dense's CPU-shaped backward and the erf GELU agree with jax's own versions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop.models.blocks import gelu
from outeffhop.nn.dense import dense_dot_general

DENSE = lambda x: (((x.ndim - 1,), (0,)), ((), ()))  # noqa: E731


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (2, 2, 3, 7)])
def test_values_and_gradients_match_dot_general(shape):
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (7, 4))
    g = jax.random.normal(kg, shape[:-1] + (4,))

    def loss(dot):
        return lambda x, w: jnp.sum(jnp.tanh(dot(x, w, DENSE(x))) * g)

    ours = jax.jit(jax.value_and_grad(loss(dense_dot_general), argnums=(0, 1)))(x, w)
    ref = jax.jit(jax.value_and_grad(loss(jax.lax.dot_general), argnums=(0, 1)))(x, w)
    np.testing.assert_array_equal(ours[0], ref[0])  # the forward is lax.dot_general itself
    for a, b in zip(ours[1], ref[1], strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_weight_gradient_is_a_row_major_dot():
    x, w = jnp.ones((8, 16, 32)), jnp.ones((32, 64))
    grad = jax.jit(jax.grad(lambda w: jnp.sum(dense_dot_general(x, w, DENSE(x))), argnums=0))
    hlo = grad.lower(w).as_text()
    assert "optimization_barrier" in hlo  # the transposed input is materialized
    np.testing.assert_allclose(grad(w), np.full((32, 64), 128.0))


def test_other_contractions_fall_back_to_dot_general():
    a, b = jnp.ones((3, 4)), jnp.ones((5, 4))
    nt = (((1,), (1,)), ((), ()))
    np.testing.assert_array_equal(dense_dot_general(a, b, nt), jax.lax.dot_general(a, b, nt))
    mixed = dense_dot_general(a.astype(jnp.bfloat16), jnp.ones((4, 2)), DENSE(a))
    assert mixed.shape == (3, 2)


def test_bfloat16_dense_module_gradients():
    x = jax.random.normal(jax.random.key(1), (4, 6, 16))
    layers = [nn.Dense(8, dtype=jnp.bfloat16, dot_general=d) for d in (dense_dot_general, None)]
    params = layers[0].init(jax.random.key(2), x)
    grads = [
        jax.grad(lambda p, m=m: jnp.sum(m.apply(p, x).astype(jnp.float32) ** 2))(params)
        for m in layers
    ]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2)


def test_erf_gelu_matches_jax_exact_gelu():
    x = jnp.linspace(-12.0, 12.0, 20001)
    np.testing.assert_allclose(gelu(x), jax.nn.gelu(x, approximate=False), atol=2e-6)
    slope = jax.vmap(jax.grad(gelu))(x)
    ref = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x)
    np.testing.assert_allclose(slope, ref, atol=2e-6)
    assert gelu(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16
