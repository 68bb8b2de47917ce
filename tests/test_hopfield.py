"""Hopfield energy and retrieval: gradient identity, monotone energy, fixed points, no-op memory."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

from outeffhop.hopfield import hopfield_energy, hopfield_fixed_point, hopfield_retrieve

NORMS = ("softmax", "softmax1")


@pytest.fixture(autouse=True, scope="module")
def _cheap_compiles():
    """Tiny shapes: compiling dominates, so skip XLA's costly optimizations in this module."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def _instance(m=5, d=4, batch=(3,), seed=0):
    rng = np.random.default_rng(seed)
    patterns = jnp.asarray(rng.normal(size=(m, d)), jnp.float32)
    x = jnp.asarray(rng.normal(size=batch + (d,)), jnp.float32)
    return x, patterns


class HopfieldTest(chex.TestCase):
    @parameterized.parameters(*NORMS)
    def test_energy_matches_direct_formula(self, normalizer):
        x, patterns = _instance()
        beta = 0.7
        s = beta * np.asarray(x) @ np.asarray(patterns).T
        lse = np.log((normalizer == "softmax1") + np.exp(s).sum(-1))
        expected = -lse / beta + 0.5 * (np.asarray(x) ** 2).sum(-1)
        got = hopfield_energy(x, patterns, beta, normalizer)
        chex.assert_trees_all_close(got, expected, rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*NORMS)
    def test_grad_of_lse_term_is_retrieval_step(self, normalizer):
        x, patterns = _instance()
        beta = 1.3

        def lse_term(x):  # (1/beta) lse(beta * patterns @ x) = 0.5 x.x - E(x)
            return 0.5 * jnp.sum(x * x) - hopfield_energy(x, patterns, beta, normalizer)

        grads = self.variant(jax.vmap(jax.grad(lse_term)))(x)
        step = self.variant(lambda x: hopfield_retrieve(x, patterns, beta, normalizer))(x)
        chex.assert_trees_all_close(grads, step, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*NORMS)
    def test_fixed_point_converges_and_counts_steps(self, normalizer):
        x, patterns = _instance(batch=(2, 3))
        beta, tol = 2.0, 1e-5
        fp = self.variant(
            lambda x: hopfield_fixed_point(x, patterns, beta, normalizer, max_steps=200, tol=tol)
        )
        x_star, steps = fp(x)
        chex.assert_shape(steps, (2, 3))
        assert steps.dtype == jnp.int32
        assert bool(jnp.all((steps >= 1) & (steps < 200)))
        one_more = hopfield_retrieve(x_star, patterns, beta, normalizer)
        assert float(jnp.max(jnp.abs(one_more - x_star))) <= 10 * tol
        # The count equals a plain Python loop that stops each state at its first move <= tol.
        step = jax.jit(lambda s: hopfield_retrieve(s, patterns, beta, normalizer))
        state, count, done = x, np.zeros((2, 3), int), np.zeros((2, 3), bool)
        while not done.all():
            new = step(state)
            moved = np.asarray(jnp.max(jnp.abs(new - state), -1))
            state = jnp.where(done[..., None], state, new)
            count, done = count + ~done, done | (moved <= tol)
        np.testing.assert_array_equal(steps, count)
        chex.assert_trees_all_close(state, x_star, atol=1e-6)

    def test_fixed_point_step_budget(self):
        x, patterns = _instance()
        x0, steps0 = hopfield_fixed_point(x, patterns, 1.0, max_steps=0)
        np.testing.assert_array_equal(x0, x)
        np.testing.assert_array_equal(steps0, 0)
        x2, steps2 = hopfield_fixed_point(x, patterns, 1.0, max_steps=2, tol=0.0)
        np.testing.assert_array_equal(steps2, 2)
        chex.assert_trees_all_close(x2, hopfield_retrieve(x, patterns, 1.0, steps=2), atol=1e-6)

    def test_query_matching_nothing_retrieves_about_zero_only_with_softmax1(self):
        # Every stored pattern overlaps the query by <= -1.5: no memory matches it.
        _, patterns = _instance()
        patterns = patterns.at[:, 0].set(jnp.abs(patterns[:, 0]) + 0.5)
        x, beta = jnp.zeros((3, 4)).at[:, 0].set(jnp.array([-3.0, -4.0, -5.0])), 4.0
        assert bool(jnp.all(x @ patterns.T <= -1.5))
        null = hopfield_retrieve(x, patterns, beta, "softmax1")
        vanilla = hopfield_retrieve(x, patterns, beta, "softmax")
        assert float(jnp.max(jnp.abs(null))) < 0.1  # weights sum to <= 5 exp(-6)
        assert bool(jnp.all(vanilla[:, 0] >= 0.5))  # a convex combination of the patterns

    @pytest.mark.filterwarnings("ignore")
    @parameterized.parameters(jnp.float16, jnp.bfloat16)
    def test_low_precision_keeps_dtype(self, dtype):
        x, patterns = _instance()
        x = x.astype(dtype)
        x_star, _ = hopfield_fixed_point(x, patterns.astype(dtype), 1.0, max_steps=5)
        assert x_star.dtype == dtype
        assert hopfield_energy(x, patterns.astype(dtype), 1.0).dtype == dtype
        assert bool(jnp.all(jnp.isfinite(x_star)))


@jax.jit
def _energy_trajectory(x, patterns, beta):
    """Energies [normalizer, step, state] along 4 retrieval steps from x."""
    out = []
    for normalizer in NORMS:
        states = [x]
        for _ in range(4):
            states.append(hopfield_retrieve(states[-1], patterns, beta, normalizer))
        out.append(jnp.stack([hopfield_energy(s, patterns, beta, normalizer) for s in states]))
    return jnp.stack(out)


@given(
    shape=st.sampled_from([(1, 2), (3, 2), (5, 4)]),
    beta=st.floats(0.05, 20.0),
    scale=st.floats(0.1, 4.0),
    seed=st.integers(0, 2**16),
)
def test_energy_never_increases_along_retrieval(shape, beta, scale, seed):
    x, patterns = _instance(*shape, batch=(3,), seed=seed)
    energy = _energy_trajectory(x, scale * patterns, beta)
    assert bool(jnp.all(jnp.isfinite(energy)))
    slack = 1e-5 * (1.0 + jnp.abs(energy[:, :-1]))
    assert bool(jnp.all(energy[:, 1:] <= energy[:, :-1] + slack)), energy


def test_bad_input_names_the_argument():
    x, patterns = _instance()
    with pytest.raises(ValueError, match="normalizer must be one of softmax, softmax1"):
        hopfield_energy(x, patterns, 1.0, "clipped")
    with pytest.raises(ValueError, match="normalizer must be one of"):
        hopfield_retrieve(x, patterns, 1.0, "softmax_1")
    with pytest.raises(ValueError, match="beta must be a positive scalar"):
        hopfield_energy(x, patterns, -1.0)
    with pytest.raises(ValueError, match="beta must be a positive scalar"):
        hopfield_fixed_point(x, patterns, 0.0)
    with pytest.raises(ValueError, match="beta must be a positive scalar"):
        hopfield_retrieve(x, patterns, jnp.ones(3))
    with pytest.raises(ValueError, match=r"patterns must be \[M, d\]"):
        hopfield_retrieve(x, patterns[0], 1.0)
    with pytest.raises(ValueError, match=r"x must be \[..., d\]"):
        hopfield_retrieve(x[:, :3], patterns, 1.0)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        hopfield_retrieve(x, patterns, 1.0, steps=-1)
    with pytest.raises(ValueError, match="max_steps must be >= 0"):
        hopfield_fixed_point(x, patterns, 1.0, max_steps=-1)
