"""The official evaluation protocol: weight grid, table / output sites, sequential calibration,
LayerNorm-input and per-token capture, kurtosis batch limit, and the models' official specs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop import models
from outeffhop.measure import outliers, protocols, quant


def official_weight_quant(w, bits=8):
    """The official symmetric quantizer, transcribed: signed iff min < 0, else 0..2^b - 1."""
    w = np.asarray(w, np.float64)
    lo, hi = min(w.min(), 0.0), max(w.max(), 1e-8)
    signed = lo < 0
    int_min, int_max = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    delta = max(abs(lo), hi) / int_max
    return np.clip(np.round(w / delta), int_min, int_max) * delta


@pytest.mark.parametrize("shift", [0.0, 1.5])  # signed weights; a LayerNorm-like scale > 0
def test_weight_grid_matches_the_official_quantizer(shift):
    w = np.asarray(jax.random.normal(jax.random.key(0), (64,)), np.float32) * 0.3 + shift
    assert (w.min() > 0) == (shift > 0)
    got = quant.fake_quantize_weight(w, w.min(), w.max(), unsigned_nonnegative=True)
    np.testing.assert_allclose(got, official_weight_quant(w), rtol=1e-6, atol=1e-7)  # float32
    plain = quant.fake_quantize_weight(w, w.min(), w.max())  # ours: always signed
    if shift > 0:
        assert len(np.unique(np.asarray(got))) > len(np.unique(np.asarray(plain)))


class Lookup(nn.Module):
    @nn.compact
    def __call__(self, ids):
        table = nn.Embed(50, 8, name="table")
        x = nn.Dense(8, name="fc")(table(ids))
        return table.attend(x)


def test_table_site_quantizes_lookups_like_the_table_and_leaves_attend_alone():
    net, ids = Lookup(), jnp.arange(10)[None]
    v = net.init(jax.random.key(0), ids)
    site = quant.Site(module_type="Embed", path="table", where="table")
    cfg = quant.QuantConfig(act_bits=None, weight_names=("kernel",), sites=(site,))

    def forward(v, ids):
        return {"out": net.apply(v, ids)}

    got = quant.quantized(forward, None, cfg)(v, ids)["out"]
    table = v["params"]["table"]["embedding"]
    q_table = quant.fake_quantize_weight(table, table.min(), table.max())
    kernel = quant.quantize_weights(v["params"], names=("kernel",))["fc"]["kernel"]
    x = q_table[ids] @ kernel + v["params"]["fc"]["bias"]
    np.testing.assert_allclose(got, x @ table.T, rtol=1e-5, atol=1e-6)  # attend: float table


class Chain(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(4, name="b")(nn.relu(nn.Dense(6, name="a")(x)))


def test_sequential_calibration_sees_quantized_upstream_values():
    """Batch t: a's range folds in a's batch-t range; b's statistics see a's output
    quantized with that range; EMA 0.9 across batches (the official range estimation)."""
    net = Chain()
    batches = [jax.random.normal(jax.random.key(i), (3, 5)) * (1 + i) for i in range(3)]
    v = net.init(jax.random.key(9), batches[0])
    site = quant.Site(module_type="Dense", where="output")
    cfg = quant.QuantConfig(weight_bits=None, sites=(site,), sequential_calibration=True)

    def forward(v, x):
        return {"out": net.apply(v, x)}

    got = quant.calibrate(forward, v, batches, cfg)
    p = jax.tree.map(np.asarray, v["params"])
    state = {}
    for x in batches:
        h = np.asarray(x) @ p["a"]["kernel"] + p["a"]["bias"]
        for name in ("a", "b"):
            if name == "b":
                h = np.maximum(h, 0) @ p["b"]["kernel"] + p["b"]["bias"]
            cur = np.array([h.min(), h.max()])
            state[name] = cur if name not in state else 0.9 * state[name] + 0.1 * cur
            h = np.asarray(quant.fake_quantize(h, *state[name]))
    for name in ("a", "b"):
        np.testing.assert_allclose(got[f"{name}:__call__:out0"], state[name], rtol=1e-5)
    plain = quant.calibrate(forward, v, batches, quant.QuantConfig(weight_bits=None, sites=(site,)))
    np.testing.assert_allclose(plain["a:__call__:out0"], got["a:__call__:out0"], rtol=1e-6)
    assert not np.allclose(plain["b:__call__:out0"], got["b:__call__:out0"], rtol=1e-7)


def _tiny(family):
    cfg = models.get_config(f"{family}-tiny", num_layers=2)
    model = models.build_model(cfg)
    ids = jax.random.randint(jax.random.key(0), (2, 8), 5, cfg.vocab_size)
    inputs = {"input_ids": ids, "attention_mask": jnp.ones_like(ids)}
    v = jax.jit(lambda k: model.init(k, **inputs, deterministic=True))(jax.random.key(1))
    params = nn.meta.unbox(v["params"])  # LayerNorm scales off 1, biases off 0
    params = jax.tree.map(
        lambda a: a + 0.05 * jax.random.normal(jax.random.key(2), a.shape), params
    )
    return cfg, model, {"params": params}, inputs


OFFICIAL_SITES = {
    "bert": {"embeddings_ln:__call__:in0", "embeddings_ln:__call__:out0"}
    | {
        f"layer_{i}/{m}:__call__:{w}"
        for i in range(2)
        for m, w in [
            *[(f"attention/{n}", "out0") for n in ("query", "key", "value", "out_proj")],
            ("attention/out_proj", "in0"),
            ("attention/scores", "out0"),
            ("attention/weights", "out0"),
            ("attention_ln", "in0"),
            ("attention_ln", "out0"),
            ("ffn_out", "in0"),
            ("ffn_out", "out0"),
            ("output_ln", "in0"),
            ("output_ln", "out0"),
        ]
    },
    "opt": {"layer_0:__call__:in0", "final_ln:__call__:out0"}
    | {
        f"layer_{i}{m}:__call__:{w}"
        for i in range(2)
        for m, w in [
            *[(f"/attention/{n}", "out0") for n in ("query", "key", "value", "out_proj")],
            ("/attention/out_proj", "in0"),
            ("/attention/scores", "out0"),
            ("/attention/weights", "out0"),
            ("/attention_ln", "out0"),
            ("/ffn_ln", "in0"),
            ("/ffn_ln", "out0"),
            ("/ffn_out", "in0"),
            ("/ffn_out", "out0"),
            ("", "out0"),
        ]
    },
}


@pytest.mark.parametrize("family", ["bert", pytest.param("opt", marks=pytest.mark.slow)])
def test_official_sites_weights_and_float_head(family):
    cfg, model, v, inputs = _tiny(family)
    proto = protocols.get("official", models.official_protocol(family))
    assert proto.quant.sequential_calibration and proto.quant.weight_unsigned_nonnegative

    def forward(v, b):
        return {"logits": model.apply(v, **b, deterministic=True)}

    ranges = quant.calibrate(forward, v, [inputs], proto.quant)
    assert set(ranges) == OFFICIAL_SITES[family]
    q = quant._weights_quantized(v, proto.quant)["params"]
    p = v["params"]
    assert not np.array_equal(q["layer_0"]["ffn_out"]["kernel"], p["layer_0"]["ffn_out"]["kernel"])
    ln = "output_ln" if family == "bert" else "ffn_ln"
    assert not np.array_equal(q["layer_0"][ln]["scale"], p["layer_0"][ln]["scale"])
    # The tables stay float for the tied LM head; the lookups are quantized by table sites.
    assert np.array_equal(q["word_embeddings"]["embedding"], p["word_embeddings"]["embedding"])
    if family == "bert":
        for head in ("mlm_dense", "mlm_ln"):
            assert jax.tree.all(jax.tree.map(np.array_equal, q[head], p[head]))
    out = jax.jit(quant.quantized(forward, ranges, proto.quant))(v, inputs)["logits"]
    fp = jax.jit(forward)(v, inputs)["logits"]
    assert 0 < float(jnp.max(jnp.abs(out - fp))) < 0.2 * float(jnp.max(jnp.abs(fp)))


def test_layer_norm_input_and_token_rows_capture():
    cfg, model, v, inputs = _tiny("bert")
    patterns = (r"layer_1/output_ln:input", r"layer_1/output_ln", r"layer_1/ffn_out:tokens")
    _, found = outliers.capture(model, v, patterns=patterns, deterministic=True, **inputs)
    assert set(found) == {"layer_1/output_ln:input", "layer_1/output_ln", "layer_1/ffn_out:tokens"}
    _, direct = outliers.capture(
        model,
        v,
        patterns=(r"layer_1/attention_ln", r"layer_1/ffn_out"),
        deterministic=True,
        **inputs,
    )
    residual = direct["layer_1/attention_ln"] + direct["layer_1/ffn_out"]  # post-LN: LN(h + y)
    np.testing.assert_allclose(found["layer_1/output_ln:input"], residual, rtol=1e-5, atol=1e-6)
    stats = outliers.batch_outlier_stats(found)
    tokens = np.asarray(found["layer_1/ffn_out:tokens"]).reshape(-1, cfg.d_model)
    np.testing.assert_allclose(stats["layer_1/ffn_out:tokens"][1], np.abs(tokens).max(1), rtol=1e-6)
    assert stats["layer_1/ffn_out:tokens"][0].shape == (2 * 8,)


def test_kurtosis_from_the_first_batches_inf_norm_from_all():
    acc = outliers.OutlierAccumulator()
    k = [np.array([1.0, 2.0]), np.array([3.0, 5.0]), np.array([100.0, 100.0])]
    inf = [np.array([1.0, 1.0]), np.array([2.0, 2.0]), np.array([9.0, 9.0])]
    for i in range(3):
        acc.update({"m": (k[i], inf[i]), "m:input": (k[i], inf[i])}, kurtosis=i < 2)
    s = acc.summary(["m"])
    assert s["num_modules"] == 1  # the ":input" entry belongs to the "m:input" pattern only
    assert s["avg_kurtosis"] == pytest.approx(11.0 / 4)
    assert s["max_inf_norm"] == pytest.approx(24.0 / 6)
    assert acc.summary(["m:input"])["num_modules"] == 1


def test_protocol_fields_and_errors():
    bert = protocols.get("official", models.official_protocol("bert"))
    opt = protocols.get("official", models.official_protocol("opt"))
    assert (bert.num_calib, bert.calib_split, bert.kurtosis_batches) == (16, "eval", 257)
    assert (opt.num_calib, opt.calib_split, opt.kurtosis_batches) == (4, "train", 101)
    assert bert.quant.estimator == "running_minmax"
    assert (opt.quant.estimator, opt.quant.percentile) == ("percentile", 99.999)
    assert set(bert.reported) <= set(models._module("bert").OUTLIER_MODULES)
    ours = protocols.get("ours")
    assert ours.quant == quant.QuantConfig() and ours.kurtosis_batches is None
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocols.get("paper")
    with pytest.raises(ValueError, match="OFFICIAL_PROTOCOL"):
        protocols.get("official")
    with pytest.raises(ValueError, match="calib_split"):
        protocols.Protocol("ours", quant.QuantConfig(), calib_split="test")
