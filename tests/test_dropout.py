"""The mask-keeping Dropout equals flax's nn.Dropout in value and gradient."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop.models.dropout import Dropout


class Net(nn.Module):
    cls: type
    rate: float

    @nn.compact
    def __call__(self, x, deterministic):
        return self.cls(self.rate)(jnp.tanh(x), deterministic=deterministic) ** 2


@pytest.mark.parametrize("impl", ["threefry2x32", "philox4x32", "rbg"])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_same_values_and_gradients_as_flax(impl, rate):
    x = jax.random.normal(jax.random.key(0), (4, 64, 32))
    key = jax.random.key(3, impl=impl)

    def run(cls):
        net = Net(cls, rate)

        def f(x):
            return jnp.sum(net.apply({}, x, False, rngs={"dropout": key}) * jnp.arange(1.0, 33.0))

        return jax.jit(jax.value_and_grad(f))(x)

    (v1, g1), (v2, g2) = run(Dropout), run(nn.Dropout)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(g1, g2)
    kept = np.mean(np.asarray(g1) != 0)
    assert abs(kept - (1 - rate)) < 0.02


def test_deterministic_and_edge_rates():
    x = jnp.ones((3, 5))
    assert (Dropout(0.3).apply({}, x, deterministic=True) == x).all()
    assert (Dropout(0.0).apply({}, x, deterministic=False) == x).all()
    out = Dropout(1.0).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
    assert (out == 0).all()
