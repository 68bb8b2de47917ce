"""Clipped softmax (gamma = -0.025) zeroes near-uniform attention at init on long rows."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop import models
from outeffhop.nn.attention import attention_config, uniform_clipped_from


def test_uniform_clipped_from():
    assert uniform_clipped_from(attention_config(normalizer="clipped"), 128) == 41
    assert uniform_clipped_from(attention_config(normalizer="softmax"), 128) is None
    assert uniform_clipped_from(attention_config(normalizer="clipped", gamma=0.0), 128) is None


@pytest.mark.parametrize(
    "length, dead", [pytest.param(16, False, marks=pytest.mark.slow), (64, True)]
)
def test_bert_clipped_attention_gets_no_gradient_at_init(length, dead):
    cfg = models.get_config("bert-tiny", num_layers=1)
    cfg.attention.normalizer = "clipped"  # gamma -0.025, zeta 1: dead from 41 keys
    model = models.build_model(cfg)
    ids = jax.random.randint(jax.random.key(0), (2, length), 5, cfg.vocab_size)
    # jitted: one compile each instead of hundreds of op-by-op ones (4x faster here)
    init = jax.jit(lambda k: model.init(k, input_ids=ids, deterministic=True))
    params = nn.meta.unbox(init(jax.random.key(1))["params"])

    def loss(p):
        return jnp.sum(model.apply({"params": p}, input_ids=ids, deterministic=True) ** 2)

    g = jax.jit(jax.grad(loss))(params)["layer_0"]["attention"]
    norms = [float(np.abs(np.asarray(g[m]["kernel"])).max()) for m in ("query", "key", "value")]
    if dead:
        assert norms == [0.0, 0.0, 0.0]
    else:
        assert min(norms) > 0


def test_trainer_config_check_warns_about_dead_clipping(caplog):
    from outeffhop.launch.configs import load_config
    from outeffhop.train import config_check

    cfg = load_config("bert:quick")  # seq_len 64
    cfg.model.attention.normalizer = "clipped"
    with caplog.at_level("WARNING"):
        config_check._warn_dead_clipping(cfg)
    assert "clips uniform attention to exactly 0 on rows with >= 41 keys" in caplog.text
    caplog.clear()
    cfg.model.attention.normalizer = "softmax1"
    config_check._warn_dead_clipping(cfg)
    assert caplog.text == ""


# ---------------------------------------------------------------- gates

from outeffhop.nn.attention import HeadGate, check_attention_config  # noqa: E402

B, T, H, DH = 2, 5, 2, 4
X = jax.random.normal(jax.random.key(7), (B, T, H * DH))


def _gate(**kw):
    gate = HeadGate(H, kw.pop("gate", "conditional_per_token"), **kw)
    v = nn.meta.unbox(gate.init(jax.random.key(0), X))
    v = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(1), a.shape), v)  # not ~0
    return v["params"], lambda visible=None: gate.apply(v, X, visible)


def test_mlp2_gate_is_dh_dh_1_relu_per_head():
    p, run = _gate(mlp2=True)
    assert p["kernel1"].shape == (H, DH, DH) and p["kernel2"].shape == (H, DH)
    xh = np.asarray(X).reshape(B, T, H, DH)
    hidden = np.maximum(np.einsum("blhd,hde->blhe", xh, p["kernel1"]) + p["bias1"], 0.0)
    want = 1 / (1 + np.exp(-(np.einsum("blhe,he->blh", hidden, p["kernel2"]) + p["bias"])))
    np.testing.assert_allclose(run(), want[..., None], rtol=1e-5)


def test_all_features_gate_is_one_linear_over_the_whole_token():
    p, run = _gate(all_features=True)
    assert p["kernel"].shape == (H * DH, H)
    want = 1 / (1 + np.exp(-(np.asarray(X) @ p["kernel"] + p["bias"])))
    np.testing.assert_allclose(run(), want[..., None], rtol=1e-5)


def test_fine_tuning_scales_conditional_gates_by_one_over_gate_init():
    p, plain = _gate(gate_init=0.25)
    tuned = HeadGate(H, "conditional_per_token", gate_init=0.25, fine_tuning=True)
    np.testing.assert_allclose(tuned.apply({"params": p}, X), 4.0 * plain(), rtol=1e-6)
    fresh = HeadGate(H, "conditional_per_token", gate_init=0.25, fine_tuning=True)
    g0 = fresh.apply(fresh.init(jax.random.key(0), X), X)  # N(0, 0.01) kernel: about 1 at init
    np.testing.assert_allclose(g0, 1.0, atol=0.05)
    _, uncond = _gate(gate="unconditional_per_head", gate_init=0.25, fine_tuning=True)
    assert float(jnp.max(uncond())) < 1.0  # the official scaling is for conditional gates


def test_conditional_per_head_pooling_visible_or_all_tokens():
    pad = jnp.asarray([[True] * T, [True] * 3 + [False] * 2])
    visible = jnp.broadcast_to(pad[:, None, :], (B, T, T))
    p, vis = _gate(gate="conditional_per_head")
    _, everything = _gate(gate="conditional_per_head", pooling="all")
    logits = np.einsum("blhd,hd->blh", np.asarray(X).reshape(B, T, H, DH), p["kernel"]) + p["bias"]

    def sig(a):
        return 1 / (1 + np.exp(-a))

    np.testing.assert_allclose(everything(visible)[:, 0, :, 0], sig(logits.mean(1)), rtol=1e-5)
    masked = (logits * np.asarray(pad)[..., None]).sum(1) / np.asarray(pad).sum(1)[:, None]
    np.testing.assert_allclose(vis(visible)[:, 0, :, 0], sig(masked), rtol=1e-5)
    np.testing.assert_allclose(
        vis(visible)[0], np.broadcast_to(everything(visible)[0], (T, H, 1)), rtol=1e-6
    )  # no pad
    assert not np.allclose(vis(visible)[1], everything(visible)[1])
    np.testing.assert_allclose(vis(None), everything(None), rtol=1e-6)  # no mask: the same


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(gate_mlp=True, gate_mlp2=True), "gate_mlp2 excludes attention.gate_mlp"),
        (dict(gate_linear_all_features=True, gate="conditional_per_head"), "per_token"),
        (dict(gate_pooling="padding"), "gate_pooling"),
    ],
)
def test_gate_config_errors_name_the_field(fields, message):
    cfg = attention_config(**{"gate": "conditional_per_token", **fields})
    with pytest.raises(ValueError, match=message):
        check_attention_config(cfg, head_dim=DH)


@pytest.mark.parametrize("net", ["gate_mlp2", "gate_linear_all_features"])
def test_models_build_with_the_new_gate_nets(net):
    cfg = models.get_config("opt-tiny", num_layers=1)
    cfg.attention.update(gate="conditional_per_token", **{net: True})
    model = models.build_model(cfg)
    ids = jnp.ones((2, 8), jnp.int32)
    v = model.init(jax.random.key(0), input_ids=ids)
    gate = v["params"]["layer_0"]["attention"]["gate"]
    assert ("kernel1" in gate) == (net == "gate_mlp2")
    assert model.apply(v, input_ids=ids).shape == (2, 8, cfg.vocab_size)
