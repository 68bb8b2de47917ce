"""Tests for outeffhop.models: every model x normalizer x gate, causality, equivalences."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from outeffhop import models
from outeffhop.models.presets import TRANSFORMERS
from outeffhop.nn import attention as ab

TINY = {"bert": "bert-tiny", "opt": "opt-tiny", "vit": "vit-tiny"}


def tiny(model, layers=1, **attention):
    # Shared shapes mean fewer eager-op compilations: ViT with patch 4 on 8x8 images has 5
    # tokens (the text length below), d_ff = d_model, and the vocabulary has max_len rows.
    sizes = {"patch_size": 4} if model == "vit" else {"vocab_size": 64}
    cfg = models.get_config(TINY[model], num_layers=layers, d_ff=32, **sizes)
    cfg.attention.update(attention)
    return cfg


def inputs(cfg, seed=0, batch=2, length=5):
    key = jax.random.key(seed)
    if cfg.model == "vit":
        s, c = cfg.image_size, cfg.num_channels
        return {"images": jax.random.normal(key, (batch, s, s, c))}
    ids = jax.random.randint(key, (batch, length), 1, cfg.vocab_size)
    return {"input_ids": ids, "attention_mask": jnp.ones_like(ids).at[0, -2:].set(0)}


def init(cfg, inp, seed=0):
    model = models.build_model(cfg)
    return model, model.init(jax.random.key(seed), **inp)


def fake_init(cfg, inp, seed=0):
    """(model, params) with params of init's shapes drawn by numpy: no XLA compilation.

    Tracing init (jax.eval_shape) still checks every parameter's shape.
    """
    model = models.build_model(cfg)
    abstract = nn.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), **inp)))
    rng = np.random.default_rng(seed)

    def draw(path, a):
        base = 1.0 if path[-1].key == "scale" else 0.0
        return jnp.asarray(base + rng.normal(0.0, 0.1, a.shape), a.dtype)

    return model, jax.tree_util.tree_map_with_path(draw, abstract)["params"]


@pytest.mark.parametrize("gate", models.GATES)
@pytest.mark.parametrize("normalizer", models.NORMALIZERS)
@pytest.mark.parametrize("model", TRANSFORMERS)
def test_forward_every_model_normalizer_gate(model, normalizer, gate):
    cfg = tiny(model, normalizer=normalizer, gate=gate, gate_mlp=gate == "conditional_per_head")
    inp = inputs(cfg)
    m, params = fake_init(cfg, inp)
    out = m.apply({"params": params}, **inp, deterministic=True)
    if model == "vit":
        assert out.shape == (2, cfg.num_classes)
    else:
        assert out.shape == (2, 5, cfg.vocab_size)
    assert bool(jnp.all(jnp.isfinite(out)))
    attention = params["layer_0"]["attention"]
    assert ("sink" in attention) == (normalizer == "sink")
    assert ("gate" in attention) == (gate != "none")


@pytest.mark.parametrize(
    "normalizer, gate, implementation",
    [(n, "none", None) for n in models.NORMALIZERS]
    + [("softmax1", "none", "fused"), ("sink", "none", "fused")]
    + [("softmax", "conditional_per_head", None)],
)
def test_opt_is_causal(normalizer, gate, implementation):
    """d logits[:, t] / d position_embeddings[s] vanishes exactly for s > t, not for s <= t."""
    cfg = tiny("opt", normalizer=normalizer, gate=gate, implementation=implementation)
    inp = inputs(cfg, batch=1)
    inp["attention_mask"] = None
    m, params = fake_init(cfg, inp)
    t = 2

    def out_t(pos_table):
        p = {**params, "position_embeddings": {"embedding": pos_table}}
        return jnp.sum(m.apply({"params": p}, **inp)[:, t] ** 2)

    g = jax.jit(jax.grad(out_t))(params["position_embeddings"]["embedding"])
    row_norm = jnp.abs(g).sum(-1)
    np.testing.assert_array_equal(row_norm[t + 1 :], 0.0)
    assert bool(jnp.all(row_norm[: t + 1] > 0))


def test_opt_segments_do_not_attend_across_documents():
    cfg = tiny("opt", layers=2, normalizer="softmax1", gate="conditional_per_head")
    inp = inputs(cfg, batch=1)
    inp["segment_ids"] = jnp.array([[1, 1, 2, 2, 2]])
    m, params = fake_init(cfg, inp)

    def out_3(pos_table):
        p = {**params, "position_embeddings": {"embedding": pos_table}}
        return jnp.sum(m.apply({"params": p}, **inp)[:, 3] ** 2)

    row_norm = jnp.abs(jax.jit(jax.grad(out_3))(params["position_embeddings"]["embedding"]))
    row_norm = row_norm.sum(-1)
    np.testing.assert_array_equal(row_norm[:2], 0.0)
    np.testing.assert_array_equal(row_norm[4:], 0.0)
    assert bool(jnp.all(row_norm[2:4] > 0))


@pytest.mark.parametrize("mlp", [False, True])
@pytest.mark.parametrize("gate", models.GATES[1:])
def test_gate_at_init_equals_gate_init(gate, mlp):
    cfg = tiny("bert", gate=gate, gate_mlp=mlp, gate_init=0.25)
    inp = inputs(cfg)
    m, variables = init(cfg, inp)
    flt = models.capture_filter("bert", (r"layer_\d+/attention/gate",))
    _, state = m.apply(variables, **inp, capture_intermediates=flt, mutable=["intermediates"])
    (values,) = state["intermediates"]["layer_0"]["attention"]["gate"]["__call__"]
    if gate == "unconditional_per_head":
        np.testing.assert_allclose(values, 0.25, rtol=1e-6)
    else:  # conditional: bias = logit(gate_init) exactly, small kernels move the gate slightly
        bias = nn.unbox(variables)["params"]["layer_0"]["attention"]["gate"]["bias"]
        np.testing.assert_allclose(bias, np.log(0.25 / 0.75), rtol=1e-6)
        np.testing.assert_allclose(values, 0.25, atol=0.03)
        gate_mod = ab.HeadGate(cfg.num_heads, gate, mlp, 0.25)
        zero = jnp.zeros((1, 3, cfg.d_model))
        g0 = gate_mod.apply(gate_mod.init(jax.random.key(1), zero), zero)
        np.testing.assert_allclose(g0, 0.25, rtol=1e-6)


def test_softmax1_model_equals_softmax_model_with_a_zero_key():
    """OPT-softmax1(x) == OPT-softmax([z, x])[1:] where token z yields zero keys and values.

    With zero position embeddings, zero biases (as at init) and a zero embedding for z,
    every LayerNorm maps z's residual to 0, so z contributes a zero key and a zero value in
    every layer and its residual stream never changes.
    """
    cfg1 = tiny("opt", layers=2, normalizer="softmax1")
    inp = inputs(cfg1, batch=2)
    inp["attention_mask"] = None
    m1, variables = init(cfg1, inp)
    params = nn.unbox(variables)["params"]
    params["position_embeddings"]["embedding"] = jnp.zeros_like(
        params["position_embeddings"]["embedding"]
    )
    params["word_embeddings"]["embedding"] = params["word_embeddings"]["embedding"].at[0].set(0.0)
    m0 = models.build_model(tiny("opt", layers=2, normalizer="softmax"))
    x = inp["input_ids"]
    prefixed = jnp.concatenate([jnp.zeros_like(x[:, :1]), x], axis=1)
    out1 = m1.apply({"params": params}, x)
    out0 = m0.apply({"params": params}, prefixed)[:, 1:]
    np.testing.assert_allclose(out1, out0, atol=2e-5, rtol=2e-5)
    assert not np.allclose(out1, m0.apply({"params": params}, x), atol=1e-3)


@pytest.mark.parametrize("model", TRANSFORMERS)
def test_sink_at_zero_equals_softmax1_on_fused_and_reference_paths(model):
    cfg_sink = tiny(model, layers=2, normalizer="sink")
    inp = inputs(cfg_sink)
    m_sink, params = fake_init(cfg_sink, inp)
    for i in range(2):
        params[f"layer_{i}"]["attention"]["sink"] = jnp.zeros(cfg_sink.num_heads)
    no_sink = jax.tree_util.tree_map(lambda x: x, params)
    for i in range(2):
        del no_sink[f"layer_{i}"]["attention"]["sink"]
    out = m_sink.apply({"params": params}, **inp)
    for normalizer, implementation, p in [
        ("sink", "fused", params),
        ("softmax1", "fused", no_sink),
        ("softmax1", "reference", no_sink),
    ]:
        cfg = tiny(model, layers=2, normalizer=normalizer, implementation=implementation)
        other = models.build_model(cfg).apply({"params": p}, **inp)
        np.testing.assert_allclose(out, other, atol=1e-5)


def test_dropout_changes_train_output_only():
    cfg = tiny("bert", normalizer="softmax1")
    cfg.hidden_dropout, cfg.attention_dropout = 0.1, 0.1
    inp = inputs(cfg)
    m, variables = init(cfg, inp)
    det = m.apply(variables, **inp, deterministic=True)
    rng = {"dropout": jax.random.key(5)}
    a = m.apply(variables, **inp, deterministic=False, rngs=rng)
    b = m.apply(variables, **inp, deterministic=False, rngs=rng)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, det, atol=1e-4)


def test_bf16_compute_keeps_fp32_params():
    cfg = tiny("opt", normalizer="softmax1", gate="conditional_per_token")
    cfg.dtype = "bfloat16"
    inp = inputs(cfg)
    m, variables = init(cfg, inp)
    out = m.apply(variables, **inp)
    assert out.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(out)))
    assert {x.dtype for x in jax.tree.leaves(nn.unbox(variables))} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("parallelism", ["dp", "fsdp"])
def test_parameters_carry_logical_axes_and_shard(parallelism):
    cfg = tiny("bert", gate="conditional_per_head", gate_mlp=True, normalizer="sink")
    inp = inputs(cfg)
    abstract = jax.eval_shape(lambda: models.build_model(cfg).init(jax.random.key(0), **inp))
    leaves = jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    specs = flatten_dict(nn.get_partition_spec(abstract)["params"])
    for spec in specs.values():
        names = [n for n in spec if n is not None]
        assert set(names) <= set(models.LOGICAL_AXES) and names.count("embed") <= 1
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("data",))
    rules = models.logical_axis_rules(parallelism)
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
    params = nn.unbox(init(cfg, inp)[1])
    sharded = flatten_dict(jax.device_put(params, shardings)["params"])
    for path, x in sharded.items():
        spec = specs[path]
        shard = x.addressable_shards[0].data.shape
        expected = tuple(
            n // 8 if (parallelism == "fsdp" and name == "embed") else n
            for n, name in zip(x.shape, spec, strict=True)
        )
        assert shard == expected, path


def test_capture_filter_selects_paper_module_sets():
    cfg = tiny("opt", layers=2)
    inp = inputs(cfg)
    m, variables = init(cfg, inp)
    flt = models.capture_filter("opt")
    _, state = m.apply(variables, **inp, capture_intermediates=flt, mutable=["intermediates"])
    paths = {"/".join(p[:-1]) for p in flatten_dict(state["intermediates"])}
    per_layer = {"", "/ffn_out", "/attention/out_proj", "/attention_ln", "/ffn_ln"}
    assert paths == {f"layer_{i}{s}" for i in range(2) for s in per_layer} | {"final_ln"}


def _nll(logits, targets):
    logits = np.asarray(logits, np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, np.maximum(targets, 0)[..., None], -1)[..., 0]


def test_losses_match_direct_formula():
    logits = np.random.default_rng(0).normal(size=(2, 4, 7)).astype(np.float32)
    labels = np.array([[3, -100, 1, -100], [-100, -100, 6, 0]])
    loss, metrics = models.masked_lm_loss(logits, {"labels": labels})
    np.testing.assert_allclose(loss, _nll(logits, labels)[labels >= 0].mean(), rtol=1e-5)
    assert metrics["num_tokens"] == 4
    ids = np.array([[1, 2, 3, 4], [5, 6, 0, 0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    shifted = np.where(mask[:, 1:] > 0, ids[:, 1:], -100)
    shifted = np.concatenate([shifted, np.full((2, 1), -100)], 1)
    a, _ = models.causal_lm_loss(logits, {"input_ids": ids, "attention_mask": mask})
    b, _ = models.causal_lm_loss(logits, {"input_ids": ids, "labels": shifted})
    direct = _nll(logits[:, :-1], ids[:, 1:])[mask[:, 1:] > 0].mean()
    np.testing.assert_allclose(a, direct, rtol=1e-5)
    np.testing.assert_allclose(b, direct, rtol=1e-5)
    batch = {"label": np.array([1, 2]), "weight": np.array([1.0, 0.0])}
    c, m = models.classification_loss(logits[:, 0], batch)
    np.testing.assert_allclose(c, _nll(logits[:1, 0], np.array([1]))[0], rtol=1e-5)
    assert m["num_tokens"] == 1


def test_model_inputs_picks_batch_keys():
    batch = {"image": jnp.zeros((2, 8, 8, 1)), "label": jnp.zeros(2, int)}
    assert set(models.model_inputs(tiny("vit"), batch)) == {"images"}
    batch = {"input_ids": 1, "labels": 2, "attention_mask": 3, "segment_ids": 4}
    assert set(models.model_inputs(tiny("opt"), batch)) == {
        "input_ids",
        "attention_mask",
        "segment_ids",
    }
    assert set(models.model_inputs(tiny("bert"), batch)) == {"input_ids", "attention_mask"}


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: models.get_config("bert-huge"), "preset"),
        (lambda: models.get_config("bert-tiny", d_modle=3), "d_modle"),
        (lambda: models.build_model(tiny("bert", normalizer="sparsemax")), "normalizer"),
        (lambda: models.build_model(tiny("opt", gate="per_layer")), "gate"),
        (lambda: models.build_model(tiny("opt", gate_init=1.0)), "gate_init"),
        (
            lambda: models.build_model(tiny("vit", implementation="fused", normalizer="clipped")),
            "implementation",
        ),
        (lambda: models.build_model(models.get_config("vit-tiny", patch_size=3)), "patch_size"),
        (lambda: models.build_model(models.get_config("opt-tiny", num_heads=5)), "num_heads"),
        (lambda: models.build_model(models.get_config("opt-tiny", dtype="int8")), "dtype"),
        (lambda: models.logical_axis_rules("tp"), "parallelism"),
        (lambda: models.capture_filter("gpt"), "model"),
    ],
)
def test_bad_config_raises(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    "model, bad, match",
    [
        ("bert", {"input_ids": jnp.ones((1, 65), jnp.int32)}, "max_len"),
        ("opt", {"input_ids": jnp.ones((1, 65), jnp.int32)}, "max_len"),
        ("opt", {"input_ids": jnp.ones((1, 4))}, "input_ids"),
        ("vit", {"images": jnp.ones((1, 16, 16, 1))}, "image_size"),
    ],
)
def test_bad_input_raises(model, bad, match):
    m = models.build_model(tiny(model))
    with pytest.raises(ValueError, match=match):  # raised while tracing: no compilation
        jax.eval_shape(lambda: m.init(jax.random.key(0), **bad))


def test_alpha_convention_and_dummy_inputs():
    cfg = tiny("opt", normalizer="clipped")
    assert ab.clip_range(cfg.attention, 64) == (cfg.attention.gamma, 1.0)
    cfg.attention.alpha = 12
    assert ab.clip_range(cfg.attention, 64) == (-12 / 64, 1.0)
    for model in TRANSFORMERS:
        cfg = models.get_config(TINY[model])
        shapes = {k: v.shape for k, v in models.dummy_inputs(cfg, batch_size=3).items()}
        expected = (
            {"images": (3, 8, 8, 1)}
            if model == "vit"
            else {
                "input_ids": (3, 64),
                "attention_mask": (3, 64),
            }
        )
        assert shapes == expected


def test_outlier_modules_come_from_each_model():
    from outeffhop.models import bert, stanhop

    assert models.outlier_modules("bert") == bert.OUTLIER_MODULES["paper"]
    assert models.outlier_modules("stanhop", "layers") == stanhop.OUTLIER_MODULES["layers"]
    with pytest.raises(ValueError, match="model must be one of"):
        models.outlier_modules("gpt")
    with pytest.raises(ValueError, match="module set of 'bert'"):
        models.outlier_modules("bert", "nope")
