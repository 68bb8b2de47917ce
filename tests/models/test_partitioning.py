"""Logical axis rules, activation constraints, and the layer stack's remat and scan."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from outeffhop import models
from outeffhop.models import blocks
from outeffhop.models import partitioning as pt
from outeffhop.train import sharding


def _specs(rules, names):
    return nn.logical_to_mesh_axes(names, rules)


def test_rules_split_megatron_style_and_keep_batch_on_data():
    tp = pt.logical_axis_rules("fsdp", "data", "model")
    assert _specs(tp, ("embed", "joined_kv")) == P("data", "model")  # q/k/v: column parallel
    assert _specs(tp, ("joined_kv", "embed")) == P("model", "data")  # out_proj: row parallel
    assert _specs(tp, ("embed", "mlp")) == P("data", "model")  # ffn_in
    assert _specs(tp, ("mlp", "embed")) == P("model", "data")  # ffn_out
    assert _specs(tp, ("vocab", "embed")) == P("model", "data")
    assert _specs(tp, pt.HEADS) == P("data", None, "model", None)
    assert _specs(tp, pt.RESIDUAL) == P("data", "model", None)  # sequence parallel
    assert _specs(tp, pt.LOGITS) == P("data", None, "model")
    dp = pt.logical_axis_rules("dp")
    assert _specs(dp, ("embed", "mlp")) == P(None, None)
    assert _specs(dp, pt.RESIDUAL) == P("data", None, None)
    assert _specs(pt.logical_axis_rules("fsdp"), ("mlp", "embed")) == P(None, "data")
    assert _specs(pt.logical_axis_rules("fsdp"), pt.HEADS) == P("data", None, None, None)
    with pytest.raises(ValueError, match="parallelism must be one of dp, fsdp"):
        pt.logical_axis_rules("tp")


def test_constrain_is_the_identity_outside_and_shards_inside_the_context():
    x = jnp.arange(8 * 4 * 6, dtype=jnp.float32).reshape(8, 4, 6)
    assert pt.constrain(x, pt.RESIDUAL) is x
    mesh = sharding.make_mesh(data=4, model=2)
    rules = pt.logical_axis_rules("fsdp", "data", "model")

    def f(x):
        with pt.activation_sharding(mesh, rules):
            return pt.constrain(x * 2, pt.RESIDUAL), pt.constrain(x[:3], pt.RESIDUAL)

    y, odd = jax.jit(f)(x)
    assert y.sharding.spec == P("data", "model")
    np.testing.assert_array_equal(y, 2 * x)
    assert odd.sharding.spec[0] is None  # 3 rows do not split over 4 devices: left whole


def _opt(**overrides):
    cfg = models.get_config("opt-tiny", num_layers=2, vocab_size=64, max_len=8, **overrides)
    return cfg, models.build_model(cfg)


def _inputs():
    ids = jax.random.randint(jax.random.key(1), (2, 8), 0, 64)
    return {"input_ids": ids, "attention_mask": jnp.ones_like(ids).at[1, 6:].set(0)}


def _loss_and_grads(model, params, inputs):
    def loss(p):
        return jnp.sum(jnp.sin(model.apply({"params": p}, **inputs)))

    return jax.jit(jax.value_and_grad(loss))(params)


def test_scanned_layers_equal_the_loop_with_stacked_params():
    cfg, model = _opt()
    inputs = _inputs()
    params = nn.meta.unbox(model.init(jax.random.key(0), **inputs)["params"])
    _, scanned = _opt(scan_layers=True)
    stacked = blocks.stack_layers(params, cfg.num_layers)
    abstract = jax.eval_shape(lambda: scanned.init(jax.random.key(0), **inputs)["params"])
    assert jax.tree.map(jnp.shape, nn.meta.unbox(abstract)) == jax.tree.map(jnp.shape, stacked)
    (a, ga), (b, gb) = (
        _loss_and_grads(model, params, inputs),
        _loss_and_grads(scanned, stacked, inputs),
    )
    np.testing.assert_allclose(a, b, rtol=1e-5)
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6),
        blocks.stack_layers(ga, cfg.num_layers),
        gb,
    )
    back = blocks.unstack_layers(stacked)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    # the stacked axis is the logical "layers" axis (replicated by the rules)
    spec = nn.get_partition_spec(abstract)["layers"]["ffn_in"]["kernel"]
    assert spec == P("layers", "embed", "mlp")


@pytest.mark.parametrize("remat", ["block", "dots_saveable"])
def test_remat_keeps_values_and_gradients(remat):
    _, model = _opt()
    _, remodel = _opt(remat=remat)
    inputs = _inputs()
    params = model.init(jax.random.key(0), **inputs)["params"]
    (a, ga), (b, gb) = (
        _loss_and_grads(model, params, inputs),
        _loss_and_grads(remodel, params, inputs),
    )
    np.testing.assert_allclose(a, b, rtol=1e-6)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5), ga, gb)


def test_remat_and_dropout_in_training_match_the_plain_layers():
    cfg = dict(hidden_dropout=0.2, attention_dropout=0.1)
    _, model = _opt(**cfg)
    _, remodel = _opt(remat="block", **cfg)
    inputs = _inputs()
    params = model.init(jax.random.key(0), **inputs)["params"]
    run = lambda m: jax.jit(  # noqa: E731
        lambda p: m.apply(
            {"params": p}, **inputs, deterministic=False, rngs={"dropout": jax.random.key(5)}
        )
    )(params)
    np.testing.assert_allclose(run(model), run(remodel), rtol=1e-6)


def test_scan_refuses_outlier_capture_and_a_bad_remat_fails():
    _, scanned = _opt(scan_layers=True)
    inputs = _inputs()
    params = scanned.init(jax.random.key(0), **inputs)["params"]
    with pytest.raises(ValueError, match="scan_layers=True does not support capture"):
        scanned.apply({"params": params}, **inputs, capture_intermediates=True)
    with pytest.raises(ValueError, match="remat must be one of none, block"):
        _opt(remat="save_everything")
