"""The outlier capture and quantizer sites on the study's real models (tiny presets)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop import models, outliers, quant

LAYERS = 2


def build(preset, gate="none"):
    cfg = models.get_config(preset, num_layers=LAYERS)
    cfg.attention.gate = gate
    model = models.build_model(cfg)
    inputs = models.dummy_inputs(cfg, batch_size=2, seq_len=8) if cfg.model != "vit" else None
    inputs = inputs or models.dummy_inputs(cfg, batch_size=2)
    key = jax.random.key(0)
    if "input_ids" in inputs:
        ids = jax.random.randint(key, inputs["input_ids"].shape, 0, cfg.vocab_size)
        inputs = {**inputs, "input_ids": ids}
    else:
        inputs = {"images": jax.random.normal(key, inputs["images"].shape)}
    init = jax.jit(lambda k, x: model.init(k, **x, deterministic=True))
    variables = init(jax.random.key(1), inputs)
    return cfg, model, variables, inputs


EXPECTED = {
    "bert": {f"layer_{i}/{m}" for i in range(LAYERS) for m in ("ffn_out", "output_ln")},
    "opt": {
        f"layer_{i}{m}"
        for i in range(LAYERS)
        for m in ("", "/ffn_out", "/attention/out_proj", "/attention_ln", "/ffn_ln")
    }
    | {"final_ln"},
    "vit": {
        f"layer_{i}{m}"
        for i in range(LAYERS)
        for m in ("", "/ffn_in", "/ffn_out", "/attention/out_proj", "/attention_ln", "/ffn_ln")
    }
    | {"final_ln", "patch_embedding"},
}


@pytest.mark.parametrize("family", ["bert", "opt", "vit"])
def test_module_sets_match_models(family):
    assert outliers.module_set(family) == models.OUTLIER_MODULES[family]


# Each tiny model costs ~3-5 s of CPU to build and run once: OPT and ViT run with -m slow.
@pytest.mark.parametrize(
    "family",
    [
        "bert",
        pytest.param("opt", marks=pytest.mark.slow),
        pytest.param("vit", marks=pytest.mark.slow),
    ],
)
def test_capture_finds_paper_modules(family):
    cfg, model, variables, inputs = build(f"{family}-tiny")
    out, found = outliers.capture(model, variables, patterns=family, deterministic=True, **inputs)
    assert set(found) == EXPECTED[family]
    np.testing.assert_allclose(out, model.apply(variables, **inputs, deterministic=True), 1e-5)
    layers = outliers.layer_curves({k: {"kurtosis": 0.0, "inf_norm": 0.0} for k in found})
    assert layers["layer_*/ffn_out"]["layer"] == list(range(LAYERS))


@pytest.mark.slow  # the same property is checked by default on a small Dense net (test_quant)
def test_bert_quantized_16_close_8_differs():
    cfg, model, variables, inputs = build("bert-tiny", gate="conditional_per_token")

    def forward(v, batch):
        return {"logits": model.apply(v, **batch, deterministic=True)}

    fp = forward(variables, inputs)["logits"]
    errs, sites = {}, None
    for bits in (16, 8):
        qc = quant.QuantConfig(weight_bits=bits, act_bits=bits, estimator="global_minmax")
        ranges = quant.calibrate(forward, variables, [inputs], qc)
        sites = set(ranges)
        out = jax.jit(quant.quantized(forward, ranges, qc))(variables, inputs)["logits"]
        errs[bits] = float(jnp.max(jnp.abs(out - fp)))
    for s in (
        "layer_0/attention/out_proj",
        "layer_1/ffn_out",
        "layer_0/output_ln",
        "embeddings_ln",
    ):
        assert f"{s}:__call__:in0" in sites  # context, FFN, residual sum, embedding sum
    scale = float(jnp.max(jnp.abs(fp)))
    assert errs[16] < 1e-3 * scale and errs[8] > 10 * errs[16]
