"""Hopfield, HopfieldPooling, HopfieldLayer: equivalences, masks, options and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop.nn.hopfield import Hopfield
from outeffhop.ops import hopfield as memory


def _rand(key, *shape):
    return jax.random.normal(jax.random.key(key), shape)


def _run(model, *args, variables=None, **kwargs):
    """Init (unless ``variables``) and apply; returns (variables, output).

    Eager on purpose: the tiny shapes repeat across tests, so JAX's per-op compile cache
    makes this much cheaper than one jit compile per test.
    """
    if variables is None:  # params do not depend on the update steps: init without a loop
        variables = model.clone(update_steps_max=0).init(jax.random.key(0), *args)
        # Scale the N(0, 0.02) kernels up so associations are peaked, not ~uniform: then
        # beta, the update steps and the masks visibly change the result.
        variables = jax.tree_util.tree_map_with_path(
            lambda p, a: a * 25.0 if "kernel" in jax.tree_util.keystr(p) else a, variables
        )
    return variables, model.apply(variables, *args, **kwargs)


X = _rand(1, 2, 5, 8)  # [B, L, D]


@pytest.mark.parametrize("steps", [0, 2])
def test_add_zero_association_equals_softmax1(steps):
    mask = jnp.array([[True] * 5, [True, True, True, False, False]])
    kw = dict(input_size=8, num_heads=2, update_steps_max=steps, update_steps_eps=1e-9)
    zero = Hopfield(normalizer="softmax", add_zero_association=True, **kw)
    one = Hopfield(normalizer="softmax1", **kw)
    v, (out_z, xi_z) = _run(zero, X, stored_pattern_mask=mask, return_association=True)
    _, (out_1, xi_1) = _run(one, X, variables=v, stored_pattern_mask=mask, return_association=True)
    assert xi_z.shape[-1] == 6 and xi_1.shape[-1] == 5
    np.testing.assert_allclose(xi_z[..., :5], xi_1, atol=1e-6)
    np.testing.assert_allclose(out_z, out_1, atol=1e-6)


def test_softmax1_retrieves_less_mass_than_softmax():
    _, (_, xi_s) = _run(
        Hopfield(input_size=8, num_heads=2, normalizer="softmax"), X, return_association=True
    )
    _, (_, xi_1) = _run(Hopfield(input_size=8, num_heads=2), X, return_association=True)
    np.testing.assert_allclose(xi_s.sum(-1), 1.0, atol=1e-5)
    assert float(xi_1.sum(-1).max()) < 1.0


def test_masked_stored_patterns_do_not_matter():
    mask = jnp.array([[True, True, False, True, False]] * 2)
    assoc = jnp.tril(jnp.ones((5, 5), bool))  # causal association mask [L, S]
    model = Hopfield(input_size=8, num_heads=2)
    stored2 = X.at[:, 2].set(100.0).at[:, 4].set(-3.0)  # change only masked patterns
    kw = dict(stored_pattern_mask=mask, association_mask=assoc, return_association=True)
    v, (out, xi) = _run(model, (X, X, X), **kw)
    _, (out2, _) = _run(model, (stored2, X, stored2), variables=v, **kw)
    np.testing.assert_allclose(out, out2, atol=1e-5)
    np.testing.assert_array_equal(xi[..., [2, 4]], 0.0)
    np.testing.assert_array_equal(xi * ~assoc, 0.0)


@pytest.mark.slow  # the parity case all_features covers time-first inputs in the default run
def test_time_first_equals_batch_first():
    kw = dict(input_size=8, num_heads=4, update_steps_max=1)
    v, out = _run(Hopfield(**kw), X)
    _, out_t = _run(Hopfield(batch_first=False, **kw), jnp.swapaxes(X, 0, 1), variables=v)
    np.testing.assert_allclose(jnp.swapaxes(out_t, 0, 1), out, atol=1e-6)


def test_per_head_scaling_is_per_head_beta():
    kw = dict(return_association=True)
    v, (_, xi) = _run(Hopfield(input_size=8, num_heads=2, scaling=(0.3, 3.0)), X, **kw)
    for h, beta in enumerate((0.3, 3.0)):
        _, (_, xi_h) = _run(Hopfield(input_size=8, num_heads=2, scaling=beta), X, variables=v, **kw)
        np.testing.assert_allclose(xi[:, h], xi_h[:, h], atol=1e-6)


def test_per_head_update_steps():
    kw = dict(return_association=True)
    both = Hopfield(input_size=8, num_heads=2, update_steps_max=(0, 3), update_steps_eps=1e-9)
    v, (_, xi) = _run(both, X, **kw)
    for h, steps in enumerate((0, 3)):
        one = Hopfield(input_size=8, num_heads=2, update_steps_max=steps, update_steps_eps=1e-9)
        _, (_, xi_h) = _run(one, X, variables=v, **kw)
        np.testing.assert_allclose(xi[:, h], xi_h[:, h], atol=1e-6)


def test_static_patterns_reduce_to_plain_retrieve():
    static = dict(
        stored_pattern_as_static=True, state_pattern_as_static=True,
        pattern_projection_as_static=True, disable_out_projection=True,
        normalize_stored_pattern=False, normalize_stored_pattern_affine=False,
        normalize_state_pattern=False, normalize_state_pattern_affine=False,
        normalize_pattern_projection=False, normalize_pattern_projection_affine=False,
    )  # fmt: skip
    model = Hopfield(num_heads=1, scaling=2.0, update_steps_max=3, **static)
    v, out = _run(model, X)
    assert v == {} or not jax.tree.leaves(v)  # no parameters at all
    want = memory.retrieve(X, X, beta=2.0, update_steps_max=3)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_gradients_finite_through_iterations_and_masks():
    model = Hopfield(input_size=8, num_heads=2, update_steps_max=2, normalize_hopfield_space=True)
    mask = jnp.array([[True] * 5, [False] * 5])  # second batch row: nothing to associate
    v = model.init(jax.random.key(0), X)
    loss = lambda v: jnp.sum(model.apply(v, X, stored_pattern_mask=mask) ** 2)  # noqa: E731
    g = jax.jit(jax.grad(loss))(v)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(g))
    assert float(jnp.abs(g["params"]["q_proj"]["kernel"]).sum()) > 0


def test_unbounded_iteration_converges_and_backpropagates():
    model = Hopfield(input_size=8, num_heads=2, update_steps_max=None, update_steps_eps=1e-6)
    v, (out, xi) = _run(model, X, return_association=True)
    assert bool(jnp.all(jnp.isfinite(out)))
    # Implicit gradients through the fixed point = those of a long unrolled loop.
    unrolled = model.clone(update_steps_max=100, update_steps_eps=1e-9)

    def grads(m):
        return jax.jit(jax.grad(lambda v: jnp.sum(m.apply(v, X) ** 2)))(v)

    g, g_unrolled = grads(model), grads(unrolled)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_unrolled), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4 * float(jnp.max(jnp.abs(b))) + 1e-6)


def test_dropout_only_when_not_deterministic():
    model = Hopfield(input_size=8, num_heads=2, dropout=0.5)
    v, out = _run(model, X)
    _, same = _run(model, X, variables=v, deterministic=True)
    np.testing.assert_array_equal(out, same)
    drop = model.apply(v, X, deterministic=False, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(drop, out)


def test_clipped_normalizers_and_activation_and_sow():
    for norm in ("clipped", "clipped_softmax1"):
        model = Hopfield(
            input_size=8, num_heads=2, normalizer=norm, gamma=-0.1, zeta=1.0,
            association_activation="relu",
        )  # fmt: skip
        v, out = _run(model, X)
        assert float(out.min()) >= 0.0
        _, inter = model.apply(v, X, mutable=["intermediates"])
        assert inter["intermediates"]["association"][0].shape == (2, 2, 5, 5)


def test_concat_bias_pattern_adds_one_learned_pattern():
    model = Hopfield(input_size=8, num_heads=2, concat_bias_pattern=True)
    v, (out, xi) = _run(model, X, return_association=True)
    assert xi.shape[-1] == 6 and v["params"]["bias_k"].shape == (2, 1, 4)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(input_size=10, num_heads=4), "num_heads"),
        (dict(input_size=8, update_steps_max=-1), "update_steps_max"),
        (dict(input_size=8, normalizer="sparsemax"), "normalizer"),
        (dict(input_size=8, normalizer="clipped"), "gamma"),
        (dict(input_size=8, num_heads=2, scaling=(1.0, 2.0, 3.0)), "scaling"),
        (dict(input_size=8, update_steps_eps=0.0), "update_steps_eps"),
        (dict(input_size=8, dropout=1.0), "dropout"),
        (dict(input_size=8, association_activation="nope"), "association_activation"),
        (dict(hidden_size=4), "input_size"),
        (dict(input_size=8, stored_pattern_size=6, pattern_projection_as_connected=True), "size"),
    ],
)
def test_bad_configuration_raises_at_construction(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Hopfield(**kwargs)


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


_FAST_CASES = ("default",)  # the others: -m slow


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


@pytest.mark.parametrize("scaling", [0.3, (0.3, 1.7)])
def test_float64_scaling_is_exact(scaling):
    """An explicit scaling (scalar or per head) stays float64: no float32 round trip."""
    with jax.enable_x64(True):
        f64 = jnp.float64
        x = jax.random.normal(jax.random.key(5), (2, 5, 8), f64)
        model = Hopfield(input_size=8, num_heads=2, normalizer="softmax", scaling=scaling,
                         dtype=f64, param_dtype=f64)  # fmt: skip
        params = model.init(jax.random.key(0), x)["params"]
        params = jax.tree.map(
            lambda a: a + 0.3 * jax.random.normal(jax.random.key(1), a.shape, f64), params
        )
        out = model.apply({"params": params}, x)
        assert out.dtype == f64
        beta = np.asarray(scaling, np.float64)
        if beta.ndim:  # per head: hflayers' rows are b * H + h
            beta = np.tile(beta, 2)[:, None, None]
        ref, _ = hflayers_reference(params, x, x, x, num_heads=2, head_dim=4, scaling=beta)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
