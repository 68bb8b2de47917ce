"""Two-pass LayerNorm: exact where flax's fast variance cancels (large mean, small spread)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.models.blocks import layer_norm
from outeffhop.models.presets import get_config
from outeffhop.nn.layer_norm import LayerNorm


def _reference(x, eps):
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)


def _relative_error(module, x32):
    variables = module.init(jax.random.key(0), x32)
    got = np.asarray(module.apply(variables, x32), np.float64)
    want = _reference(x32, module.epsilon)  # float64 on the same float32 inputs
    return np.max(np.abs(got - want)) / np.max(np.abs(want))


def test_two_pass_matches_float64_at_mean_1e3_std_1():
    x32 = jnp.asarray(np.random.default_rng(0).normal(1e3, 1.0, (8, 128)), jnp.float32)
    # float32 itself limits x - mean to about one ulp at 1e3 (6e-5), relative to std 1.
    assert _relative_error(LayerNorm(1e-5), x32) < 1e-4
    # flax's default single-pass variance is the failure this module exists for.
    assert _relative_error(nn.LayerNorm(1e-5), x32) > 1e-2


def test_same_parameters_and_values_as_flax_on_ordinary_inputs():
    x = jax.random.normal(jax.random.key(1), (3, 5, 16)) * 2.0 + 0.5
    ours, flax_ln = LayerNorm(1e-6), nn.LayerNorm(1e-6)
    v = flax_ln.init(jax.random.key(0), x)
    v = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(2), a.shape), v)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(v)
    np.testing.assert_allclose(ours.apply(v, x), flax_ln.apply(v, x), atol=1e-5)


def test_models_use_the_two_pass_layer_norm():
    cfg = get_config("bert-tiny")
    ln = layer_norm("ln", cfg)
    assert isinstance(ln, LayerNorm) and not ln.use_fast_variance
