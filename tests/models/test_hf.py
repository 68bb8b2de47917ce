"""models.hf: HF checkpoints in (logits equal transformers' in float32 and float64) and out.

The fixtures (tests/fixtures/hf_*, made by scripts/make_hf_fixtures.py with transformers)
hold random tiny checkpoints and HF's logits on a fixed batch; no torch is needed here.
"""

import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from outeffhop import models
from outeffhop.models import hf, opt, vit
from tests import ROOT

FAMILIES = ("bert", "opt", "vit")
TOL = {"float32": 1e-5, "float64": 1e-12}


def fixture(family):
    return os.path.join(ROOT, "tests", "fixtures", f"hf_{family}")


def expected(family):
    return dict(np.load(os.path.join(fixture(family), "expected.npz")))


def flat(params):
    return traverse_util.flatten_dict(params, sep="/")


def text_inputs(exp):
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: jnp.asarray(exp[k]) for k in keys if k in exp}


def jitted(cfg, **static):
    """model.apply under jit (one compilation instead of one per op)."""
    model = models.build_model(cfg)
    return jax.jit(lambda v, kw: model.apply(v, **kw, **static))


def our_logits(family, dtype):
    """{name: (ours, HF's)} logits of the imported fixture in ``dtype``."""
    cfg, variables = hf.from_hf(fixture(family), dtype=dtype, param_dtype=dtype)
    exp, suffix = expected(family), {"float32": "f32", "float64": "f64"}[dtype]
    if family != "vit":
        return {"logits": (jitted(cfg)(variables, text_inputs(exp)), exp[f"logits_{suffix}"])}
    out = {}
    for size in ("", "_12x12", "_12x8"):
        images = jnp.asarray(exp[f"pixel_values{size}"].transpose(0, 2, 3, 1), dtype)
        apply = jitted(cfg, interpolate_pos_encoding=bool(size))
        logits = apply(variables, {"images": images})
        out[f"logits{size}"] = (logits, exp[f"logits{size}_{suffix}"])
    return out


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_equal_transformers(family, dtype):
    # BERT: right padding and two token types, every position; OPT: left padding, the real
    # tokens; ViT: 8x8, and 12x12 / 12x8 with bicubic position interpolation.
    real = expected(family)["attention_mask"][..., None] > 0 if family == "opt" else True
    with jax.enable_x64(dtype == "float64"):
        for name, (ours, theirs) in our_logits(family, dtype).items():
            assert ours.dtype == dtype
            scale = max(1.0, float(np.max(np.abs(theirs))))
            err = float(np.max(np.abs(np.asarray(ours) - theirs) * real))
            assert err < TOL[dtype] * scale, (name, err)


def test_left_padded_rows_equal_unpadded_sequences():
    cfg, variables = hf.from_hf(fixture("opt"))
    apply = jitted(cfg)
    exp = expected("opt")
    mask = exp["attention_mask"]
    left = apply(variables, text_inputs(exp))
    # The same rows right-padded: causal attention makes each real token's logits those of
    # its unpadded sequence, and real tokens sit at positions 0..n-1 either way.
    order = np.argsort(mask == 0, axis=1, kind="stable")
    right = {k: jnp.asarray(np.take_along_axis(exp[k], order, 1)) for k in text_inputs(exp)}
    moved = np.asarray(apply(variables, right))
    arange = np.broadcast_to(np.arange(10), mask.shape)  # the old positions, 0..L-1
    old = apply(variables, {**text_inputs(exp), "position_ids": jnp.asarray(arange)})
    for row in (1, 2):
        real = mask[row] > 0
        alone = moved[row, : real.sum()]
        np.testing.assert_allclose(left[row, real], alone, atol=1e-5)
        assert np.max(np.abs(old[row, real] - alone)) > 1e-2
    positions = opt.positions_from_mask(jnp.asarray(mask))
    np.testing.assert_array_equal(positions[1], [0, 1, 2, 0, 1, 2, 3, 4, 5, 6])
    same = apply(variables, {**text_inputs(exp), "position_ids": positions})
    np.testing.assert_array_equal(same, left)


@pytest.mark.parametrize("family", FAMILIES)
def test_export_writes_the_same_state_dict_and_config(family, tmp_path):
    cfg, variables = hf.from_hf(fixture(family))
    hf.to_hf(cfg, variables, str(tmp_path))
    ours = load_file(str(tmp_path / "model.safetensors"))
    theirs = load_file(os.path.join(fixture(family), "model.safetensors"))
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == value.dtype and np.array_equal(ours[key], value), key
    exported = json.loads((tmp_path / "config.json").read_text())
    original = hf.read_config(fixture(family))
    for key, value in exported.items():
        assert original.get(key, "absent") == value, key
    _, again = hf.from_hf(str(tmp_path))
    a, b = flat(variables["params"]), flat(again["params"])
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_any_normalizer_on_import_and_export_guard(tmp_path):
    _, base = hf.from_hf(fixture("bert"))
    cfg1, v1 = hf.from_hf(fixture("bert"), normalizer="softmax1")
    assert cfg1.attention.normalizer == "softmax1"
    a, b = flat(base["params"]), flat(v1["params"])
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    exp = expected("bert")
    logits = jitted(cfg1)(v1, text_inputs(exp))
    assert np.max(np.abs(np.asarray(logits) - exp["logits_f32"])) > 1e-3  # another model
    with pytest.raises(ValueError, match="strict=False"):
        hf.to_hf(cfg1, v1, str(tmp_path / "strict"))
    hf.to_hf(cfg1, v1, str(tmp_path / "loose"), strict=False)
    saved = json.loads((tmp_path / "loose" / "config.json").read_text())
    assert saved["outeffhop_normalizer"] == "softmax1"
    gated, vg = hf.from_hf(fixture("opt"), attention=dict(gate="conditional_per_token"))
    g = flat(vg["params"])
    assert any("/attention/gate/" in k for k in g)
    _, vo = hf.from_hf(fixture("opt"))
    assert all(np.array_equal(g[k], v) for k, v in flat(vo["params"]).items())
    with pytest.raises(ValueError, match="gate / sink"):
        hf.to_hf(gated, vg, str(tmp_path / "gated"))


def copy_fixture(family, tmp_path, **config):
    folder = tmp_path / family
    shutil.copytree(fixture(family), folder)
    original = hf.read_config(str(folder))
    (folder / "config.json").write_text(json.dumps({**original, **config}))
    return str(folder)


@pytest.mark.parametrize(
    "family, config, match",
    [
        ("opt", dict(word_embed_proj_dim=16), "project_in"),
        ("opt", dict(do_layer_norm_before=False), "do_layer_norm_before"),
        ("bert", dict(position_embedding_type="relative_key"), "position_embedding_type"),
        ("bert", dict(hidden_act="silu"), "hidden_act must be one of"),
        ("vit", dict(qkv_bias=False), "qkv_bias"),
        ("vit", dict(model_type="deit"), "model_type must be one of"),
        ("bert", dict(num_hidden_layers=3), "no tensor 'bert.encoder.layer.2"),
        ("bert", dict(hidden_size=16, num_attention_heads=2), "has shape"),
    ],
)
def test_unsupported_configs_raise(family, config, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        hf.from_hf(copy_fixture(family, tmp_path, **config))


def test_unknown_or_untied_tensors_raise(tmp_path):
    folder = copy_fixture("bert", tmp_path)
    file = os.path.join(folder, "model.safetensors")
    weights = load_file(file)
    word = weights["bert.embeddings.word_embeddings.weight"]
    save_file({**weights, "cls.predictions.decoder.weight": word}, file)
    hf.from_hf(folder)  # a tied copy equal to the embeddings is fine
    save_file({**weights, "cls.predictions.decoder.weight": word + 1}, file)
    with pytest.raises(ValueError, match="only tied output layers"):
        hf.from_hf(folder)
    save_file({**weights, "bert.extra.weight": word}, file)
    with pytest.raises(ValueError, match="no parameter"):
        hf.from_hf(folder)
    save_file({**weights, "bert.pooler.dense.weight": word[:32]}, file)
    hf.from_hf(folder)  # heads the model has no use for are skipped
    with pytest.raises(ValueError, match="no config.json"):
        hf.from_hf(str(tmp_path))


def test_bfloat16_shards_and_legacy_names(tmp_path):
    folder = copy_fixture("bert", tmp_path)
    weights = load_file(os.path.join(folder, "model.safetensors"))
    os.remove(os.path.join(folder, "model.safetensors"))
    half = {
        re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", k): v.astype(ml_dtypes.bfloat16)
        for k, v in weights.items()
    }
    names = sorted(half)
    shards = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: half[k] for k in keys}, os.path.join(folder, file))
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    _, variables = hf.from_hf(folder)
    _, full = hf.from_hf(fixture("bert"))
    for key, value in flat(full["params"]).items():
        rounded = np.asarray(value).astype(ml_dtypes.bfloat16).astype(np.float32)
        np.testing.assert_array_equal(flat(variables["params"])[key], rounded)


def test_checkpoint_info():
    assert hf.checkpoint_info(fixture("opt")) == {
        "family": "opt",
        "vocab_size": 512,
        "special_token_ids": {"pad": 1, "bos": 2, "eos": 2},
    }
    assert hf.checkpoint_info(fixture("bert"))["special_token_ids"] == {"pad": 0}


def test_bicubic_matrix_and_image_checks():
    for n_in, n_out in ((4, 6), (6, 4), (4, 4), (3, 7)):
        m = vit.bicubic_matrix(n_in, n_out)
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-12)  # a partition of unity
        np.testing.assert_allclose(m[::-1, ::-1], m, atol=1e-12)  # mirror symmetric
    np.testing.assert_array_equal(vit.bicubic_matrix(5, 5), np.eye(5))
    cfg, variables = hf.from_hf(fixture("vit"))
    assert cfg.layer_norm_eps == 1e-12
    images = jnp.zeros((1, 12, 12, 3))
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        models.build_model(cfg).apply(variables, images)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        models.build_model(cfg).apply(variables, images[:, :11], interpolate_pos_encoding=True)


def test_float64_needs_x64():
    with pytest.raises(ValueError, match="jax_enable_x64"):
        models.build_model(models.get_config("bert-tiny", dtype="float64"))


@pytest.mark.parametrize(
    "preset, overrides",
    [("opt-tiny", dict(vocab_size=64)), ("bert-tiny", dict(vocab_size=64, type_vocab_size=0))],
)
def test_models_trained_here_export_and_import_unchanged(preset, overrides, tmp_path):
    # A project OPT has no rows before position 0 (HF has 2) and a BERT may have no token
    # types (HF needs a table): the export adds zero rows, the model stays the same.
    cfg = models.get_config(preset, **overrides)
    model = models.build_model(cfg)
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 64, (2, 8)))
    inputs = {"input_ids": ids, "attention_mask": jnp.ones_like(ids).at[1, 6:].set(0)}
    variables = jax.jit(lambda r: model.init(r, **inputs))(jax.random.key(0))
    before = jitted(cfg)(variables, inputs)
    hf.to_hf(cfg, variables, str(tmp_path))
    cfg2, v2 = hf.from_hf(str(tmp_path))
    after = jitted(cfg2)(v2, inputs)
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
