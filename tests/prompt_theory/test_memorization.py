"""Capacity: the counting bound calculator and the masked, vmapped prompt-tuning sweep."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_theory import bounds, memorization, model


def test_lipschitz_bound_monotone_in_d_L_and_inverse_eps():
    eps = [0.2, 0.1, 0.05, 0.02, 0.01]
    for d in (1, 2, 3):
        for L in (1, 2, 3):
            vals = [bounds.lipschitz_tokens(d, L, e, 64) for e in eps]
            assert vals == sorted(vals) and vals[-1] > vals[0]
            assert bounds.lipschitz_tokens(d + 1, L, 0.05, 64) > bounds.lipschitz_tokens(
                d, L, 0.05, 64
            )
            assert bounds.lipschitz_tokens(d, L + 1, 0.05, 64) > bounds.lipschitz_tokens(
                d, L, 0.05, 64
            )
    assert bounds.lipschitz_tokens(2, 2, 0.05, 64) > bounds.lipschitz_tokens(2, 2, 0.05, 128)


def test_lipschitz_bound_formula_and_construction_above_it():
    # n = floor(1 / (4 * 0.05)) = 5 bump centres per coordinate, d L = 4, d_out = 2
    assert bounds.lipschitz_tokens(2, 2, 0.05, 10) == 5**4 * 2 * 2 / 10
    for d, L, e in ((1, 2, 0.1), (2, 2, 0.05), (1, 3, 0.02)):
        width = 3 * d + 4 * L + 3 + d + d * math.ceil(1 / (2 * e)) ** (d * (L - 1))
        assert bounds.construction_tokens(d, L, e) >= bounds.lipschitz_tokens(d, L, e, 32 * width)
    assert (
        bounds.lipschitz_tokens(20, 20, 1e-3, 32) == math.inf
        or bounds.lipschitz_tokens(20, 20, 1e-3, 32) > 1e300
    )


def test_memorization_bound_monotone_and_dof_form():
    base = bounds.memorization_tokens(8, 2, 1, 0.05, 64)
    assert bounds.memorization_tokens(16, 2, 1, 0.05, 64) > base
    assert bounds.memorization_tokens(8, 3, 1, 0.05, 64) > base
    assert bounds.memorization_tokens(8, 2, 2, 0.05, 64) > base
    assert bounds.memorization_tokens(8, 2, 1, 0.01, 64) > base
    m = math.floor(1 / 0.1) + 1  # numbers held to the targets' precision: N L d_out / D
    assert bounds.memorization_tokens(8, 2, 1, 0.05, 8 * math.log2(m)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(eps=0.0), dict(eps=-1.0), dict(d=0), dict(L=1.5), dict(bits_per_token=0)],
)
def test_bad_calculator_input(kwargs):
    args = dict(d=2, L=2, eps=0.1, bits_per_token=32) | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        bounds.lipschitz_tokens(**args)


def test_masked_padding_equals_short_prompt():
    params = model.init_params(jax.random.key(0), 6, d_ff=12, pre_ffn_layers=1)
    x = jax.random.uniform(jax.random.key(1), (3, 2, 6))
    short = jax.random.normal(jax.random.key(2), (3, 6))
    padded = jnp.concatenate([jax.random.normal(jax.random.key(3), (4, 6)), short])
    valid = jnp.arange(9) >= 4

    @functools.partial(jax.jit, static_argnames="causal")
    def both(causal):
        fn = memorization.masked_attention(valid)
        got = model.prompted(params, padded, x, causal=causal, attention_fn=fn)
        return got, model.prompted(params, short, x, causal=causal)

    for causal in (False, True):
        np.testing.assert_allclose(*both(causal), atol=1e-5)


def test_memorize_reaches_eps_on_one_pair():
    params = model.init_params(jax.random.key(0), 8, d_ff=32)
    x = jax.random.uniform(jax.random.key(1), (1, 1, 8))
    y = jax.random.uniform(jax.random.key(2), (1, 1, 1))
    untuned = jax.jit(model.prompted)(
        params, jax.random.uniform(jax.random.key(4), (1, 8)) - 0.5, x
    )
    assert float(jnp.abs(untuned[..., :1] - y).max()) > 0.05  # the task is not solved for free
    kw = dict(eps=0.05, lr=0.1, restarts=1, key=jax.random.key(3), scale="1/sqrt(d)")
    ok, best = memorization.memorize(params, x, y, [1, 2], steps=400, check_every=200, **kw)
    assert ok.all() and (best < 0.05).all()


def test_prompt_share_of_attention_is_a_monotone_gradient_when_values_are_tied_to_keys():
    # F_pre = identity, W_K and W_V square: v_p = k_p M, M = W_K^{-1} W_V, so the prompt-only
    # attention output is (1/s) grad log Z_P(q) M, a monotone map of the query.
    params = model.init_params(jax.random.key(0), 5, d_ff=8)
    at, s = params["attn"], 5**-0.5
    prompt = 3.0 * jax.random.normal(jax.random.key(1), (7, 5))
    k, v = prompt @ at["wk"], prompt @ at["wv"]
    q = jax.random.normal(jax.random.key(2), (40, 5))
    a = model.exact_attention(q, k, v, s)
    m = jnp.linalg.solve(at["wk"], at["wv"])
    g = a @ jnp.linalg.inv(m)
    log_z = lambda qi: jax.nn.logsumexp(s * k @ qi)  # noqa: E731
    np.testing.assert_allclose(g, jax.vmap(jax.grad(log_z))(q) / s, rtol=2e-3, atol=2e-4)
    x = q @ jnp.linalg.inv(at["wq"])  # inputs whose queries are q
    bad, pairs = memorization.monotone_violations(params, x, a)
    assert pairs == 40 * 39 // 2 and bad == 0
    bad_flipped, _ = memorization.monotone_violations(params, x, -a)  # the reversed field
    assert bad_flipped > pairs // 2


def test_needed_attention_recovers_a_reachable_target():
    params = model.init_params(jax.random.key(0), 6, d_ff=24)
    x = jax.random.uniform(jax.random.key(1), (3, 2, 6))
    a_true = 0.5 * jax.random.normal(jax.random.key(2), (3, 2, 6))
    h = x + a_true @ params["attn"]["wo"]
    y = h + model.mlp(params["ffn"], h)
    a, sup = memorization.needed_attention(params, x, y, steps=2000, lr=0.05)
    assert sup < 2e-3 and a.shape == a_true.shape


@pytest.mark.slow
def test_memorization_run_writes_all_parts(tmp_path):
    from configs import prompt_memorization as cfg_mod
    from prompt_theory.experiments import memorization as exp

    c = cfg_mod.get_config("quick")
    c.update(dict(sweep_N=(2,), lengths=(1, 2), steps=40, check_every=20, calc_eps=(0.25,)))
    c.update(dict(all_sweep_N=(1,), all_seeds=1, all_lengths=(1, 2), all_steps=40))
    c.update(dict(all_reach_steps=50, calc_inv_eps=(4, 8), calc_dL=(1, 2)))
    c.calc_built = ((1, 2, 2),)
    m = exp.run(c, str(tmp_path))
    (r,) = m["all_coordinates"]
    assert r["d_out"] == c.base_d and r["pairs"] == 1 and set(r["best_sup_err"]) == {"1", "2"}
    (b,) = m["bounds"]["built"]
    assert b["prompt_len"] == b["formula"] == 8 and b["sup_err"] <= b["eps_reached"]
    for name in ("metrics.json", "report.md", "capacity.png", "capacity_bounds.png"):
        assert (tmp_path / name).stat().st_size > 0
