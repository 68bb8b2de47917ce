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
