"""STanHop-Net: segmenting, forecast shapes, every normalizer and design, GSH in the layers."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from outeffhop.models import stanhop
from outeffhop.nn.hopfield import Hopfield
from outeffhop.nn.pooling import HopfieldLayer
from outeffhop.ops.entmax import entmax_bisect
from outeffhop.train.tasks import stanhop as stanhop_task


def _micro(**kw):
    """A tiny config whose lengths are not multiples of seg_len (both pads are exercised)."""
    base = dict(in_len=10, out_len=5, seg_len=4, num_layers=1, d_model=8, d_ff=8, factor=2)
    return stanhop.get_config("tiny", **{**base, **kw})


def _run(cfg, batch=2):
    model = stanhop.build(cfg)
    x = jax.random.normal(jax.random.key(0), (batch, cfg.in_len, cfg.num_series))

    # Eager on purpose: op-by-op dispatch reuses cached kernels, while compiling the whole
    # model costs ~10 s of CPU per variant.
    v = model.init(jax.random.key(1), x)
    return model, x, v, model.apply(v, x), model.apply(v, x.at[1:].set(0.0))


def test_segment_pads_the_front_and_keeps_order():
    x = jnp.arange(2 * 10 * 3, dtype=jnp.float32).reshape(2, 10, 3)
    seg = stanhop.segment(x, 4)  # 10 steps -> 2 padded + 10 = 3 segments of 4
    assert seg.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(seg[:, :, 0, :2], jnp.repeat(x[:, :1].transpose(0, 2, 1), 2, -1))
    np.testing.assert_array_equal(seg[:, :, -1], x[:, -4:].transpose(0, 2, 1))


def test_merge_segments_concatenates_neighbours_and_pads_the_end():
    x = jax.random.normal(jax.random.key(0), (1, 2, 5, 3))
    m = stanhop.merge_segments(x, 2)
    assert m.shape == (1, 2, 3, 6)
    np.testing.assert_array_equal(m[:, :, 1], jnp.concatenate([x[:, :, 2], x[:, :, 3]], -1))
    np.testing.assert_array_equal(m[:, :, 2], jnp.concatenate([x[:, :, 4], x[:, :, 4]], -1))


# One model per normalizer, each also exercising one design choice (compiles dominate).
DESIGNS = {
    "softmax": dict(gate="conditional_per_token"),
    "softmax1": dict(num_layers=2),  # the segment-merging path
    "clipped": dict(cross_series="router", hopfield_sublayer="hflayers"),  # the old design
    "clipped_softmax1": dict(series_values="lookup", dropout=0.1),
    "gsh": dict(),
}


@pytest.mark.parametrize(
    "normalizer",
    [
        n if n == "softmax1" else pytest.param(n, marks=pytest.mark.slow)
        for n in stanhop.NORMALIZERS
    ],
)
def test_every_normalizer_forecasts_the_right_shape(normalizer):
    cfg = _micro(normalizer=normalizer, **DESIGNS[normalizer])
    _, x, variables, y, y_other = _run(cfg, batch=3)
    assert y.shape == (3, cfg.out_len, cfg.num_series)
    assert bool(jnp.all(jnp.isfinite(y)))
    chex.assert_trees_all_close(y_other[0], y[0], atol=1e-5)  # no mixing across windows
    params = variables["params"]
    has_alpha = any("gsh_alpha" in str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params))
    assert has_alpha == (normalizer == "gsh")
    assert ("enc_1" in params) == (cfg.num_layers == 2)
    if cfg.num_layers == 2:
        assert set(params["enc_1"]["merge"]) == {"ln", "proj"}
    sthm = params["enc_0"]["sthm"]
    router = cfg.cross_series == "router"
    assert {"pool", "receive"} <= set(sthm) if router else {"lookup", "series"} <= set(sthm)
    layer = sthm["time"]["hopfield"] if cfg.gate != "none" else sthm["time"]
    assert ("norm_stored" in layer) == (cfg.hopfield_sublayer == "hflayers")
    assert ("gate" in sthm["time"]) == (cfg.gate != "none")
    if cfg.dropout:  # association + residual dropout in training
        model = stanhop.build(cfg)
        y_train = model.apply(
            variables, x, deterministic=False, rngs={"dropout": jax.random.key(5)}
        )
        assert bool(jnp.all(jnp.isfinite(y_train))) and not np.allclose(y_train, y)


def _official_hopfield(p, r, y, heads):
    """The STanHop code's Hopfield.forward (softmax association): Q = R W_Q, K = Y W_K,
    V = (Y W_K) W_V, per-head softmax(Q K^T / sqrt(d_head)) V, then W_O; no LayerNorms."""

    def lin(name, v):
        return v @ p[name]["kernel"] + p[name]["bias"]

    q, k = lin("q_proj", r), lin("k_proj", y)
    v = lin("v_proj", k)
    split = lambda t: t.reshape(t.shape[:2] + (heads, -1))  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    a = jax.nn.softmax(jnp.einsum("blhe,bshe->bhls", q, k) / np.sqrt(q.shape[-1]), -1)
    out = jnp.einsum("bhls,bshd->blhd", a, v).reshape(r.shape[:2] + (-1,))
    return lin("out_proj", out)


def test_paper_sublayers_are_the_stanhop_codes_hopfield_and_lookup():
    cfg = _micro(normalizer="softmax")
    fields = stanhop._fields(cfg)
    r = jax.random.normal(jax.random.key(0), (2, 3, 8))
    y = jax.random.normal(jax.random.key(1), (2, 5, 8))
    hop = Hopfield(**fields)
    p = hop.init(jax.random.key(2), (y, r, y))["params"]
    chex.assert_trees_all_close(hop.apply({"params": p}, (y, r, y)), _official_hopfield(p, r, y, 2),
                                atol=1e-5)  # fmt: skip
    look = HopfieldLayer(**fields, quantity=4)
    p = look.init(jax.random.key(3), r)["params"]
    learned = jnp.broadcast_to(p["lookup_weights"], (2, 4, 8))
    chex.assert_trees_all_close(look.apply({"params": p}, r),
                                _official_hopfield(p, r, learned, 2), atol=1e-5)  # fmt: skip


def test_paper_cross_series_stage_wiring():
    """STHMLayer of the STanHop code: s -> lookup = HopfieldLayer(s), mixed = Hopfield(s, s),
    LN(lookup + mixed), then LN(. + MLP(.)); the time stage first."""
    cfg = _micro(normalizer="softmax1")
    sthm = stanhop.Sthm(ml_collections.FrozenConfigDict(cfg))
    x = jax.random.normal(jax.random.key(0), (2, 3, 4, 8))  # [B, D, G, E]
    p = sthm.init(jax.random.key(1), x)["params"]
    fields = stanhop._fields(cfg)

    def ln(name, v):
        return nn.LayerNorm().apply({"params": p[name]}, v)

    def mlp(name, v):
        return stanhop.Mlp(cfg.d_ff, 8).apply({"params": p[name]}, v)

    t = x.reshape(6, 4, 8)
    t = ln("time_ln", t + Hopfield(**fields).apply({"params": p["time"]}, t))
    t = ln("time_mlp_ln", t + mlp("time_mlp", t))
    s = t.reshape(2, 3, 4, 8).transpose(0, 2, 1, 3).reshape(8, 3, 8)
    look = HopfieldLayer(**fields, quantity=cfg.factor).apply({"params": p["lookup"]}, s)
    s = ln("series_ln", look + Hopfield(**fields).apply({"params": p["series"]}, s))
    s = ln("series_mlp_ln", s + mlp("series_mlp", s))
    want = s.reshape(2, 4, 3, 8).transpose(0, 2, 1, 3)
    chex.assert_trees_all_close(sthm.apply({"params": p}, x), want, atol=1e-5)


def _hop(normalizer, **kw):
    return Hopfield(input_size=8, num_heads=2, normalizer=normalizer, scaling=300.0, **kw)


def test_gsh_alpha_gradient_matches_finite_differences():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    layer = _hop("gsh")
    params = layer.init(jax.random.key(1), x)["params"]
    w = jax.random.normal(jax.random.key(2), (2, 5, 8))

    @jax.jit
    def loss(a):
        return jnp.sum(w * layer.apply({"params": {**params, "gsh_alpha": a}}, x))

    a = jnp.array([-0.5, 0.5])
    g = jax.jit(jax.grad(loss))(a)
    eps = 1e-2
    for h in range(2):
        e = jnp.zeros(2).at[h].set(eps)
        fd = (loss(a + e) - loss(a - e)) / (2 * eps)
        np.testing.assert_allclose(g[h], fd, rtol=5e-2, atol=1e-3)
    assert float(jnp.max(jnp.abs(g))) > 0


def test_gsh_hopfield_is_entmax_of_the_softmax_layers_scores():
    """Same params: the gsh layer's association = entmax_alpha of the logits whose softmax is
    the softmax layer's association (alpha per head)."""
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    soft, gsh = _hop("softmax"), _hop("gsh")
    params = gsh.init(jax.random.key(1), x)["params"]
    params["gsh_alpha"] = jnp.array([-2.0, 2.0])
    sparams = {k: v for k, v in params.items() if k != "gsh_alpha"}
    _, xi_soft = soft.apply({"params": sparams}, x, return_association=True)
    _, xi = gsh.apply({"params": params}, x, return_association=True)
    logits = jnp.log(xi_soft)  # softmax(logits) = xi_soft: same scores up to a row shift
    alpha = (1.0 + jax.nn.sigmoid(params["gsh_alpha"]))[:, None, None]
    chex.assert_trees_all_close(xi, entmax_bisect(logits, alpha), atol=1e-5)
    np.testing.assert_allclose(xi.sum(-1), 1.0, atol=1e-5)


def test_gsh_hopfield_multi_step_is_the_gsh_iteration_on_raw_patterns():
    """All static, no norms: q = state, k = stored, beta 1; update_steps_max = 2 gives two
    association-space GSH updates after the first entmax (ops.entmax.gsh_associate)."""
    from outeffhop.ops import entmax

    kw = dict(stored_pattern_as_static=True, state_pattern_as_static=True,
              pattern_projection_as_static=True, disable_out_projection=True,
              normalize_stored_pattern=False, normalize_state_pattern=False,
              normalize_pattern_projection=False, normalizer="gsh")  # fmt: skip
    r = jax.random.normal(jax.random.key(0), (2, 3, 4))
    y = jax.random.normal(jax.random.key(1), (2, 5, 4))
    one, two = Hopfield(**kw), Hopfield(**kw, update_steps_max=2, update_steps_eps=1e-9)
    params = one.init(jax.random.key(2), (y, r, y))
    _, xi1 = one.apply(params, (y, r, y), return_association=True)
    out, xi2 = two.apply(params, (y, r, y), return_association=True)
    a = entmax_bisect(jnp.einsum("bld,bsd->bls", r, y), 1.5)
    chex.assert_trees_all_close(xi1[:, 0], a, atol=1e-6)
    for _ in range(2):
        a = entmax_bisect(jnp.einsum("bld,bsd->bls", a @ y, y), 1.5)
    chex.assert_trees_all_close(xi2[:, 0], a, atol=1e-5)
    chex.assert_trees_all_close(out, a @ y, atol=1e-5)
    expected = entmax.gsh_associate(r, y, beta=1.0, alpha=1.5, update_steps_max=2,
                                    update_steps_eps=1e-9)  # fmt: skip
    chex.assert_trees_all_close(xi2[:, 0], expected, atol=1e-6)


def test_gsh_hopfield_masks():
    x = jax.random.normal(jax.random.key(0), (1, 4, 8))
    layer = _hop("gsh")
    params = layer.init(jax.random.key(1), x)
    pad = jnp.array([[True, True, False, False]])
    assoc = jnp.ones((1, 1, 4, 4), bool).at[..., 3, :].set(False)  # query 3 sees nothing
    _, xi = layer.apply(params, x, pad, assoc, return_association=True)
    assert not bool(jnp.any(xi[..., 2:])) and not bool(jnp.any(xi[..., 3, :]))
    np.testing.assert_allclose(xi[..., :3, :].sum(-1), 1.0, atol=1e-5)


def test_forecast_sums_ignore_padding_rows():
    y = jax.random.normal(jax.random.key(0), (3, 4, 2))
    pred = y + 1.0
    batch = {"y": y, "weight": jnp.array([1.0, 1.0, 0.0])}
    s, w, a = stanhop_task.forecast_sums(pred.at[2].set(100.0), batch)
    assert float(w) == 2.0 and float(s) == pytest.approx(2.0) and float(a) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(normalizer="sparsemax"), "normalizer must be one of .*'sparsemax'"),
        (dict(d_model=10, num_heads=4), "d_model must be divisible"),
        (dict(factor=0), "factor must be a positive integer"),
        (dict(dropout=1.0), "dropout"),
        (dict(cross_series="crossformer"), "cross_series must be one of paper, router"),
        (dict(gate="sometimes"), "gate must be one of none, unconditional_per_head"),
        (dict(gate_init=1.0), "gate_init must lie in"),
    ],
)
def test_bad_config_names_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        stanhop.build(stanhop.get_config("tiny", **kw))


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ValueError, match="unknown stanhop config field 'layers'"):
        stanhop.get_config("tiny", layers=3)
    with pytest.raises(ValueError, match="preset must be one of"):
        stanhop.get_config("huge")
    with pytest.raises(ValueError, match="normalizer must be one of .*'entmax'"):
        _hop("entmax")
    with pytest.raises(ValueError, match="update_steps_max must be a non-negative int"):
        _hop("gsh", update_steps_max=-1)
    cfg = _micro()
    model = stanhop.build(cfg)
    with pytest.raises(ValueError, match="x must be \\[batch, in_len=10, num_series=3\\]"):
        model.init(jax.random.key(0), jnp.zeros((1, 9, 3)))


def test_configs_presets_are_consistent():
    from outeffhop.launch.configs import load_config

    for preset in ("quick", "paper", "paper_outlier"):
        c = load_config(f"stanhop:{preset}")
        stanhop_task.check(c)  # windows agree, model config valid
        assert stanhop_task.num_series(c) == 6  # the shipped EPF FR/BE series
    paper = load_config("stanhop:paper")
    assert (paper.model.in_len, paper.model.out_len, paper.model.seg_len) == (168, 24, 6)
    assert (paper.optim.lr, paper.batch_size, paper.model.num_layers) == (1e-4, 128, 3)
    assert load_config("stanhop:paper_outlier").model.num_layers == 11
    bad = load_config("stanhop:quick")
    bad.data.pred_len = 12
    with pytest.raises(ValueError, match="config.model.out_len must equal config.data.pred_len"):
        stanhop_task.check(bad)


@pytest.mark.slow
def test_study_runs_end_to_end(tmp_path):
    from outeffhop.experiments.stanhop import study as stanhop_study
    from outeffhop.launch.configs import load_config

    c = load_config("stanhop:quick")
    c.model.update(d_model=8, d_ff=8, num_layers=1, factor=2)
    c.num_steps, c.eval_steps, c.progress_bar = 3, 1, False
    c.study.update(variants=("softmax1", "gsh", "gated"), eval_batch_size=16, test_batches=2)
    c.study.update(outlier_batches=1, calib_batches=1)
    m = stanhop_study.run(c, str(tmp_path))
    for name in ("metrics.json", "report.md", "errors.png", "outliers.png", "forecast.png"):
        assert (tmp_path / name).is_file()
    for r in m["results"].values():
        assert np.isfinite([r["mse"], r["w8a8_mse"], r["avg_kurtosis"], r["max_inf_norm"]]).all()
    assert len(m["results"]["gsh"]["gsh_alpha"]) > 0 and not m["results"]["softmax1"]["gsh_alpha"]
    assert m["variants"]["gated"] == {"normalizer": "softmax", "gate": "conditional_per_token"}
    with pytest.raises(ValueError, match="study.variants must name variants"):
        stanhop_study.variant_config(c, "sparse")
