"""HopfieldPooling and HopfieldLayer: learned patterns, equivalence to Hopfield, the folded read."""

from unittest import mock

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop.nn import hopfield_fold as fold
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


@pytest.mark.slow
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


FOLD_CASES = {
    "one_head_masked": dict(num_heads=1),
    "two_heads_softmax1": dict(num_heads=2, normalizer="softmax1"),
    "no_affine_no_bias": dict(num_heads=1, normalize_state_pattern_affine=False,
                              normalize_stored_pattern_affine=False, input_bias=False),
    "no_input_norms": dict(num_heads=2, normalize_state_pattern=False,
                           normalize_stored_pattern=False, normalize_pattern_projection=False),
}  # fmt: skip


_FAST_FOLDS = (("pooling", "two_heads_softmax1"),)  # the others: -m slow


@pytest.mark.parametrize(
    ("layer", "case"),
    [
        (layer, c) if (layer, c) in _FAST_FOLDS else pytest.param(layer, c, marks=pytest.mark.slow)
        for layer in ("lookup", "pooling")
        for c in FOLD_CASES
    ],
)
def test_folded_read_equals_the_plain_order_in_float64(layer, case):
    """HopfieldLayer / HopfieldPooling reassociate one step around their batch-shared
    patterns (nn.hopfield_fold); Hopfield on the broadcast patterns takes the plain order.
    Values and gradients agree in float64; and the fold is really taken."""
    with jax.enable_x64(True):
        f64 = jnp.float64
        kw = dict(input_size=8, normalizer="softmax", dtype=f64, param_dtype=f64)
        kw.update(FOLD_CASES[case])
        x = jax.random.normal(jax.random.key(3), (3, 5, 8), f64)
        mask = jnp.ones((3, 6 if layer == "lookup" else 5), bool).at[1, -2:].set(False)
        model = (HopfieldLayer(quantity=6, **kw) if layer == "lookup"
                 else HopfieldPooling(quantity=4, **kw))  # fmt: skip
        v = model.init(jax.random.key(0), x)
        v = jax.tree.map(lambda a: a + 0.5 * jax.random.normal(jax.random.key(1), a.shape, f64), v)
        name = "lookup_weights" if layer == "lookup" else "pooling_weights"
        pat = jnp.broadcast_to(v["params"][name], (3,) + v["params"][name].shape)
        inputs = (pat, x, pat) if layer == "lookup" else (x, pat, x)
        plain = Hopfield(**kw)

        def grad(m):
            def loss(v, args):
                out = m.apply(v, args, stored_pattern_mask=mask)
                return jnp.sum(jnp.sin(out.reshape(3, -1))), out

            return jax.jit(jax.value_and_grad(loss, has_aux=True))

        entry = "lookup_read" if layer == "lookup" else "pooling_ctx"
        with mock.patch.object(fold, entry, wraps=getattr(fold, entry)) as spy:
            (_, o1), g1 = grad(model)(v, x)
        assert spy.called  # the folded order was taken
        (_, o2), g2 = grad(plain)(v, inputs)
        np.testing.assert_allclose(o1.reshape(3, -1), o2.reshape(3, -1), rtol=0, atol=1e-12)
        shared = {k: a for k, a in g2["params"].items() if k != name}
        for a, b in zip(jax.tree.leaves({k: g1["params"][k] for k in shared}),
                        jax.tree.leaves(shared), strict=True):  # fmt: skip
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-11)


def test_fold_is_not_taken_while_interceptors_or_capture_observe_the_layer():
    """Quantizer sites and outlier capture must see out_proj's call: no fold under them."""
    model = HopfieldLayer(input_size=8, quantity=6)
    x = _rand(2, 3, 5, 8)
    v = model.init(jax.random.key(0), x)
    seen = []

    def record(next_fun, args, kwargs, context):
        seen.append(context.module.name)
        return next_fun(*args, **kwargs)

    run = jax.jit(lambda v, x: model.apply(v, x))
    with mock.patch.object(fold, "lookup_read", wraps=fold.lookup_read) as spy:
        want = run(v, x)
        assert spy.call_count == 1
        with flax.linen.intercept_methods(record):
            got = jax.jit(lambda v, x: model.apply(v, x))(v, x)
        _, state = jax.jit(
            lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"])
        )(v, x)
        assert spy.call_count == 1  # neither of the observed runs folded
    assert "out_proj" in seen and "out_proj" in state["intermediates"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
