"""The evaluation protocol on the study's real models (tiny presets): capture, sites, evaluate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop import models
from outeffhop.measure import evaluate as evaluation
from outeffhop.measure import outliers, quant

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
    out, found = outliers.capture(
        model, variables, patterns=models.outlier_modules(family), deterministic=True, **inputs
    )
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


def test_evaluate_is_fp_then_outliers_then_calibrated_w8a8():
    cfg, model, variables, inputs = build("bert-tiny")
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(3):
        ids = rng.integers(5, cfg.vocab_size, (2, 8)).astype(np.int32)
        labels = np.where(rng.random((2, 8)) < 0.3, ids, -100).astype(np.int32)
        batches.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels})

    def forward(v, batch):
        logits = model.apply(v, input_ids=batch["input_ids"], deterministic=True)
        mean, m = models.loss_fn(cfg)(logits, batch)
        return {"loss": mean * m["num_tokens"], "n": m["num_tokens"]}

    def metric(sums):
        return {"loss": sums["loss"] / sums["n"]}

    def inputs_fn(b):
        return (), {"input_ids": b["input_ids"], "deterministic": True}

    sets = {"paper": models.outlier_modules("bert"), "ffn": models.outlier_modules("bert", "ffn")}
    recipes = {"W8A8": quant.QuantConfig(), "W16A16": quant.QuantConfig(16, 16)}
    row = evaluation.evaluate(
        model, variables, forward=forward, metric=metric, eval_batches=batches[1:2],
        calib_batches=batches[1:2], module_sets=sets, inputs_fn=inputs_fn, recipes=recipes,
    )  # fmt: skip
    direct = [forward(variables, b) for b in batches[1:2]]
    want = sum(float(d["loss"]) for d in direct) / sum(float(d["n"]) for d in direct)
    np.testing.assert_allclose(row["fp"]["loss"], want, rtol=1e-5)
    stats = outliers.outlier_stats(
        model, variables, batches[1:2], sets["paper"], inputs_fn=inputs_fn
    )
    assert row["avg_kurtosis"] == pytest.approx(stats["avg_kurtosis"], rel=1e-6)
    assert row["max_inf_norm"] == pytest.approx(stats["max_inf_norm"], rel=1e-6)
    assert row["outliers"]["ffn"]["num_modules"] == LAYERS
    assert row["w8a8"] is row["quantized"]["W8A8"]
    err8, err16 = (abs(row["quantized"][r]["loss"] - want) for r in ("W8A8", "W16A16"))
    assert err8 > 0 and err16 < 0.01 * err8  # the recipes really quantize; 16 bits is closer
    with pytest.raises(ValueError, match="headline"):
        evaluation.evaluate(
            model, variables, forward=forward, metric=metric, eval_batches=batches,
            calib_batches=batches, module_sets={"ffn": sets["ffn"]}, inputs_fn=inputs_fn,
        )  # fmt: skip
