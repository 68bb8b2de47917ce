"""Tests for outeffhop.measure.outliers: kurtosis / inf-norm formulas, capture and aggregation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from outeffhop.measure import outliers


class Block(nn.Module):
    @nn.compact
    def __call__(self, x, deterministic=True):
        h = nn.Dense(8, name="fc1")(x)
        h = nn.Dense(x.shape[-1], name="fc2")(nn.relu(h))
        return nn.LayerNorm(name="ln")(x + h)


class TinyNet(nn.Module):
    layers: int = 3

    @nn.compact
    def __call__(self, x, deterministic=True):
        for i in range(self.layers):
            x = Block(name=f"layer_{i}")(x, deterministic)
        return nn.Dense(2, name="head")(x)


def np_kurtosis(x):
    x = np.asarray(x, np.float64)
    mu = x.mean(1, keepdims=True)
    std = x.std(1, ddof=1)
    return ((x - mu) ** 4).mean(1) / (std**4 + 1e-6)


rows = hnp.arrays(
    np.float32,
    st.sampled_from([(1, 2), (3, 7)]),
    elements=st.floats(-50, 50, width=32, allow_subnormal=False),
)


class TestFormulas:
    @pytest.mark.parametrize("jit", [False, True])
    @settings(max_examples=12)
    @given(x=rows)
    def test_kurtosis_matches_numpy(self, jit, x):
        got = (jax.jit if jit else (lambda f: f))(outliers.kurtosis)(x)
        np.testing.assert_allclose(got, np_kurtosis(x), rtol=2e-3, atol=1e-3)

    @pytest.mark.parametrize("jit", [False, True])
    @settings(max_examples=12)
    @given(x=rows)
    def test_inf_norm_matches_numpy(self, jit, x):
        got = (jax.jit if jit else (lambda f: f))(outliers.inf_norm)(x)
        np.testing.assert_array_equal(got, np.abs(x).max(1))

    def test_gaussian_near_three_and_outlier_raises_it(self):
        x = np.random.default_rng(0).normal(size=(4, 20000)).astype(np.float32)
        k = np.asarray(outliers.kurtosis(x))
        np.testing.assert_allclose(k, 3.0, atol=0.15)
        x[:, 0] = 200.0
        assert np.all(np.asarray(outliers.kurtosis(x)) > 10 * k)

    def test_scale_and_shift_invariant(self):
        x = np.random.default_rng(1).standard_t(4, size=(3, 500)).astype(np.float32)
        np.testing.assert_allclose(
            outliers.kurtosis(5 * x + 2), outliers.kurtosis(x), rtol=1e-4, atol=1e-4
        )

    @pytest.mark.parametrize("fn", [outliers.kurtosis, outliers.inf_norm])
    @pytest.mark.parametrize("shape", [(4,), (2, 3, 4), (3, 1)])
    def test_bad_shape(self, fn, shape):
        with pytest.raises(ValueError, match=r"\[B, N\]"):
            fn(jnp.ones(shape))


@pytest.fixture(scope="module")
def tiny():
    model = TinyNet()
    x = jax.random.normal(jax.random.key(0), (3, 5, 4))
    return model, model.init(jax.random.key(1), x), x


class TestCapture:
    def test_finds_expected_names(self, tiny):
        model, variables, x = tiny
        out, found = outliers.capture(model, variables, x, patterns=[r"layer_\d+/(fc2|ln)"])
        expected = {f"layer_{i}/{m}" for i in range(3) for m in ("fc2", "ln")}
        assert set(found) == expected
        np.testing.assert_allclose(out, model.apply(variables, x))
        assert found["layer_2/ln"].shape == (3, 5, 4)

    def test_capture_equals_manual(self, tiny):
        model, variables, x = tiny
        _, found = outliers.capture(model, variables, x, patterns=["layer_0/ln"])
        manual = Block().apply({"params": variables["params"]["layer_0"]}, x)
        np.testing.assert_allclose(found["layer_0/ln"], manual, rtol=1e-6)

    def test_repeated_calls_get_indices(self):
        class Twice(nn.Module):
            @nn.compact
            def __call__(self, x):
                d = nn.Dense(4, name="d")
                return d(d(x))

        m = Twice()
        x = jnp.ones((2, 4))
        _, found = outliers.capture(m, m.init(jax.random.key(0), x), x, patterns=["d"])
        assert set(found) == {"d#0", "d#1"}

    def test_empty_patterns_are_an_error(self):
        with pytest.raises(ValueError, match="patterns"):
            outliers.capture(TinyNet(), {}, jnp.ones((1, 4)), patterns=[])


class TestAggregation:
    def test_stats_match_direct_computation(self, tiny):
        model, variables, _ = tiny
        batches = [jax.random.normal(jax.random.key(i), (2 + i, 5, 4)) * 3 for i in range(2)]
        pats = [r"layer_\d+/(fc2|ln)"]
        summary = outliers.outlier_stats(model, variables, batches, pats)
        per = {}
        for b in batches:
            _, found = outliers.capture(model, variables, b, patterns=pats)
            for k, v in found.items():
                flat = np.asarray(v).reshape(v.shape[0], -1)
                k_, i_ = per.setdefault(k, ([], []))
                k_.extend(np_kurtosis(flat))
                i_.extend(np.abs(flat).max(1))
        assert set(summary["per_module"]) == set(per)
        for k, (ks, infs) in per.items():
            np.testing.assert_allclose(summary["per_module"][k]["kurtosis"], np.mean(ks), 1e-4)
            np.testing.assert_allclose(summary["per_module"][k]["inf_norm"], np.mean(infs), 1e-5)
            np.testing.assert_allclose(summary["per_module"][k]["inf_norm_max"], max(infs), 1e-5)
        kmeans = [np.mean(v[0]) for v in per.values()]
        np.testing.assert_allclose(summary["avg_kurtosis"], np.mean(kmeans), 1e-4)
        np.testing.assert_allclose(
            summary["max_inf_norm"], max(np.mean(v[1]) for v in per.values()), 1e-5
        )
        assert summary["num_samples"] == 5 and summary["num_modules"] == 6
        curve = summary["per_layer"]["layer_*/ln"]
        assert curve["layer"] == [0, 1, 2]
        assert curve["kurtosis"][1] == summary["per_module"]["layer_1/ln"]["kurtosis"]

    def test_inputs_fn_with_static_kwargs(self, tiny):
        model, variables, x = tiny
        a = outliers.outlier_stats(model, variables, [x], [r"layer_0/ln"])
        b = outliers.outlier_stats(
            model,
            variables,
            [{"x": x}],
            [r"layer_0/ln"],
            inputs_fn=lambda b: ((), {"x": b["x"], "deterministic": True}),
        )
        assert a["per_module"] == b["per_module"]

    def test_no_match_is_an_error(self, tiny):
        model, variables, x = tiny
        with pytest.raises(ValueError, match="no module matched"):
            outliers.outlier_stats(model, variables, [x], ["nothing"])

    def test_layer_curves_sorted_and_histogram(self):
        per = {f"enc/layer_{i}/out": {"kurtosis": float(i), "inf_norm": 2.0 * i} for i in (2, 0, 1)}
        per["emb"] = {"kurtosis": 1.0, "inf_norm": 1.0}
        curves = outliers.layer_curves(per)
        assert list(curves) == ["enc/layer_*/out"]
        assert curves["enc/layer_*/out"]["layer"] == [0, 1, 2]
        assert curves["enc/layer_*/out"]["inf_norm"] == [0.0, 2.0, 4.0]
        counts, edges = outliers.histogram({"a": jnp.arange(10.0)}, bins=5)["a"]
        assert counts.sum() == 10 and len(edges) == 6
