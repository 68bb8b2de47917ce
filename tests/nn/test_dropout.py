"""The mask-keeping Dropout: bernoulli masks equal nn.Dropout's; hash masks are sound."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop import models
from outeffhop.nn.dropout import Dropout, hash_keep_mask


class Net(nn.Module):
    cls: type
    rate: float
    kw: dict = None

    @nn.compact
    def __call__(self, x, deterministic):
        drop = self.cls(self.rate, **(self.kw or {}))
        return drop(jnp.tanh(x), deterministic=deterministic) ** 2


@pytest.mark.parametrize("impl", ["threefry2x32", "philox4x32", "rbg"])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_same_values_and_gradients_as_flax(impl, rate):
    x = jax.random.normal(jax.random.key(0), (4, 64, 32))
    key = jax.random.key(3, impl=impl)

    def run(cls, **kw):
        net = Net(cls, rate, kw)

        def f(x):
            return jnp.sum(net.apply({}, x, False, rngs={"dropout": key}) * jnp.arange(1.0, 33.0))

        return jax.jit(jax.value_and_grad(f))(x)

    (v1, g1), (v2, g2) = run(Dropout, masks="bernoulli"), run(nn.Dropout)
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


def _masks(keep_prob, shape, seeds):
    f = jax.jit(hash_keep_mask, static_argnums=(1, 2))
    return np.stack([np.asarray(f(jax.random.key(s), keep_prob, shape)) for s in seeds])


@pytest.mark.parametrize("keep_prob", [0.9, 0.5, 0.2])
def test_hash_masks_rate_and_independence(keep_prob):
    masks = _masks(keep_prob, (8, 12, 64, 64), range(4))  # 4 keys x 393,216 elements
    n = masks[0].size
    sd = np.sqrt(keep_prob * (1 - keep_prob) / n)
    for m in masks:  # keep rate of each key within 5 standard deviations
        assert abs(m.mean() - keep_prob) < 5 * sd
    q = keep_prob**2  # P(both kept) for independent elements
    sd2 = np.sqrt(q * (1 - q) / n)
    flat = masks.reshape(4, -1)
    for lag in (1, 2, 64, 4096):  # neighbours along rows, columns and heads
        both = np.mean(flat[0, :-lag] & flat[0, lag:])
        assert abs(both - q) < 6 * sd2, lag
    for a, b in ((0, 1), (1, 2), (0, 3)):  # masks of different keys
        assert abs(np.mean(flat[a] & flat[b]) - q) < 6 * sd2, (a, b)


def test_hash_masks_deterministic_and_shape_bound():
    a = hash_keep_mask(jax.random.key(7), 0.9, (3, 5))
    np.testing.assert_array_equal(a, hash_keep_mask(jax.random.key(7), 0.9, (3, 5)))
    assert not np.array_equal(
        hash_keep_mask(jax.random.key(7), 0.5, (64,)), hash_keep_mask(jax.random.key(8), 0.5, (64,))
    )
    with pytest.raises(ValueError, match="uint32"):
        jax.eval_shape(lambda k: hash_keep_mask(k, 0.9, (2**16, 2**16)), jax.random.key(0))


def test_hash_dropout_scales_kept_and_zeroes_dropped():
    x = jax.random.normal(jax.random.key(0), (4, 64, 32))
    net = Net(Dropout, 0.25, {"masks": "hash"})
    key = jax.random.key(5)

    def f(x):
        return jnp.sum(net.apply({}, x, False, rngs={"dropout": key}))

    value, grad = jax.jit(jax.value_and_grad(f))(x)
    keep = np.asarray(grad) != 0  # d/dx of (tanh(x) / 0.75)^2 vanishes only where dropped
    assert abs(keep.mean() - 0.75) < 0.02
    t = np.tanh(np.asarray(x, np.float64))
    np.testing.assert_allclose(value, np.sum(np.where(keep, t / 0.75, 0.0) ** 2), rtol=1e-5)
    expected_grad = np.where(keep, 2 * t / 0.75**2 * (1 - t**2), 0.0)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_bad_masks_name_fails_clearly():
    with pytest.raises(ValueError, match="dropout masks must be one of hash, bernoulli"):
        Dropout(0.1, masks="uniform").apply(
            {}, jnp.ones(3), deterministic=False, rngs={"dropout": jax.random.key(0)}
        )
    cfg = models.get_config("bert-tiny", dropout_masks="philox")
    with pytest.raises(ValueError, match="dropout_masks must be one of"):
        models.check_config(cfg)
