"""Tests for outeffhop.measure.quant: fake quantizer, range estimators, sites and calibration."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from outeffhop.measure import quant


def np_fake_quant(x, lo, hi, bits, symmetric):
    x = np.asarray(x, np.float64)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        s = max(abs(lo), abs(hi)) / qmax
        if s == 0:
            return np.zeros_like(x)
        return np.clip(np.round(x / s), -qmax, qmax) * s
    qmax = 2**bits - 1
    s = (hi - lo) / qmax
    if s == 0:
        return np.zeros_like(x)
    z = np.round(-lo / s)
    return (np.clip(np.round(x / s) + z, 0, qmax) - z) * s


vals = hnp.arrays(
    np.float32, st.integers(1, 16), elements=st.floats(-20, 20, width=32, allow_subnormal=False)
)
ends = st.floats(-10, 10, width=32, allow_subnormal=False)


class TestFakeQuantize:
    @settings(max_examples=20)
    @given(x=vals, lo=ends, hi=ends, bits=st.integers(2, 16), symmetric=st.booleans())
    def test_matches_direct_formula(self, x, lo, hi, bits, symmetric):
        lo, hi = min(lo, hi), max(lo, hi)

        def fq(x, lo, hi):
            return quant.fake_quantize(x, lo, hi, bits=bits, symmetric=symmetric)

        got = np.asarray(fq(x, lo, hi), np.float64)
        want = np_fake_quant(x, lo, hi, bits, symmetric)
        s = (max(hi, 0) - min(lo, 0)) / (2**bits - 1)
        # float32 vs float64 may round a value on a .5 boundary differently: one step at most.
        assert np.all(np.abs(got - want) <= s * 1.001 + 1e-5)
        assert np.mean(np.abs(got - want) > 1e-5 + 1e-5 * np.abs(want)) <= 0.25

    @settings(max_examples=12)
    @given(x=vals, lo=ends, hi=ends, bits=st.integers(2, 16), symmetric=st.booleans())
    def test_idempotent_zero_exact_error_bounded(self, x, lo, hi, bits, symmetric):
        lo, hi = min(lo, hi), max(lo, hi)
        q = quant.fake_quantize(x, lo, hi, bits=bits, symmetric=symmetric)
        np.testing.assert_allclose(
            quant.fake_quantize(q, lo, hi, bits=bits, symmetric=symmetric), q, atol=1e-5
        )
        assert float(quant.fake_quantize(0.0, lo, hi, bits=bits, symmetric=symmetric)) == 0.0
        lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
        if symmetric:
            lo0 = -(hi0 := max(-lo0, hi0))
            step = hi0 / (2 ** (bits - 1) - 1)
            bound = step / 2  # the grid covers [lo, hi] exactly
        else:
            step = (hi0 - lo0) / (2**bits - 1)
            bound = step  # rounding the zero point shifts the grid by up to step / 2
        inside = (x >= lo0) & (x <= hi0)
        err = np.abs(np.asarray(q) - x)
        assert np.all(err[inside] <= bound + 1e-4 * (1 + np.abs(x[inside])))
        assert np.all(np.asarray(q) >= lo0 - bound - 1e-4)
        assert np.all(np.asarray(q) <= hi0 + bound + 1e-4)

    @pytest.mark.parametrize("symmetric", [False, True])
    def test_jit_matches_eager(self, symmetric):
        x = jax.random.normal(jax.random.key(0), (64,)) * 3
        fq = lambda x, lo, hi: quant.fake_quantize(x, lo, hi, symmetric=symmetric)  # noqa: E731
        diff = np.abs(np.asarray(jax.jit(fq)(x, -2.0, 1.5)) - np.asarray(fq(x, -2.0, 1.5)))
        # XLA may fuse x / s differently under jit: a .5 tie can round one step apart.
        assert np.all(diff <= 3.5 / 255 + 1e-6) and np.mean(diff > 1e-6) <= 0.05

    @pytest.mark.parametrize("symmetric", [False, True])
    def test_zero_width_range_no_nan(self, symmetric):
        x = jnp.array([-3.0, 0.0, 5.0])
        q = quant.fake_quantize(x, 0.0, 0.0, symmetric=symmetric)
        np.testing.assert_array_equal(q, jnp.zeros(3))
        g = jax.grad(lambda x: quant.fake_quantize(x, 0.0, 0.0).sum())(x)
        assert np.all(np.isfinite(g))

    def test_range_widened_to_contain_zero(self):
        x = jnp.array([0.0, 1.0, 2.0, 3.0])
        # lo == hi == 2 becomes [0, 2]: 3 clips to 2, 0 stays 0.
        np.testing.assert_allclose(quant.fake_quantize(x, 2.0, 2.0), [0, 1, 2, 2], atol=1e-2)
        np.testing.assert_allclose(quant.fake_quantize(-x, -2.0, -1.0), [0, -1, -2, -2], atol=1e-2)

    def test_symmetric_int_range(self):
        x = jnp.linspace(-2, 2, 101)
        q = quant.fake_quantize(x, -1.0, 0.5, bits=3, symmetric=True)
        levels = np.unique(np.round(np.asarray(q) / (1.0 / 3), 4))
        np.testing.assert_array_equal(levels, np.arange(-3, 4))

    def test_per_channel_broadcast_and_dtype(self):
        x = jnp.arange(12.0, dtype=jnp.bfloat16).reshape(3, 4)
        hi = jnp.array([1.0, 4.0, 8.0, 16.0])
        q = quant.fake_quantize(x, -hi, hi, symmetric=True)
        assert q.dtype == jnp.bfloat16
        for j in range(4):
            np.testing.assert_array_equal(
                q[:, j], quant.fake_quantize(x[:, j], -hi[j], hi[j], symmetric=True)
            )

    def test_more_bits_less_error(self):
        x = jax.random.normal(jax.random.key(0), (1000,))
        errs = [
            float(jnp.mean((quant.fake_quantize(x, -6.0, 6.0, bits=b) - x) ** 2))
            for b in (2, 4, 8, 16)
        ]
        assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-8

    @pytest.mark.parametrize("bits", [0, 1, 17, 8.0, True, None])
    def test_bad_bits(self, bits):
        with pytest.raises(ValueError, match="bits must be an integer in 2..16"):
            quant.fake_quantize(jnp.ones(3), -1.0, 1.0, bits=bits)


class TestEstimators:
    def test_combine(self):
        a, b = (np.float32(-1), np.float32(2)), (np.float32(-3), np.float32(1))
        assert quant.combine_ranges(None, a, "running_minmax") == a
        assert quant.combine_ranges(a, b, "current_minmax") == b
        assert quant.combine_ranges(a, b, "global_minmax") == (-3, 2)
        np.testing.assert_allclose(quant.combine_ranges(a, b, "running_minmax"), (-1.2, 1.9))

    def test_percentile_and_mse_inside_minmax(self):
        x = jax.random.normal(jax.random.key(0), (4000,)).at[0].set(60.0)
        lo, hi = quant.batch_range(x, "current_minmax")
        plo, phi = quant.batch_range(x, "percentile", percentile=99.0)
        mlo, mhi = quant.batch_range(x, "mse", bits=4)
        assert lo <= plo < phi < hi and lo <= mlo < mhi <= hi
        np.testing.assert_allclose(phi, np.percentile(np.asarray(x), 99.0), rtol=1e-5)

        def mse(a, b):
            return float(jnp.mean((quant.fake_quantize(x, a, b, bits=4) - x) ** 2))

        assert mse(mlo, mhi) < mse(lo, hi)

    def test_bad_estimator(self):
        with pytest.raises(ValueError, match="estimator must be one of"):
            quant.batch_range(jnp.ones(3), "median")
        with pytest.raises(ValueError, match="estimator must be one of"):
            quant.QuantConfig(estimator="median")
        with pytest.raises(ValueError, match="act_bits must be None or an integer"):
            quant.QuantConfig(act_bits=1)
        with pytest.raises(ValueError, match="weight_bits must be None or an integer"):
            quant.QuantConfig(weight_bits=True)
        with pytest.raises(ValueError, match="Site.where"):
            quant.QuantConfig(sites=(quant.Site(where="middle"),))


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(2):
            h = nn.Dense(16, name=f"fc1_{i}")(x)
            x = nn.LayerNorm(name=f"ln_{i}")(x + nn.Dense(x.shape[-1], name=f"fc2_{i}")(nn.gelu(h)))
        return nn.Dense(3, name="head")(x)


@pytest.fixture(scope="module")
def setup():
    net = Net()
    batches = [jax.random.normal(jax.random.key(i), (4, 6, 8)) * (1 + i) for i in range(4)]
    variables = jax.jit(net.init)(jax.random.key(9), batches[0])

    def forward(variables, x):
        return {"out": net.apply(variables, x)}

    return forward, variables, batches


def metric(forward):
    def f(v, x):
        return {"mse": jnp.mean(forward(v, x)["out"] ** 2)}

    return f


class TestQuantizedModel:
    def test_site_names(self, setup):
        forward, variables, batches = setup
        ranges = quant.calibrate(forward, variables, batches[:1], quant.QuantConfig())
        want = {f"{m}_{i}:__call__:in0" for i in range(2) for m in ("fc1", "fc2", "ln")}
        assert set(ranges) == want | {"head:__call__:in0"}

    @pytest.mark.parametrize(
        "estimator", ["running_minmax", pytest.param("mse", marks=pytest.mark.slow)]
    )
    def test_calibration_deterministic(self, setup, estimator):
        forward, variables, batches = setup
        cfg = quant.QuantConfig(estimator=estimator)
        a = quant.calibrate(forward, variables, batches, cfg)
        b = quant.calibrate(forward, variables, batches, cfg)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
            assert a[k][0] <= a[k][1]

    def test_running_minmax_is_ema(self, setup):
        forward, variables, batches = setup
        cfg = quant.QuantConfig(act_bits=8, estimator="running_minmax")
        r = quant.calibrate(forward, variables, batches, cfg)
        lo = [float(jnp.min(b)) for b in batches]
        want = lo[0]
        for v in lo[1:]:
            want = 0.9 * want + 0.1 * v
        np.testing.assert_allclose(r["fc1_0:__call__:in0"][0], want, rtol=1e-5)

    def test_16_bits_close_8_bits_differs(self, setup):
        forward, variables, batches = setup
        fp = jax.jit(forward)(variables, batches[0])["out"]
        outs = {}
        for bits in (16, 8):
            cfg = quant.QuantConfig(weight_bits=bits, act_bits=bits, estimator="global_minmax")
            ranges = quant.calibrate(forward, variables, batches, cfg)
            outs[bits] = jax.jit(quant.quantized(forward, ranges, cfg))(variables, batches[0])[
                "out"
            ]
        err = {b: float(jnp.max(jnp.abs(o - fp))) for b, o in outs.items()}
        scale = float(jnp.max(jnp.abs(fp)))
        assert err[16] < 1e-3 * scale
        assert err[8] > 10 * err[16]

    def test_ptq_evaluate_and_ablations(self, setup):
        forward, variables, batches = setup
        abl = quant.ablations()
        assert set(abl) >= {"W8A8", "W8A8-per-channel", "W8A16", "W4A8"}
        fp = quant.mean_metrics(metric(forward), variables, batches[:2])
        res = {
            name: quant.ptq_evaluate(metric(forward), variables, batches[:2], batches[:2], cfg)
            for name, cfg in abl.items()
            if name in ("W8A16", "W4A8")
        }
        gap = {k: abs(v["mse"] - fp["mse"]) for k, v in res.items()}
        assert gap["W8A16"] <= gap["W4A8"]

    def test_quantize_weights(self, setup):
        _, variables, _ = setup
        p = variables["params"]
        q = jax.jit(lambda p: quant.quantize_weights(p, bits=4, exclude=["head/.*"]))(p)
        np.testing.assert_array_equal(q["head"]["kernel"], p["head"]["kernel"])
        np.testing.assert_array_equal(q["fc1_0"]["bias"], p["fc1_0"]["bias"])
        assert len(np.unique(q["fc1_0"]["kernel"])) <= 15
        qc = jax.jit(lambda p: quant.quantize_weights(p, bits=4, per_channel=True))(p)
        w = p["fc1_0"]["kernel"]
        for j in (0, 5):
            col = quant.fake_quantize(w[:, j], w[:, j].min(), w[:, j].max(), bits=4, symmetric=True)
            np.testing.assert_array_equal(qc["fc1_0"]["kernel"][:, j], col)
        e_t = float(jnp.mean((q["fc1_0"]["kernel"] - w) ** 2))
        e_c = float(jnp.mean((qc["fc1_0"]["kernel"] - w) ** 2))
        assert e_c <= e_t

    def test_output_site(self, setup):
        forward, variables, batches = setup
        site = quant.Site(module_type="LayerNorm", where="output")
        cfg = quant.QuantConfig(weight_bits=None, act_bits=2, sites=(site,))
        ranges = quant.calibrate(forward, variables, batches, cfg)
        assert set(ranges) == {"ln_0:__call__:out0", "ln_1:__call__:out0"}
        out = jax.jit(quant.quantized(forward, ranges, cfg))(variables, batches[0])["out"]
        assert not np.allclose(out, forward(variables, batches[0])["out"])

    def test_mismatched_ranges_and_empty_batches(self, setup):
        forward, variables, batches = setup
        cfg = quant.QuantConfig()
        ranges = quant.calibrate(forward, variables, batches[:1], cfg)
        del ranges["head:__call__:in0"]
        with pytest.raises(ValueError, match="no calibrated range"):
            quant.quantized(forward, ranges, cfg)(variables, batches[0])
        with pytest.raises(ValueError, match="ranges must come from calibrate"):
            quant.quantized(forward, {}, cfg)
        with pytest.raises(ValueError, match="at least one calibration batch"):
            quant.calibrate(forward, variables, [], cfg)
        assert dataclasses.replace(cfg, act_bits=None).act_bits is None
