"""Hopfield, HopfieldPooling, HopfieldLayer: equivalences, masks, options and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop import memory
from outeffhop.hopfield_layers import HopfieldLayer, HopfieldPooling
from outeffhop.layers import Hopfield


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


@pytest.mark.parametrize("steps", [0, 2])
def test_add_zero_association_equals_softmax1(steps):
    mask = jnp.array([[True] * 5, [True, True, True, False, False]])
    kw = dict(input_size=8, num_heads=2, update_steps_max=steps, update_steps_eps=1e-9)
    zero = Hopfield(normalizer="softmax", add_zero_association=True, **kw)
    one = Hopfield(normalizer="softmax1", **kw)
    v, (out_z, xi_z) = _run(zero, X, stored_pattern_mask=mask, return_association=True)
    _, (out_1, xi_1) = _run(one, X, variables=v, stored_pattern_mask=mask, return_association=True)
    assert xi_z.shape[-1] == 6 and xi_1.shape[-1] == 5
    np.testing.assert_allclose(xi_z[..., :5], xi_1, atol=1e-6)
    np.testing.assert_allclose(out_z, out_1, atol=1e-6)


def test_softmax1_retrieves_less_mass_than_softmax():
    _, (_, xi_s) = _run(
        Hopfield(input_size=8, num_heads=2, normalizer="softmax"), X, return_association=True
    )
    _, (_, xi_1) = _run(Hopfield(input_size=8, num_heads=2), X, return_association=True)
    np.testing.assert_allclose(xi_s.sum(-1), 1.0, atol=1e-5)
    assert float(xi_1.sum(-1).max()) < 1.0


def test_masked_stored_patterns_do_not_matter():
    mask = jnp.array([[True, True, False, True, False]] * 2)
    assoc = jnp.tril(jnp.ones((5, 5), bool))  # causal association mask [L, S]
    model = Hopfield(input_size=8, num_heads=2)
    stored2 = X.at[:, 2].set(100.0).at[:, 4].set(-3.0)  # change only masked patterns
    kw = dict(stored_pattern_mask=mask, association_mask=assoc, return_association=True)
    v, (out, xi) = _run(model, (X, X, X), **kw)
    _, (out2, _) = _run(model, (stored2, X, stored2), variables=v, **kw)
    np.testing.assert_allclose(out, out2, atol=1e-5)
    np.testing.assert_array_equal(xi[..., [2, 4]], 0.0)
    np.testing.assert_array_equal(xi * ~assoc, 0.0)


@pytest.mark.slow  # the parity case all_features covers time-first inputs in the default run
def test_time_first_equals_batch_first():
    kw = dict(input_size=8, num_heads=4, update_steps_max=1)
    v, out = _run(Hopfield(**kw), X)
    _, out_t = _run(Hopfield(batch_first=False, **kw), jnp.swapaxes(X, 0, 1), variables=v)
    np.testing.assert_allclose(jnp.swapaxes(out_t, 0, 1), out, atol=1e-6)


def test_per_head_scaling_is_per_head_beta():
    kw = dict(return_association=True)
    v, (_, xi) = _run(Hopfield(input_size=8, num_heads=2, scaling=(0.3, 3.0)), X, **kw)
    for h, beta in enumerate((0.3, 3.0)):
        _, (_, xi_h) = _run(Hopfield(input_size=8, num_heads=2, scaling=beta), X, variables=v, **kw)
        np.testing.assert_allclose(xi[:, h], xi_h[:, h], atol=1e-6)


def test_per_head_update_steps():
    kw = dict(return_association=True)
    both = Hopfield(input_size=8, num_heads=2, update_steps_max=(0, 3), update_steps_eps=1e-9)
    v, (_, xi) = _run(both, X, **kw)
    for h, steps in enumerate((0, 3)):
        one = Hopfield(input_size=8, num_heads=2, update_steps_max=steps, update_steps_eps=1e-9)
        _, (_, xi_h) = _run(one, X, variables=v, **kw)
        np.testing.assert_allclose(xi[:, h], xi_h[:, h], atol=1e-6)


def test_static_patterns_reduce_to_plain_retrieve():
    static = dict(
        stored_pattern_as_static=True, state_pattern_as_static=True,
        pattern_projection_as_static=True, disable_out_projection=True,
        normalize_stored_pattern=False, normalize_stored_pattern_affine=False,
        normalize_state_pattern=False, normalize_state_pattern_affine=False,
        normalize_pattern_projection=False, normalize_pattern_projection_affine=False,
    )  # fmt: skip
    model = Hopfield(num_heads=1, scaling=2.0, update_steps_max=3, **static)
    v, out = _run(model, X)
    assert v == {} or not jax.tree.leaves(v)  # no parameters at all
    want = memory.retrieve(X, X, beta=2.0, update_steps_max=3)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_gradients_finite_through_iterations_and_masks():
    model = Hopfield(input_size=8, num_heads=2, update_steps_max=2, normalize_hopfield_space=True)
    mask = jnp.array([[True] * 5, [False] * 5])  # second batch row: nothing to associate
    v = model.init(jax.random.key(0), X)
    loss = lambda v: jnp.sum(model.apply(v, X, stored_pattern_mask=mask) ** 2)  # noqa: E731
    g = jax.jit(jax.grad(loss))(v)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(g))
    assert float(jnp.abs(g["params"]["q_proj"]["kernel"]).sum()) > 0


def test_unbounded_iteration_converges():
    model = Hopfield(input_size=8, num_heads=2, update_steps_max=None, update_steps_eps=1e-6)
    _, (out, xi) = _run(model, X, return_association=True)
    assert bool(jnp.all(jnp.isfinite(out)))


def test_dropout_only_when_not_deterministic():
    model = Hopfield(input_size=8, num_heads=2, dropout=0.5)
    v, out = _run(model, X)
    _, same = _run(model, X, variables=v, deterministic=True)
    np.testing.assert_array_equal(out, same)
    drop = model.apply(v, X, deterministic=False, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(drop, out)


def test_clipped_normalizers_and_activation_and_sow():
    for norm in ("clipped", "clipped_softmax1"):
        model = Hopfield(
            input_size=8, num_heads=2, normalizer=norm, gamma=-0.1, zeta=1.0,
            association_activation="relu",
        )  # fmt: skip
        v, out = _run(model, X)
        assert float(out.min()) >= 0.0
        _, inter = model.apply(v, X, mutable=["intermediates"])
        assert inter["intermediates"]["association"][0].shape == (2, 2, 5, 5)


def test_concat_bias_pattern_adds_one_learned_pattern():
    model = Hopfield(input_size=8, num_heads=2, concat_bias_pattern=True)
    v, (out, xi) = _run(model, X, return_association=True)
    assert xi.shape[-1] == 6 and v["params"]["bias_k"].shape == (2, 1, 4)


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


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(input_size=10, num_heads=4), "num_heads"),
        (dict(input_size=8, update_steps_max=-1), "update_steps_max"),
        (dict(input_size=8, normalizer="sparsemax"), "normalizer"),
        (dict(input_size=8, normalizer="clipped"), "gamma"),
        (dict(input_size=8, num_heads=2, scaling=(1.0, 2.0, 3.0)), "scaling"),
        (dict(input_size=8, update_steps_eps=0.0), "update_steps_eps"),
        (dict(input_size=8, dropout=1.0), "dropout"),
        (dict(input_size=8, association_activation="nope"), "association_activation"),
        (dict(hidden_size=4), "input_size"),
        (dict(input_size=8, stored_pattern_size=6, pattern_projection_as_connected=True), "size"),
    ],
)
def test_bad_configuration_raises_at_construction(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Hopfield(**kwargs)


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
