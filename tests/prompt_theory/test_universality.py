"""The explicit universal construction: error bound, one set of weights for many f, ids."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_theory import model
from prompt_theory import universality as U
from prompt_theory.experiments import universality as E


@pytest.fixture(scope="module")
def con12():
    return U.build(1, 2, 0.25)


@pytest.fixture(scope="module")
def con22():
    return U.build(2, 2, 1 / 3)


def _inputs(con, n=128, seed=0):
    x = jax.random.uniform(jax.random.key(seed), (n, con.L, con.d))
    edges = jnp.asarray(U._thresholds(con.G, con.delta))  # exact boundaries go to the lower cell
    x = x.at[0].set(0.0).at[1].set(1.0)
    if edges.size:
        x = x.at[2].set(edges[0]).at[3].set(jnp.nextafter(edges[-1], 2.0))
    return x


@pytest.mark.parametrize("name", sorted(E.TARGETS))
def test_error_bound_on_random_inputs(con22, name):
    f, C = E.TARGETS[name](con22.d, con22.L, jax.random.key(1))
    prompt = U.make_prompt(con22, f)
    x = _inputs(con22)
    y = U.realise(con22, prompt, x)  # through model.prompted, all n = L_p + L rows
    err = float(jnp.abs(y - f(x)).max())
    assert err <= con22.error_bound(C)
    # the realised map is the grid table itself up to leak and rounding
    table = f(jnp.asarray(U.quantise(con22, x)))
    assert float(jnp.abs(y - table).max()) <= con22.leak_bound() + con22.fp_bound()


def test_rows_path_equals_model(con12):
    f, _ = E.TARGETS["random_cos"](1, 2, jax.random.key(2))
    prompt = U.make_prompt(con12, f)
    x = _inputs(con12, 16)
    full = jax.jit(model.prompted, static_argnames="scale")(
        con12.params, prompt, U.embed(con12, x), scale=1.0
    )
    np.testing.assert_allclose(
        U.realise_rows(con12, U.prompt_cache(con12, prompt), x), U.readout(con12, full), atol=1e-6
    )


def test_same_weights_two_targets_two_prompts(con12):
    f1, c1 = E.prefix_max(1, 2)
    f2, c2 = E.neighbour_product(1, 2)
    p1, p2 = U.make_prompt(con12, f1), U.make_prompt(con12, f2)
    assert p1.shape == p2.shape and not np.allclose(p1, p2)
    x = _inputs(con12)
    y1, y2 = U.realise(con12, p1, x), U.realise(con12, p2, x)
    assert float(jnp.abs(y1 - f1(x)).max()) <= con12.error_bound(c1)
    assert float(jnp.abs(y2 - f2(x)).max()) <= con12.error_bound(c2)
    assert float(jnp.abs(y1 - y2).max()) > con12.error_bound(c1) + con12.error_bound(c2)
    # the weights do not depend on the target: a rebuild gives identical params
    again = U.build(1, 2, 0.25)
    jax.tree.map(np.testing.assert_array_equal, again.params, con12.params)


@pytest.mark.parametrize("d, L, delta", [(1, 2, 0.25), (2, 2, 1 / 3), (1, 3, 0.5)])
def test_grid_id_map_injective_with_margin(d, L, delta):
    con = U.build(d, L, delta)
    dig = U.grid_digits(con)
    centres = jnp.asarray(U.cell_centres(con.G, con.delta)[dig], jnp.float32)
    cache = U.prompt_cache(con, U.make_prompt(con, lambda X: jnp.zeros_like(X)))
    ids = np.asarray(U.context_ids(con, cache, centres))  # [N, L]
    assert np.abs(ids - np.arange(con.n_cells)[:, None]).max() < 0.25  # margin: ids 1 apart
    assert len(np.unique(np.rint(ids[:, 0]))) == con.n_cells  # injective on the grid
    for l in range(L):  # the slot index is injective given the token's own cell
        k = U.compressed_index(dig, l, con.G)
        own = (dig[:, l] * con.G ** np.arange(d)).sum(-1)
        assert len(set(zip(own.tolist(), k.tolist(), strict=True))) == con.n_cells
        assert k.max() < con.slots


def test_quantiser_digits_exact(con22):
    x = _inputs(con22, 256, seed=3)
    z = U.embed(con22, x)
    z = z + jax.jit(model.mlp)(con22.params["ffn_pre"], z)
    want = (np.asarray(x)[..., None] > U._thresholds(con22.G, con22.delta)).sum(-1)
    np.testing.assert_array_equal(np.asarray(z[..., con22.region("dig")]), want)
    np.testing.assert_array_equal(np.asarray(z[..., con22.region("sq")])[..., 0], (want**2).sum(-1))


def test_delta_one_is_a_constant_map():
    con = U.build(1, 2, 1.0)
    prompt = U.make_prompt(con, lambda X: 0.5 - 0 * X)
    y = U.realise(con, prompt, _inputs(con, 8))
    np.testing.assert_allclose(y, 0.5, atol=1e-6)


@pytest.mark.parametrize("delta", [0.0, -0.1, 1.5, float("nan"), "0.1"])
def test_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        U.build(1, 2, delta)


def test_approximate_entry_point():
    f, c = E.TARGETS["mean_sin"](1, 1, None)
    con, prompt, bound = U.approximate(f, c, 0.125, 1, 1)
    x = _inputs(con, 64)
    assert float(jnp.abs(U.realise(con, prompt, x) - f(x)).max()) <= bound
    with pytest.raises(ValueError, match="lipschitz"):
        U.approximate(f, -1.0, 0.125, 1, 1)
    with pytest.raises(ValueError, match="callable"):
        U.approximate("sin", 1.0, 0.125, 1, 1)


def test_bad_target(con12):
    with pytest.raises(ValueError, match="callable"):
        U.make_prompt(con12, np.zeros(3))
    with pytest.raises(ValueError, match="value_bound"):
        U.make_prompt(con12, lambda X: 3.0 + X)
    with pytest.raises(ValueError, match="shape|finite"):
        U.make_prompt(con12, lambda X: X[..., 0])


def test_grid_too_large_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"cells.*GiB"):
        U.build(3, 4, 0.01)  # 100^12 cells: sized by arithmetic, never allocated
    p = U.plan(2, 3, 0.25)
    assert p["prompt_len"] == 3 * 4**6 and p["slots"] == 4**4
