"""Norm criterion against a direct computation; poly/exact choice; norm-constrained prompts."""

import importlib
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_theory import efficiency as ef
from prompt_theory import model as pm
from prompt_theory import threshold as th

# the module (prompt_theory.poly_attention is the exported function of the same name)
pa = importlib.import_module("prompt_theory.poly_attention")


def _setup(pre=0, prompt_scale=0.3, seed=0):
    params = pm.init_params(jax.random.PRNGKey(seed), 4, d_ff=8, pre_ffn_layers=pre)
    rng = np.random.default_rng(seed)
    prompt = jnp.asarray(prompt_scale * rng.normal(size=(3, 4)), jnp.float32)
    x = jnp.asarray(rng.uniform(size=(2, 5, 4)), jnp.float32)
    return params, prompt, x


def _direct(params, prompt, x, s):
    """Row-by-row numpy: per example, Z = F_pre([P, X]); Q, K; the criterion's maxima."""
    lp, b_all, b_out, bq, bk, bp = prompt.shape[0], 0.0, 0.0, 0.0, 0.0, 0.0
    for xi in np.asarray(x):
        z = np.concatenate([np.asarray(prompt), xi])
        if params["ffn_pre"]:
            z = z + np.asarray(pm.mlp(params["ffn_pre"], jnp.asarray(z)))
        q, k = z @ np.asarray(params["attn"]["wq"]), z @ np.asarray(params["attn"]["wk"])
        bq, bk = max(bq, np.abs(q).max()), max(bk, np.abs(k).max())
        bp = max(bp, np.abs(q[:lp]).max(), np.abs(k[:lp]).max())
        for i in range(len(q)):
            for j in range(len(k)):
                b_all = max(b_all, abs(float(q[i] @ k[j])))
                if i >= lp:
                    b_out = max(b_out, abs(float(q[i] @ k[j])))
    return {
        "B_Q": bq,
        "B_K": bk,
        "B_prompt": bp,
        "max_qk_scaled": s * b_all,
        "max_qk_scaled_out": s * b_out,
    }


@pytest.mark.parametrize("pre,scale", [(0, "1/d"), (2, "1/sqrt(d)")])
def test_criterion_matches_direct_computation(pre, scale):
    params, prompt, x = _setup(pre)
    crit = ef.norm_criterion(params, prompt, x, scale=scale, eps=1e-3)
    s, n, d = pm.score_scale(scale, 4), 8, 4
    for key, want in _direct(params, prompt, x, s).items():
        np.testing.assert_allclose(crit[key], want, rtol=1e-5, err_msg=key)
    b_eff = math.sqrt(s * d) * max(crit["B_Q"], crit["B_K"])
    assert crit["ratio"] == pytest.approx(b_eff / math.sqrt(math.log(n)))
    assert crit["B_crit"] == th.b_crit(n, d, 1e-3)  # the label comes from B_crit, no constant
    assert crit["regime"] == ("efficient" if b_eff <= crit["B_crit"] else "hard")
    assert crit["degree"] == pa.taylor_degree(crit["max_qk_scaled_out"], 1e-3)
    assert crit["rank"] == pa.poly_rank(d, crit["degree"])


def test_cauchy_schwarz_bound_dominates_the_exact_range():
    params, prompt, x = _setup(prompt_scale=2.0)
    exact = ef.norm_criterion(params, prompt, x, exact_qk=True)
    bound = ef.norm_criterion(params, prompt, x, exact_qk=False)
    assert not bound["b_is_exact"] and exact["b_is_exact"]
    for key in ("max_qk_scaled", "max_qk_scaled_out"):
        assert bound[key] >= exact[key] * (1 - 1e-6)


def test_regime_flips_as_the_prompt_grows():
    params, prompt, x = _setup()
    small = ef.norm_criterion(params, 0.01 * prompt, x, scale="1/d")
    large = ef.norm_criterion(params, 30.0 * prompt, x, scale="1/d")
    assert large["B_prompt"] > small["B_prompt"] and large["ratio"] > small["ratio"]
    assert large["regime"] == "hard" and large["degree"] > small["degree"]
    tiny = ef.norm_criterion(params, 0.01 * prompt, 0.02 * x, scale="1/d")
    assert tiny["regime"] == "efficient" and tiny["B_eff"] <= tiny["B_crit"] < small["B_eff"]


def test_inference_uses_poly_rows_when_they_are_cheaper():
    params, prompt, _ = _setup(prompt_scale=0.05)
    x = 0.3 * jax.random.uniform(jax.random.PRNGKey(1), (2, 100, 4))  # L = 100 > rank
    out, info = ef.prompted_inference(params, prompt, x, scale="1/d", eps=1e-5)
    exact = jax.jit(pm.prompted, static_argnames="scale")(params, prompt, x, scale="1/d")
    assert info["attention"] == "poly" and info["path"] == "poly_rows" and info["degree"] >= 1
    assert info["costs"]["poly_rows"] < info["costs"]["exact_rows"]
    assert 0 < info["error_bound"] == info["poly_error_bound"] < 1e-3
    chex.assert_trees_all_close(out, exact, atol=1e-4)


def test_inference_reads_few_rows_exactly_even_inside_the_criterion():
    params, prompt, _ = _setup(prompt_scale=0.05)
    x = 0.3 * jax.random.uniform(jax.random.PRNGKey(1), (2, 3, 4))  # L = 3 rows < rank
    out, info = ef.prompted_inference(params, prompt, x, scale="1/d", eps=1e-5)
    assert info["criterion"]["degree"] >= 1 and info["path"] == "exact_rows"
    assert info["costs"]["exact_rows"] <= info["costs"]["poly_rows"]
    chex.assert_trees_all_close(out, pm.prompted(params, prompt, x, scale="1/d"), atol=1e-6)


def test_inference_falls_back_to_exact_past_the_criterion():
    params, prompt, x = _setup(prompt_scale=50.0)
    out, info = ef.prompted_inference(params, prompt, x, scale="1", eps=1e-3, max_degree=4)
    assert info["attention"] == "exact" and info["error_bound"] == 0.0
    assert info["poly_error_bound"] > 0  # what poly would have cost is still reported
    chex.assert_trees_all_close(out, pm.prompted(params, prompt, x, scale="1"), atol=1e-5)


@pytest.mark.parametrize("pre,causal", [(0, False), (0, True), (2, False), (2, True)])
def test_rows_path_equals_the_full_model(pre, causal):
    params, prompt, x = _setup(pre)
    full = pm.prompted(params, prompt, x, causal=causal)
    rows = pm.prompted_rows(params, prompt, x, causal=causal)
    chex.assert_trees_all_close(rows, full, atol=1e-6)
    poly = pm.prompted_rows(params, prompt, x, causal=causal, rows_fn=pa.poly_rows_fn(3))
    poly_full = pm.prompted(params, prompt, x, causal=causal, attention_fn=pa.poly_attention_fn(3))
    chex.assert_trees_all_close(poly, poly_full, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_poly_rows_equal_the_last_rows_of_poly_attention(causal):
    rng = np.random.default_rng(int(causal))
    q, k = (jnp.asarray(0.4 * rng.normal(size=(2, 40, 3)), jnp.float32) for _ in range(2))
    v = jnp.asarray(rng.normal(size=(2, 40, 2)), jnp.float32)
    full = jax.jit(lambda: pa.poly_attention(q, k, v, degree=4, causal=causal, chunk=16))()
    exact = pm.exact_attention(q, k, v, 3**-0.5, causal)
    for rows in (1, 13):
        qr = q[..., -rows:, :]
        part = jax.jit(
            lambda qr: pa.poly_attention_rows(qr, k, v, degree=4, causal=causal, chunk=16)
        )
        chex.assert_trees_all_close(part(qr), full[..., -rows:, :], atol=1e-6)
        got = pm.exact_rows(qr, k, v, 3**-0.5, causal)
        chex.assert_trees_all_close(got, exact[..., -rows:, :], atol=1e-6)


def test_attention_costs_formulas_and_crossover():
    c = ef.attention_costs(1000, 10, 8, 8, 2)
    r = math.comb(10, 2)
    assert c == {
        "exact_full": 1000**2 * 16,
        "exact_rows": 10 * 1000 * 16,
        "poly_full": 2 * 1000 * r * 11,
        "poly_rows": 1010 * r * 11,
    }
    assert "poly_rows" not in ef.attention_costs(1000, 10, 8, 8, None)
    # poly rows pay about r (d_v + 3) per key, exact rows L (d + d_v): poly wins once L > ~r
    assert ef.attention_costs(10**6, 64, 8, 8, 2)["poly_rows"] < 64 * 10**6 * 16
    assert ef.attention_costs(10**6, 16, 8, 8, 2)["poly_rows"] > 16 * 10**6 * 16


def test_projection_keeps_the_prompt_norm_under_target():
    params, prompt, _ = _setup(prompt_scale=3.0)
    projected = ef.project_prompt(params, prompt, 0.5)
    assert float(ef.prompt_norm(params, projected)) <= 0.5 + 1e-6
    small = ef.project_prompt(params, 0.01 * prompt, 0.5)
    chex.assert_trees_all_close(small, 0.01 * prompt)  # already inside: unchanged
    with pytest.raises(ValueError, match="ffn_pre"):
        ef.project_prompt(_setup(pre=1)[0], prompt, 0.5)
    with pytest.raises(ValueError, match="target"):
        ef.project_prompt(params, prompt, 0.0)


def test_penalty_is_zero_inside_and_pulls_the_norm_down_outside():
    params, prompt, _ = _setup(pre=1, prompt_scale=3.0)
    assert float(ef.norm_penalty(params, 1e-3 * prompt, 0.5)) == 0.0
    grad = jax.grad(lambda p: ef.norm_penalty(params, p, 0.5))(prompt)
    chex.assert_tree_all_finite(grad)
    stepped = prompt - 0.01 * grad
    assert float(ef.prompt_norm(params, stepped)) < float(ef.prompt_norm(params, prompt))


def test_b_crit_tracks_sqrt_log_n_when_d_grows_with_log_n():
    ratios = [th.b_crit(2**p, p, 1e-3) / math.sqrt(p * math.log(2)) for p in (16, 32, 48)]
    assert all(0.2 < r < 0.5 for r in ratios) and max(ratios) - min(ratios) < 0.1
    assert th.b_crit(2**20, 8, 1e-3) > th.b_crit(2**10, 8, 1e-3)  # monotone in n


def test_wrong_prompt_width_fails():
    params, prompt, x = _setup()
    with pytest.raises(ValueError, match="prompt"):
        ef.norm_criterion(params, prompt[:, :3], x)
