"""alpha-entmax by bisection: simplex, sparsity, limits and gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from outeffhop.ops.entmax import entmax_bisect, gsh_alpha, sparsemax


def _z(shape=(4, 7), seed=0):
    return 2.0 * jax.random.normal(jax.random.key(seed), shape)


def test_on_simplex_and_sparse_rows():
    z = _z((64, 16))
    for alpha in (1.2, 1.5, 2.0):
        p = entmax_bisect(z, alpha)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
        assert float(p.min()) >= 0.0
        assert int((p == 0).sum()) > 0  # exact zeros appear
    # Higher alpha gives sparser outputs.
    nz = [int((entmax_bisect(z, a) > 0).sum()) for a in (1.1, 1.5, 2.0)]
    assert nz[0] >= nz[1] >= nz[2]


def test_limits_softmax_and_sparsemax():
    z = _z()
    chex.assert_trees_all_close(entmax_bisect(z, 2.0), sparsemax(z), atol=1e-5)
    chex.assert_trees_all_close(entmax_bisect(z, 1.001), jax.nn.softmax(z), atol=5e-3)


def test_axis_and_dtype():
    z = _z((3, 5, 6))
    a = entmax_bisect(z, 1.5, axis=1)
    b = jnp.moveaxis(entmax_bisect(jnp.moveaxis(z, 1, -1), 1.5), -1, 1)
    chex.assert_trees_all_close(a, b, atol=1e-6)
    assert entmax_bisect(z.astype(jnp.bfloat16), 1.5).dtype == jnp.bfloat16


@pytest.mark.parametrize("alpha", [1.3, 1.7])
def test_gradients_match_finite_differences(alpha):
    z = _z((3, 6), seed=2)
    w = jax.random.normal(jax.random.key(3), (3, 6))

    def f(z, a):
        return jnp.sum(w * entmax_bisect(z, a, n_iter=80))

    check_grads(lambda z: f(z, alpha), (z,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)
    ga = jax.grad(f, argnums=1)(z, alpha)
    eps = 1e-3
    fd = (f(z, alpha + eps) - f(z, alpha - eps)) / (2 * eps)
    np.testing.assert_allclose(ga, fd, rtol=3e-2, atol=3e-3)


def test_per_row_alpha_and_gsh_range():
    z = _z((2, 5))
    alpha = gsh_alpha(jnp.array([[-3.0], [3.0]]))
    assert bool(jnp.all((alpha > 1) & (alpha < 2)))
    p = entmax_bisect(z, alpha)
    chex.assert_trees_all_close(p[0], entmax_bisect(z[0], alpha[0, 0]), atol=1e-6)
    g = jax.grad(lambda a: entmax_bisect(z, gsh_alpha(a))[:, 0].sum())(jnp.zeros((2, 1)))
    assert g.shape == (2, 1) and bool(jnp.all(jnp.isfinite(g)))


def test_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        entmax_bisect(_z(), 1.0)
