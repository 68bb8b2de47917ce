"""Hopfield energy and retrieval: gradient identity, monotone energy, fixed points, no-op memory."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

from outeffhop.ops import hopfield
from outeffhop.ops import hopfield as memory
from outeffhop.ops.hopfield import hopfield_energy, hopfield_fixed_point, hopfield_retrieve

NORMS = ("softmax", "softmax1")


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


def _rand(key, *shape):
    return jax.random.normal(jax.random.key(key), shape)


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
def test_energy_never_increases_along_batched_retrieval(seed, beta, normalizer):
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


def _fixed_point_loss(normalizer, steps, mask=None, eps=1e-13):
    """sum(w * a) of the association after ``steps`` updates (None: the fixed point)."""
    w = jax.random.normal(jax.random.key(3), (2, 3, 5, 7), jnp.float64)

    def loss(x, xi, beta):
        a, _ = memory.associate(x, xi, beta=beta, normalizer=normalizer, update_steps_max=steps,
                                update_steps_eps=eps, mask=mask)  # fmt: skip
        return jnp.sum(w * a)

    return loss


def test_unbounded_iteration_and_its_adjoint_stop_at_the_cap(monkeypatch):
    """update_steps_max=None never spins forever: at a tolerance no float32 iteration meets,
    the forward loop stops at UNBOUNDED_STEPS_CAP updates and the adjoint loop ends too."""
    monkeypatch.setattr(hopfield, "UNBOUNDED_STEPS_CAP", 5)
    x = jax.random.normal(jax.random.key(0), (2, 4, 3))
    xi = jax.random.normal(jax.random.key(1), (2, 6, 3))

    def loss(xi):
        a, steps = memory.associate(x, xi, beta=0.3, update_steps_max=None, update_steps_eps=1e-30)
        return jnp.sum(a**2), steps

    (_, steps), g = jax.value_and_grad(loss, has_aux=True)(xi)
    np.testing.assert_array_equal(steps, 5)
    assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize(
    "normalizer", ["softmax1", pytest.param("softmax", marks=pytest.mark.slow)]
)
def test_fixed_point_gradient_is_the_unrolled_limit_and_finite_differences(normalizer):
    """Implicit (adjoint fixed point) gradients = unrolled gradients of a long fixed loop and
    central differences, in float64; the states get zero gradient (a* moves with xi, beta)."""
    with jax.enable_x64(True):
        f64 = jnp.float64
        x = jax.random.normal(jax.random.key(0), (2, 3, 5, 4), f64)
        xi = jax.random.normal(jax.random.key(1), (2, 3, 7, 4), f64)
        beta = jnp.asarray([[0.5], [0.8], [1.2]], f64).reshape(1, 3)  # per head
        mask = jax.random.uniform(jax.random.key(2), (2, 1, 5, 7)) > 0.2
        loss = jax.jit(_fixed_point_loss(normalizer, None, mask))
        implicit = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        unrolled = jax.jit(jax.grad(_fixed_point_loss(normalizer, 300, mask), argnums=(0, 1, 2)))
        g_imp, g_unr = implicit(x, xi, beta), unrolled(x, xi, beta)
        for a, b in zip(g_imp, g_unr, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(g_imp[0], 0.0)
        h = 1e-6
        for arg, g in ((1, g_imp[1]), (2, g_imp[2])):
            args = [x, xi, beta]
            d = jax.random.normal(jax.random.key(4 + arg), args[arg].shape, f64)
            plus, minus = list(args), list(args)
            plus[arg], minus[arg] = args[arg] + h * d, args[arg] - h * d
            fd = (loss(*plus) - loss(*minus)) / (2 * h)
            np.testing.assert_allclose(jnp.sum(g * d), fd, rtol=1e-6)


@pytest.mark.slow  # the float64 test covers the implicit gradient in the default run
def test_fixed_point_gradient_under_jit_and_vmap():
    states, stored = _rand(6, 3, 4, 8), _rand(7, 3, 6, 8)

    def loss(s, p):
        a, _ = memory.associate(s, p, beta=1.5, update_steps_max=None, update_steps_eps=1e-6)
        return jnp.sum(a[..., 0] ** 2)

    g = jax.jit(jax.vmap(jax.grad(loss, argnums=1)))(states, stored)
    g_unrolled = jax.vmap(jax.grad(lambda s, p: jnp.sum(memory.associate(
        s, p, beta=1.5, update_steps_max=60, update_steps_eps=1e-9)[0][..., 0] ** 2),
        argnums=1))(states, stored)  # fmt: skip
    np.testing.assert_allclose(g, g_unrolled, atol=1e-4)


# ------------------------------------------------------------- theory: bounds against brute force


def _sphere(rng, n, d, radius):
    g = rng.normal(size=(n, d))
    return radius * g / np.linalg.norm(g, axis=1, keepdims=True)


def _one_step(x, xi, beta, normalizer):
    """Numpy reference of one update, float64."""
    s = beta * xi @ x
    w = np.exp(s - s.max())
    z = w.sum() + (np.exp(-s.max()) if normalizer == "softmax1" else 0.0)
    return (w / z) @ xi


@pytest.mark.parametrize("normalizer", NORMS)
def test_stationarity_is_the_energy_gradient_norm_and_vanishes_at_fixed_points(normalizer):
    x, xi = _instance(m=6, d=4, batch=(5,), seed=3)
    grad = jax.vmap(jax.grad(lambda s: memory.energy(s, xi, beta=2.0, normalizer=normalizer)))(x)
    got = memory.stationarity(x, xi, beta=2.0, normalizer=normalizer)
    np.testing.assert_allclose(got, np.linalg.norm(grad, axis=-1), rtol=1e-4, atol=1e-6)
    assert float(got.min()) > 1e-2  # random states are not stationary
    x_star, _ = memory.fixed_point(x, xi, beta=2.0, normalizer=normalizer, tol=1e-7)
    assert float(memory.stationarity(x_star, xi, beta=2.0, normalizer=normalizer).max()) < 1e-5


def test_softmax1_update_is_softmax_update_scaled_by_memory_mass():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n, d = rng.integers(2, 8), rng.integers(2, 6)
        xi, x, beta = rng.normal(size=(n, d)), rng.normal(size=d), rng.uniform(0.1, 5.0)
        s = np.exp(beta * xi @ x).sum()
        mass = memory.memory_mass(
            jnp.asarray(x, jnp.float32), jnp.asarray(xi, jnp.float32), beta=beta
        )
        np.testing.assert_allclose(mass, s / (1 + s), rtol=1e-5)
        np.testing.assert_allclose(
            _one_step(x, xi, beta, "softmax1"),
            s / (1 + s) * _one_step(x, xi, beta, "softmax"),
            rtol=1e-10,
        )
        t1 = memory.update(jnp.asarray(x, jnp.float32), jnp.asarray(xi, jnp.float32), beta=beta)
        np.testing.assert_allclose(t1, _one_step(x, xi, beta, "softmax1"), rtol=2e-4, atol=1e-5)


def test_separation_matches_pairwise_brute_force():
    rng = np.random.default_rng(1)
    xi = rng.normal(size=(2, 7, 3))  # leading batch dim
    got = np.asarray(memory.separation(jnp.asarray(xi, jnp.float32)))
    for b in range(2):
        for i in range(7):
            others = [xi[b, i] @ xi[b, j] for j in range(7) if j != i]
            np.testing.assert_allclose(got[b, i], xi[b, i] @ xi[b, i] - max(others), rtol=1e-5)
    assert np.isinf(float(memory.separation(jnp.ones((1, 3)))[0]))


@pytest.mark.parametrize("normalizer", NORMS)
def test_retrieval_error_bound_holds_on_random_small_cases(normalizer):
    """Brute force: the one-step error of every query stays below the bound, and the bound is
    informative (below the trivial 2M + M) on a good share of the cases."""
    rng = np.random.default_rng(2)
    informative, checked = 0, 0
    for _ in range(300):
        n, d = int(rng.integers(2, 9)), int(rng.integers(2, 7))
        radius, beta = rng.uniform(0.5, 3.0), rng.uniform(0.2, 30.0)
        xi = _sphere(rng, n, d, radius)
        i = int(rng.integers(n))
        x = xi[i] + rng.uniform(0.0, 0.3) * radius * _sphere(rng, 1, d, 1.0)[0]
        err = np.linalg.norm(_one_step(x, xi, beta, normalizer) - xi[i])
        delta = float(memory.separation(jnp.asarray(xi, jnp.float32))[i])
        bound = float(
            memory.retrieval_error_bound(
                delta, beta, n, radius, np.linalg.norm(x - xi[i]), normalizer=normalizer
            )
        )
        assert err <= bound * (1 + 1e-4) + 1e-6, (err, bound, n, d, beta)
        informative += bound < radius
        checked += 1
    assert informative > checked // 10


def test_retrieval_error_bound_is_tight_for_two_patterns_at_large_beta():
    """x = xi_1 with one other pattern: error = p_2 ||xi_2 - xi_1|| with p_2 = 1 / (1 + e^(b D));
    the bound 2 M e^(-b D) is off by ||xi_2 - xi_1|| / (2 M) only."""
    xi = np.array([[1.0, 0.0], [0.0, 1.0]])
    for beta in (5.0, 10.0, 20.0):
        err = np.linalg.norm(_one_step(xi[0], xi, beta, "softmax") - xi[0])
        bound = float(memory.retrieval_error_bound(1.0, beta, 2, 1.0, 0.0))
        np.testing.assert_allclose(err / bound, np.sqrt(2) / 2, rtol=1e-2)


def test_softmax1_one_step_error_exceeds_softmax_exactly_when_the_condition_holds():
    """||c T - xi||^2 - ||T - xi||^2 = (1 - c) (2 T.xi - (1 + c) ||T||^2), c = S / (1 + S): the
    Softmax_1 error is the larger one iff 2 T.xi >= (1 + c) ||T||^2; a failed retrieval
    (T near another pattern) can violate it, so it is not 'never smaller'."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        n, d = int(rng.integers(2, 6)), int(rng.integers(2, 5))
        xi, beta = _sphere(rng, n, d, rng.uniform(0.3, 2.0)), rng.uniform(0.1, 10.0)
        i = int(rng.integers(n))
        x = xi[i] + 0.5 * rng.normal(size=d)
        t0, t1 = _one_step(x, xi, beta, "softmax"), _one_step(x, xi, beta, "softmax1")
        s = np.exp(beta * xi @ x).sum()
        c = s / (1 + s)
        larger = np.linalg.norm(t1 - xi[i]) >= np.linalg.norm(t0 - xi[i])
        assert larger == (2 * t0 @ xi[i] >= (1 + c) * t0 @ t0)
    xi = np.array([[1.0, 0.0], [0.0, 1.0]])  # query at pattern 1, target pattern 0
    x = np.array([0.0, 1.0])
    e0 = np.linalg.norm(_one_step(x, xi, 1.0, "softmax") - xi[0])
    e1 = np.linalg.norm(_one_step(x, xi, 1.0, "softmax1") - xi[0])
    assert e1 < e0


def test_lambert_w_and_ramsauer_capacity_examples():
    from scipy.special import lambertw

    z = np.array([0.0, 0.1, 1.0, np.e, 50.0, 1e5])
    np.testing.assert_allclose(memory.lambert_w0(z), np.real(lambertw(z)), rtol=1e-5)
    # The two worked examples printed with the theorem: c = 3.1546 (beta 1, K 3, d 20,
    # p 0.001) and c = 1.3718 (beta 1, K 1, d 75, p 0.001).
    for d, k, c_paper in ((20, 3.0, 3.1546), (75, 1.0, 1.3718)):
        log2_n, c, _ = memory.capacity_bound(d, 1.0, k, 0.001)
        np.testing.assert_allclose(c, c_paper, rtol=1e-4)
        np.testing.assert_allclose(2.0**log2_n, np.sqrt(0.001) * c ** ((d - 1) / 4), rtol=1e-4)
    # Fixed beta and K: log2 N_bound grows with d (c grows with d here).
    logs = [float(memory.capacity_bound(d, 1.0, 3.0, 0.05)[0]) for d in (8, 12, 16, 20)]
    assert all(b > a for a, b in zip(logs, logs[1:], strict=False))


def test_separation_threshold_formula():
    got = memory.separation_threshold(2.0, 10, 1.5)
    np.testing.assert_allclose(got, 2 / 20 + np.log(2 * 9 * 10 * 2 * 2.25) / 2, rtol=1e-6)
