"""Plain retrieve/energy API, and parity of ``Hopfield`` with the hflayers forward formulas."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outeffhop import hopfield, memory
from outeffhop.layers import Hopfield


def _rand(key, *shape):
    return jax.random.normal(jax.random.key(key), shape)


# ---------------------------------------------------------------- plain API


@pytest.mark.parametrize(
    ("normalizer", "steps"), [pytest.param("softmax", 0, marks=pytest.mark.slow), ("softmax1", 2)]
)
def test_retrieve_equals_repeated_hopfield_update_per_head(normalizer, steps):
    states, stored = _rand(0, 1, 2, 4, 8), _rand(1, 1, 2, 6, 8)
    betas = (0.5, 2.0)  # one per head, heads on axis 1

    @jax.jit  # one compile instead of many eager ops
    def both(states, stored):
        out = memory.retrieve(
            states, stored, beta=jnp.array(betas), normalizer=normalizer,
            update_steps_max=steps, update_steps_eps=1e-30,
        )  # fmt: skip
        want = [
            hopfield.hopfield_retrieve(states[0, h], stored[0, h], b, normalizer, steps=steps + 1)
            for h, b in enumerate(betas)
        ]
        return out[0], jnp.stack(want)

    out, want = both(states, stored)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_energy_matches_pure_formula_per_head():
    states, stored = _rand(2, 2, 4, 8), _rand(3, 2, 6, 8)
    betas = (0.3, 4.0)

    @jax.jit
    def both(states, stored):
        pairs = []
        for normalizer in ("softmax", "softmax1"):
            e = memory.energy(states, stored, beta=jnp.array(betas), normalizer=normalizer)
            want = [
                hopfield.hopfield_energy(states[h], stored[h], b, normalizer)
                for h, b in enumerate(betas)
            ]
            pairs.append((e, jnp.stack(want)))
        return pairs

    for e, want in both(states, stored):
        assert e.shape == (2, 4)
        np.testing.assert_allclose(e, want, rtol=1e-5, atol=1e-5)


@functools.partial(jax.jit, static_argnames="normalizer")
def _largest_energy_increase(states, stored, beta, normalizer):
    x, e, worst = states, memory.energy(states, stored, beta=beta, normalizer=normalizer), -1.0
    for _ in range(4):
        x = memory.retrieve(x, stored, beta=beta, normalizer=normalizer)
        e_new = memory.energy(x, stored, beta=beta, normalizer=normalizer)
        worst, e = jnp.maximum(worst, jnp.max(e_new - e)), e_new
    return worst


@pytest.mark.slow  # the convergence study's tiny run asserts monotone energy by default
@given(
    seed=st.integers(0, 1000),
    beta=st.floats(0.1, 8.0),
    normalizer=st.sampled_from(["softmax", "softmax1"]),
)
def test_energy_never_increases_along_retrieval(seed, beta, normalizer):
    states, stored = _rand(seed, 2, 3, 5), _rand(seed + 1, 2, 7, 5)
    assert float(_largest_energy_increase(states, stored, beta, normalizer)) <= 1e-5


@pytest.mark.slow  # the layer tests check softmax1 mass < 1 and masked zeros by default
def test_softmax1_rows_sum_below_one_and_masked_entries_zero():
    states, stored = _rand(4, 2, 3, 8), _rand(5, 2, 5, 8)
    mask = jnp.array([True, False, True, True, False])
    xi, _ = memory.associate(states, stored, beta=1.0, normalizer="softmax1", mask=mask)
    assert float(jnp.max(xi.sum(-1))) < 1.0
    np.testing.assert_array_equal(xi[..., ~np.asarray(mask)], 0.0)
    xi0, _ = memory.associate(states, stored, beta=1.0, mask=jnp.zeros(5, bool))
    np.testing.assert_array_equal(xi0, 0.0)


@pytest.mark.slow  # the layer's unbounded-iteration test covers update_steps_max=None
@pytest.mark.parametrize("wrap", [jax.jit, lambda f: f], ids=["jit", "eager"])
def test_iteration_stops_at_tolerance_and_counts_steps(wrap):
    states, stored = _rand(6, 4, 2, 8), _rand(7, 4, 6, 8)
    beta = jnp.array([0.2, 1.0, 3.0, 8.0])  # one per leading index

    @wrap
    def run(states, stored):
        return memory.associate(
            states, stored, beta=beta, update_steps_max=None, update_steps_eps=1e-5
        )

    xi, steps = run(states, stored)
    assert steps.shape == (4,) and bool(jnp.all(steps >= 1))
    xi_next, _ = memory.associate(xi @ stored, stored, beta=beta)
    np.testing.assert_allclose(xi_next, xi, atol=1e-4)  # a fixed point of the iteration
    capped, steps2 = memory.associate(states, stored, beta=beta, update_steps_max=2)
    assert bool(jnp.all(steps2 <= 2))


@pytest.mark.slow  # the layer's gradient test covers it in the default run
def test_finite_update_steps_are_differentiable():
    states, stored = _rand(8, 3, 8), _rand(9, 5, 8)
    g = jax.grad(lambda s: memory.retrieve(s, stored, beta=2.0, update_steps_max=3).sum())(states)
    assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(normalizer="sparsemax"), "normalizer"),
        (dict(update_steps_max=-1), "update_steps_max"),
        (dict(update_steps_eps=0.0), "update_steps_eps"),
        (dict(beta=-1.0), "beta"),
    ],
)
def test_plain_api_bad_input_names_the_argument(kwargs, field):
    kwargs = {"beta": 1.0, **kwargs}
    with pytest.raises(ValueError, match=field):
        memory.associate(_rand(0, 2, 4), _rand(1, 3, 4), **kwargs)
    with pytest.raises(ValueError, match="pattern size"):
        memory.retrieve(_rand(0, 2, 4), _rand(1, 3, 5), beta=1.0)
    with pytest.raises(ValueError, match="normalizer"):
        memory.energy(_rand(0, 2, 4), _rand(1, 3, 4), beta=1.0, normalizer="clipped")


# ---------------------------------------------------------------- parity with hflayers


def _layer_norm(x, p, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # torch: biased variance
    y = (x - mu) / np.sqrt(var + eps)
    return y if p is None else y * p["scale"] + p["bias"]


def _linear(x, p):
    """torch F.linear(x, W, b) = x W^T + b, with W = kernel^T for a Flax Dense kernel."""
    w = p["kernel"].T
    return x @ w.T + p["bias"]


def hflayers_reference(params, stored, state, proj, *, num_heads, head_dim, scaling,
                       update_steps_max=0, update_steps_eps=1e-4, add_zero_association=False,
                       connected=False, hopfield_norm=False, key_padding_mask=None,
                       attn_mask=None):  # fmt: skip
    """hflayers' Hopfield forward (hflayers/__init__.py + functional.hopfield_core_forward),
    transcribed in float64 numpy, time-first [L, B, D]; masks True = ignore, as in hflayers."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    stored, state, proj = (
        np.swapaxes(np.asarray(a, np.float64), 0, 1) for a in (stored, state, proj)
    )
    stored = _layer_norm(stored, p.get("norm_stored"))
    state = _layer_norm(state, p.get("norm_state"))
    proj = _layer_norm(proj, p.get("norm_projection"))
    tgt_len, bsz = state.shape[:2]
    q = _linear(state, p["q_proj"])
    k = _linear(stored, p["k_proj"])
    v = _linear(_linear(proj, p["k_proj"]) if connected else proj, p["v_proj"])
    if hopfield_norm:
        q = _layer_norm(q.reshape(-1, head_dim), p.get("norm_hopfield")).reshape(q.shape)
        k = _layer_norm(k.reshape(-1, head_dim), p.get("norm_hopfield")).reshape(k.shape)
    q = q.reshape(tgt_len, bsz * num_heads, head_dim).transpose(1, 0, 2)
    k = k.reshape(-1, bsz * num_heads, head_dim).transpose(1, 0, 2)
    v = v.reshape(v.shape[0], bsz * num_heads, -1).transpose(1, 0, 2)
    if add_zero_association:
        k = np.concatenate([k, np.zeros_like(k[:, :1])], 1)
        v = np.concatenate([v, np.zeros_like(v[:, :1])], 1)
        if key_padding_mask is not None:
            key_padding_mask = np.pad(key_padding_mask, [(0, 0), (0, 1)])
        if attn_mask is not None:
            attn_mask = np.pad(attn_mask, [(0, 0), (0, 1)])
    src_len = k.shape[1]
    steps_max = np.full(num_heads, update_steps_max)
    xi, xi_old, step = None, None, 0
    active = np.ones((bsz * num_heads, 1, 1), bool)
    while active.any():
        if step > 0:
            q = np.where(active, xi @ k, q)
        w = (q * scaling) @ k.transpose(0, 2, 1)
        if attn_mask is not None:
            w = np.where(attn_mask[None], -np.inf, w)
        if key_padding_mask is not None:
            w = w.reshape(bsz, num_heads, tgt_len, src_len)
            w = np.where(key_padding_mask[:, None, None, :], -np.inf, w)
            w = w.reshape(bsz * num_heads, tgt_len, src_len)
        e = np.exp(w - w.max(-1, keepdims=True))
        new = e / e.sum(-1, keepdims=True)
        xi = new if xi is None else np.where(active, new, xi)
        xi_active = xi.reshape(bsz, num_heads, tgt_len, src_len)
        heads = step < steps_max
        if xi_old is not None:
            heads &= np.sqrt(((xi_old - xi_active) ** 2).sum((2, 3))).max(0) > update_steps_eps
        active = np.tile(heads[:, None, None], (bsz, 1, 1))
        xi_old = xi_active
        step += 1
    out = (xi @ v).transpose(1, 0, 2).reshape(tgt_len, bsz, -1)
    out = _linear(out, p["out_proj"])
    return np.swapaxes(out, 0, 1), xi.reshape(bsz, num_heads, tgt_len, src_len)


PARITY_CASES = {
    "default": dict(),
    # Everything at once: sizes, connected values, Hopfield-space norm, zero association,
    # masks, early stopping per head, time-first inputs.
    "all_features": dict(
        hidden_size=3,
        pattern_size=5,
        output_size=7,
        stored_pattern_size=6,
        pattern_projection_size=6,
        pattern_projection_as_connected=True,
        normalize_hopfield_space=True,
        normalize_hopfield_space_affine=True,
        add_zero_association=True,
        update_steps_max=6,
        update_steps_eps=2e-2,
        scaling=1.5,
        batch_first=False,
    ),  # fmt: skip
    "multi_step": dict(update_steps_max=3, update_steps_eps=1e-6, scaling=2.0),
    "early_stop": dict(update_steps_max=6, update_steps_eps=2e-2, scaling=1.5),
    "sizes": dict(
        hidden_size=3,
        pattern_size=5,
        output_size=7,
        stored_pattern_size=6,
        pattern_projection_size=9,
    ),  # fmt: skip
    "zero_assoc_masks": dict(add_zero_association=True, update_steps_max=2),
    "connected_hnorm": dict(
        pattern_projection_as_connected=True,
        normalize_hopfield_space=True,
        normalize_hopfield_space_affine=True,
        stored_pattern_size=6,
        pattern_projection_size=6,
    ),  # fmt: skip
    "no_affine_time_first": dict(normalize_state_pattern_affine=False, batch_first=False),
}
_FAST_CASES = ("default", "all_features")


@pytest.mark.parametrize(
    "case",
    [c if c in _FAST_CASES else pytest.param(c, marks=pytest.mark.slow) for c in PARITY_CASES],
)
def test_hopfield_matches_hflayers_forward(case):
    kw = dict(input_size=8, num_heads=2, normalizer="softmax", **PARITY_CASES[case])
    b, s, l = 2, 5, 4
    ks = kw.get("stored_pattern_size", 8)
    vs = kw.get("pattern_projection_size", 8)
    stored, state, proj = _rand(10, b, s, ks), _rand(11, b, l, 8), _rand(12, b, s, vs)
    model = Hopfield(**kw)
    head_dim = kw.get("hidden_size", 4)
    tf = not kw.get("batch_first", True)
    args = tuple(jnp.swapaxes(a, 0, 1) if tf else a for a in (stored, state, proj))
    params = model.clone(update_steps_max=0).init(jax.random.key(0), args)["params"]
    # Perturb every weight, bias and LayerNorm affine so that none is trivially 0 or 1.
    params = jax.tree_util.tree_map_with_path(
        lambda path, a: a + 0.3 * _rand(len(str(path)), *a.shape), params
    )
    pad = np.zeros((b, s), bool)
    pad[1, -2:] = True  # hflayers: True = ignore
    causal = np.triu(np.ones((l, s), bool), 1)
    masks = case in ("zero_assoc_masks", "all_features")
    apply = jax.jit(model.apply, static_argnames="return_association")
    out, xi = apply(
        {"params": params}, args,
        stored_pattern_mask=jnp.asarray(~pad) if masks else None,
        association_mask=jnp.asarray(~causal) if masks else None,
        return_association=True,
    )  # fmt: skip
    if tf:
        out = jnp.swapaxes(out, 0, 1)
    ref_out, ref_xi = hflayers_reference(
        params, stored, state, proj,
        num_heads=2, head_dim=head_dim, scaling=kw.get("scaling", head_dim**-0.5),
        update_steps_max=kw.get("update_steps_max", 0),
        update_steps_eps=kw.get("update_steps_eps", 1e-4),
        add_zero_association=kw.get("add_zero_association", False),
        connected=kw.get("pattern_projection_as_connected", False),
        hopfield_norm=kw.get("normalize_hopfield_space", False),
        key_padding_mask=pad if masks else None, attn_mask=causal if masks else None,
    )  # fmt: skip
    np.testing.assert_allclose(xi, ref_xi, atol=1e-5)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
