"""TODO docstring."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop.nn.hopfield import Hopfield
from outeffhop.nn.pooling import HopfieldLayer, HopfieldPooling


def _rand(key, *shape):
    return jax.random.normal(jax.random.key(key), shape)


def _run(model, *args, variables=None, **kwargs):
    """Init (unless ``variables``) and apply; returns (variables, output).

    Eager on purpose: the tiny shapes repeat across tests, so JAX's per-op compile cache
    makes this much cheaper than one jit compile per test.
    """
    if variables is None:  # params do not depend on the update steps: init without a loop
        variables = model.clone(update_steps_max=0).init(jax.random.key(0), *args)
        # Scale the N(0, 0.02) kernels up so associations are peaked, not ~uniform: then
        # beta, the update steps and the masks visibly change the result.
        variables = jax.tree_util.tree_map_with_path(
            lambda p, a: a * 25.0 if "kernel" in jax.tree_util.keystr(p) else a, variables
        )
    return variables, model.apply(variables, *args, **kwargs)


X = _rand(1, 2, 5, 8)  # [B, L, D]


def test_pooling_state_patterns_init_and_trainable_flag():
    model = HopfieldPooling(input_size=8, num_heads=2, quantity=256)
    w = jax.jit(model.init)(jax.random.key(0), X)["params"]["pooling_weights"]  # unscaled
    assert w.shape == (256, 8)
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002
    frozen = HopfieldPooling(input_size=8, quantity=2, trainable=False)
    v, out = _run(frozen, X, stored_pattern_mask=jnp.ones((2, 5), bool))
    assert "pooling_weights" in v["constants"] and "pooling_weights" not in v["params"]
    assert out.shape == (2, 16)


@pytest.mark.slow  # the lookup-layer equivalence covers the same wrapper path by default
def test_pooling_equals_hopfield_with_its_state_patterns():
    pool = HopfieldPooling(input_size=8, num_heads=2, quantity=3)
    v, out = _run(pool, (X, X[..., ::-1]))
    state = jnp.broadcast_to(v["params"]["pooling_weights"], (2, 3, 8))
    _, want = _run(Hopfield(input_size=8, num_heads=2), (X, state, X[..., ::-1]), variables=v)
    np.testing.assert_allclose(out, want.reshape(2, -1), atol=1e-6)


@pytest.mark.parametrize("separated", [pytest.param(False, marks=pytest.mark.slow), True])
def test_layer_equals_hopfield_with_its_lookup_patterns(separated):
    layer = HopfieldLayer(
        input_size=8, num_heads=2, quantity=6, lookup_weights_as_separated=separated
    )
    v, out = _run(layer, X)
    look = jnp.broadcast_to(v["params"]["lookup_weights"], (2, 6, 8))
    tgt = jnp.broadcast_to(v["params"]["target_weights"], (2, 6, 8)) if separated else look
    _, want = _run(Hopfield(input_size=8, num_heads=2), (look, X, tgt), variables=v)
    np.testing.assert_allclose(out, want, atol=1e-6)
    assert ("target_weights" in v["params"]) == separated


def test_bad_pooling_configuration_and_mismatched_inputs():
    with pytest.raises(ValueError, match="quantity"):
        HopfieldPooling(input_size=8, quantity=0)
    model = Hopfield(input_size=8, stored_pattern_size=6)
    with pytest.raises(ValueError, match="stored_pattern_size"):
        model.init(jax.random.key(0), (X, X, X))
    with pytest.raises(ValueError, match="input_size"):
        Hopfield(input_size=8).init(jax.random.key(0), _rand(0, 2, 5, 7))
    with pytest.raises(ValueError, match="stored_pattern_mask"):
        Hopfield(input_size=8).init(jax.random.key(0), X, jnp.ones((2, 4), bool))
