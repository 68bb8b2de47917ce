"""alpha-entmax by bisection: simplex, sparsity, limits and gradients."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from outeffhop.ops import entmax
from outeffhop.ops.entmax import entmax_bisect, gsh_alpha, sparsemax


def _z(shape=(4, 7), seed=0):
    return 2.0 * jax.random.normal(jax.random.key(seed), shape)


def test_on_simplex_and_sparse_rows():
    z = _z((64, 16))
    for alpha in (1.2, 1.5, 2.0):
        p = entmax_bisect(z, alpha)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
        assert float(p.min()) >= 0.0
        assert int((p == 0).sum()) > 0  # exact zeros appear
    # Higher alpha gives sparser outputs.
    nz = [int((entmax_bisect(z, a) > 0).sum()) for a in (1.1, 1.5, 2.0)]
    assert nz[0] >= nz[1] >= nz[2]


def test_limits_softmax_and_sparsemax():
    z = _z()
    chex.assert_trees_all_close(entmax_bisect(z, 2.0), sparsemax(z), atol=1e-5)
    chex.assert_trees_all_close(entmax_bisect(z, 1.001), jax.nn.softmax(z), atol=5e-3)


def test_axis_and_dtype():
    z = _z((3, 5, 6))
    a = entmax_bisect(z, 1.5, axis=1)
    b = jnp.moveaxis(entmax_bisect(jnp.moveaxis(z, 1, -1), 1.5), -1, 1)
    chex.assert_trees_all_close(a, b, atol=1e-6)
    assert entmax_bisect(z.astype(jnp.bfloat16), 1.5).dtype == jnp.bfloat16


@pytest.mark.parametrize("alpha", [1.3, 1.7])
def test_gradients_match_finite_differences(alpha):
    z = _z((3, 6), seed=2)
    w = jax.random.normal(jax.random.key(3), (3, 6))

    def f(z, a):
        return jnp.sum(w * entmax_bisect(z, a, n_iter=80))

    check_grads(lambda z: f(z, alpha), (z,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)
    ga = jax.grad(f, argnums=1)(z, alpha)
    eps = 1e-3
    fd = (f(z, alpha + eps) - f(z, alpha - eps)) / (2 * eps)
    np.testing.assert_allclose(ga, fd, rtol=3e-2, atol=3e-3)


def test_per_row_alpha_and_gsh_range():
    z = _z((2, 5))
    alpha = gsh_alpha(jnp.array([[-3.0], [3.0]]))
    assert bool(jnp.all((alpha > 1) & (alpha < 2)))
    p = entmax_bisect(z, alpha)
    chex.assert_trees_all_close(p[0], entmax_bisect(z[0], alpha[0, 0]), atol=1e-6)
    g = jax.grad(lambda a: entmax_bisect(z, gsh_alpha(a))[:, 0].sum())(jnp.zeros((2, 1)))
    assert g.shape == (2, 1) and bool(jnp.all(jnp.isfinite(g)))


def test_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        entmax_bisect(_z(), 1.0)


# ---------------------------------------------------------------- the GSH energy and updates


def _simplex_grid(step=1 / 300):
    """Every point of the 3-simplex on a grid of ``step`` [K, 3]."""
    k = int(round(1 / step))
    i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
    keep = i + j <= k
    p = np.stack([i[keep], j[keep], k - i[keep] - j[keep]], -1) / k
    return p


@pytest.mark.parametrize("alpha", [1.25, 1.5, 2.0])
def test_tsallis_negentropy_and_its_conjugate_against_brute_force(alpha):
    p = np.asarray(entmax_bisect(_z((5, 4), seed=4), 1.5))
    direct = ((p**alpha).sum(-1) - 1) / (alpha * (alpha - 1))
    np.testing.assert_allclose(entmax.tsallis_negentropy(p, alpha), direct, rtol=1e-4, atol=1e-6)
    grid = _simplex_grid()
    omega = ((grid**alpha).sum(-1) - 1) / (alpha * (alpha - 1))
    z = np.asarray(_z((6, 3), seed=5))
    brute = np.max(z @ grid.T - omega, axis=-1)  # max over the simplex grid <= the true max
    got = np.asarray(entmax.entmax_conjugate(jnp.asarray(z), alpha))
    assert np.all(brute - 1e-5 <= got) and np.all(got <= brute + 5e-3), (got, brute)


def test_conjugate_gradient_is_entmax_and_alpha_to_one_is_logsumexp():
    z = _z((4, 6), seed=6)
    g = jax.vmap(jax.grad(lambda r: entmax.entmax_conjugate(r, 1.6)))(z)
    chex.assert_trees_all_close(g, entmax_bisect(z, 1.6), atol=1e-5)
    p = entmax_bisect(z, 1.5)
    np.testing.assert_allclose(
        entmax.tsallis_negentropy(p, 1.0 + 1e-4), (p * jnp.log(p + 1e-30)).sum(-1), atol=1e-3
    )
    np.testing.assert_allclose(
        entmax.entmax_conjugate(z, 1.0 + 1e-3), jax.nn.logsumexp(z, -1), atol=2e-2
    )


def _gsh_case(seed, m=6, d=4, n=5):
    rng = np.random.default_rng(seed)
    xi = jnp.asarray(rng.normal(size=(m, d)) * rng.uniform(0.3, 3.0), jnp.float32)
    return jnp.asarray(rng.normal(size=(n, d)), jnp.float32), xi


def test_gsh_energy_matches_softmax_energy_near_alpha_one():
    from outeffhop.ops import hopfield

    x, xi = _gsh_case(0)
    soft = hopfield.energy(x, xi, beta=1.5, normalizer="softmax")
    np.testing.assert_allclose(entmax.gsh_energy(x, xi, beta=1.5, alpha=1.001), soft, atol=2e-2)


@pytest.mark.parametrize("alpha", [1.2, 1.5, 2.0])
def test_gsh_update_is_the_gradient_of_the_concave_term(alpha):
    x, xi = _gsh_case(1)

    def concave(s):  # (1/beta) Psi(beta xi s) = 0.5 s.s - E(s)
        return 0.5 * jnp.sum(s * s) - entmax.gsh_energy(s, xi, beta=2.0, alpha=alpha)

    grads = jax.jit(jax.vmap(jax.grad(concave)))(x)
    chex.assert_trees_all_close(grads, entmax.gsh_update(x, xi, beta=2.0, alpha=alpha), atol=1e-4)


@jax.jit
def _gsh_energy_rise(x, xi, beta, alpha):
    """Largest relative energy increase over 8 GSH updates (one compile for every case)."""

    def step(carry, _):
        x, e = carry
        x_new = entmax.gsh_update(x, xi, beta=beta, alpha=alpha)
        e_new = entmax.gsh_energy(x_new, xi, beta=beta, alpha=alpha)
        return (x_new, e_new), jnp.max((e_new - e) / (1 + jnp.abs(e)))

    e0 = entmax.gsh_energy(x, xi, beta=beta, alpha=alpha)
    return jnp.max(jax.lax.scan(step, (x, e0), length=8)[1])


def test_gsh_energy_never_increases_along_gsh_updates():
    """CCCP: E(T(x)) <= E(x) for every alpha in (1, 2] (40 random cases x 3 alphas x 8 steps)."""
    worst = max(
        float(_gsh_energy_rise(*_gsh_case(seed), 0.1 + 0.5 * seed, alpha))
        for seed in range(40)
        for alpha in (1.1, 1.5, 2.0)
    )
    assert worst <= 2e-5, worst


def test_gsh_retrieve_repeats_the_update_and_sparsemax_at_alpha_two():
    x, xi = _gsh_case(2)
    once = entmax.gsh_update(x, xi, beta=3.0, alpha=2.0)
    np.testing.assert_allclose(once, sparsemax(3.0 * x @ xi.T) @ xi, atol=1e-4)
    twice = entmax.gsh_update(once, xi, beta=3.0, alpha=2.0)
    chex.assert_trees_all_close(
        entmax.gsh_retrieve(x, xi, beta=3.0, alpha=2.0, steps=2), twice, atol=1e-5
    )
    chex.assert_trees_all_close(entmax.gsh_retrieve(x, xi, beta=3.0, alpha=2.0, steps=0), x)
    with pytest.raises(ValueError, match="steps"):
        entmax.gsh_retrieve(x, xi, beta=3.0, alpha=2.0, steps=-1)
    with pytest.raises(ValueError, match="alpha must be greater than 1"):
        entmax.gsh_energy(x, xi, beta=1.0, alpha=1.0)


def test_gsh_associate_iterates_in_association_space_per_head():
    q = _z((2, 2, 3, 4), seed=7)  # [B, H, L, d]
    k = _z((2, 2, 5, 4), seed=8)
    beta, alpha = jnp.array([0.5, 0.8]), jnp.array([1.3, 1.9])
    b, a = beta[:, None, None], alpha[:, None, None]
    a0 = entmax_bisect(b * jnp.einsum("bhld,bhsd->bhls", q, k), a)
    a1 = entmax_bisect(b * jnp.einsum("bhld,bhsd->bhls", a0 @ k, k), a)
    a2 = entmax_bisect(b * jnp.einsum("bhld,bhsd->bhls", a1 @ k, k), a)
    gsh = functools.partial(entmax.gsh_associate, q, k, beta=beta, alpha=alpha)
    chex.assert_trees_all_close(gsh(update_steps_max=0), a0, atol=1e-6)
    chex.assert_trees_all_close(gsh(update_steps_max=2, update_steps_eps=1e-9), a2, atol=1e-5)
    per_head = gsh(update_steps_max=np.array([1, 2]), update_steps_eps=1e-9)
    chex.assert_trees_all_close(per_head[:, 0], a1[:, 0], atol=1e-5)
    chex.assert_trees_all_close(per_head[:, 1], a2[:, 1], atol=1e-5)
    mask = jnp.ones((1, 1, 3, 5), bool).at[..., 2:].set(False).at[..., 1, :].set(False)
    am = gsh(update_steps_max=2, mask=mask)
    assert not bool(jnp.any(am[..., 2:])) and not bool(jnp.any(am[..., 1, :]))
    np.testing.assert_allclose(am[..., 0, :].sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="update_steps_max"):
        gsh(update_steps_max=-1)
