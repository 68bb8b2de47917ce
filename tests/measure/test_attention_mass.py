"""Attention mass statistics and the attention-score / softmax-output quantizer sites."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop import models
from outeffhop.measure import attention_mass, quant
from outeffhop.ops import softmax as sm


def test_head_mass_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 2, 5, 5)).astype(np.float32)
    w = np.asarray(sm.softmax_1(jnp.asarray(logits), axis=-1))
    groups = {"g": rng.random((3, 5)) < 0.4}
    valid = rng.random((3, 5)) < 0.7
    got = jax.device_get(attention_mass.head_mass(w, groups, valid))
    q = valid.astype(np.float64)
    null = ((1 - w.sum(-1)) * q[:, None]).sum((0, 2))
    first = (w[..., 0] * q[:, None]).sum((0, 2))
    on_g = ((w * groups["g"][:, None, None, :]).sum(-1) * q[:, None]).sum((0, 2))
    np.testing.assert_allclose(got["null"], null, rtol=1e-5)
    np.testing.assert_allclose(got["first"], first, rtol=1e-5)
    np.testing.assert_allclose(got["g"], on_g, rtol=1e-5)
    assert got["queries"] == q.sum()
    # Softmax_1's null mass is 1 / (1 + sum exp): positive; softmax's is 0.
    np.testing.assert_allclose(
        null, ((1 / (1 + np.exp(logits).sum(-1))) * q[:, None]).sum((0, 2)), rtol=1e-4
    )
    soft = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
    assert np.abs(jax.device_get(attention_mass.head_mass(soft, {})["null"])).max() < 1e-5


def test_head_mass_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, H, T, S\]"):
        attention_mass.head_mass(jnp.ones((2, 3, 4)), {})
    with pytest.raises(ValueError, match="key group 'g'"):
        attention_mass.head_mass(jnp.ones((2, 1, 4, 4)), {"g": jnp.ones((2, 3), bool)})


def test_delimiter_table():
    tokens = ["hello", "##.", "Ġ(", "Ċ", "ĊĠĠ", "##ing", "[SEP]", ",", "Ġx", "->", "a1"]
    table = attention_mass.delimiter_table(tokens, special_ids=(6,))
    expect = [False, True, True, True, True, False, True, True, False, True, False]
    assert table.tolist() == expect


def _bert(implementation=None, normalizer="softmax"):
    cfg = models.get_config("bert-tiny", num_layers=2)
    cfg.attention.normalizer = normalizer
    cfg.attention.implementation = implementation
    model = models.build_model(cfg)
    ids = jax.random.randint(jax.random.key(0), (2, 8), 5, cfg.vocab_size)
    batch = {"input_ids": np.asarray(ids), "attention_mask": np.ones((2, 8), np.int32)}
    batch["attention_mask"][1, 6:] = 0
    variables = jax.jit(lambda k: model.init(k, **batch, deterministic=True))(jax.random.key(1))
    return model, variables, batch


def _inputs(b):
    return (), {**b, "deterministic": True}


@pytest.mark.slow
def test_attention_mass_on_bert():
    out = {}
    for norm in ("softmax", "softmax1"):
        model, variables, batch = _bert(normalizer=norm)
        table = np.zeros(10_000, bool)
        table[np.asarray(batch["input_ids"])[:, 2]] = True  # column 2 = "delimiters"
        out[norm] = attention_mass.attention_mass(
            model,
            variables,
            [batch],
            inputs_fn=_inputs,
            groups_fn=attention_mass.text_groups(table),
            valid_fn=lambda b: b["attention_mask"] > 0,
        )
    s, s1 = out["softmax"], out["softmax1"]
    assert list(s["per_layer"]) == ["layer_0/attention/weights", "layer_1/attention/weights"]
    assert abs(s["mean"]["null"]) < 1e-5 and s1["mean"]["null"] > 0.01
    for r in (s, s1):
        assert 0 < r["mean"]["first"] < 1 and 0 < r["mean"]["delimiters"] < 1
        assert r["max_head"]["delimiters"] >= r["mean"]["delimiters"]
    # 2 of the 14 valid keys hold a "delimiter" id (more if an id repeats in a row)
    assert r["base_rate"]["delimiters"] >= 2 / 14


def test_attention_mass_needs_explicit_weights():
    model, variables, batch = _bert(implementation="fused")
    with pytest.raises(ValueError, match="implementation='reference'"):
        attention_mass.attention_mass(
            model, variables, [batch], inputs_fn=_inputs, groups_fn=attention_mass.no_groups
        )


def test_quantizer_sites_reach_attention_scores_and_weights():
    model, variables, batch = _bert()

    def forward(v, b):
        logits = model.apply(v, **b, deterministic=True)
        return {"mean": jnp.mean(logits)}

    cfg = quant.QuantConfig(sites=quant.ATTENTION_SITES, weight_bits=None)
    ranges = quant.calibrate(forward, variables, [batch], cfg)
    assert sorted(ranges) == sorted(
        f"layer_{i}/attention/{p}:__call__:out0" for i in (0, 1) for p in ("scores", "weights")
    )
    lo, hi = ranges["layer_0/attention/weights:__call__:out0"]
    assert 0.0 <= lo < 0.05 and 0.05 < hi <= 1.0  # softmax outputs (masked keys get 0)
    full = quant.QuantConfig()
    assert set(ranges) <= set(quant.calibrate(forward, variables, [batch], full))
    fp = forward(variables, batch)["mean"]
    at2 = quant.quantized(forward, ranges, dataclasses.replace(cfg, act_bits=2))
    assert float(at2(variables, batch)["mean"]) != float(fp)  # 2-bit scores/weights change it
