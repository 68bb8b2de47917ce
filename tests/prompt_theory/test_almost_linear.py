"""The almost-linear experiment: bound-chosen degrees, the float64 reference, a tiny run."""

import json
import math
import os

import jax
import ml_collections
import numpy as np
import pytest

from configs import almost_linear as config
from prompt_theory import model as pm
from prompt_theory.experiments import almost_linear as al
from prompt_theory.experiments.phase_transition import qkv_with_max_norm
from prompt_theory.poly_attention import poly_attention_rows, taylor_rel_error


@pytest.mark.parametrize("kind,eps", [("const", "1/n"), ("sqrt_log", "1/n^2"), ("const", 1e-3)])
def test_point_follows_the_theorem_regime(kind, eps):
    bound = 0.1 if kind == "sqrt_log" else 0.5
    c = ml_collections.ConfigDict(dict(c=0.5, eps=eps, bound_kind=kind, bound=bound))
    for p in (8, 13, 20):
        pt = al.point(p, c)
        n = 2**p
        k = {"1/n": 1, "1/n^2": 2}.get(eps)
        assert pt["eps"] == pytest.approx(n**-k if k else eps)
        assert pt["d"] == max(1, round(0.5 * p))
        want_b = (0.1**2 * math.log(n)) if kind == "sqrt_log" else 0.25
        assert pt["b"] == pytest.approx(want_b)
        g = pt["degree"]  # the least degree whose Taylor error reaches eps
        assert taylor_rel_error(pt["b"], g) <= pt["eps"] < taylor_rel_error(pt["b"], g - 1)
    c.bound_kind = "linear"
    with pytest.raises(ValueError, match="bound_kind"):
        al.point(8, c)


def test_float64_reference_matches_the_float32_paths():
    q, k, v = qkv_with_max_norm(jax.random.key(0), 100, 5, 0.6)
    poly64, exact64 = al._reference64(q[-17:], k, v, 3, 0.2, chunk=32)
    poly32 = jax.jit(lambda q: poly_attention_rows(q, k, v, degree=3, scale=0.2))(q[-17:])
    np.testing.assert_allclose(poly64, np.asarray(poly32), atol=2e-5)
    np.testing.assert_allclose(exact64, np.asarray(pm.exact_rows(q[-17:], k, v, 0.2)), atol=2e-5)


@pytest.mark.slow
def test_tiny_run_stays_within_the_bound_and_writes_its_outputs(tmp_path):
    c = config.get_config("quick")
    c.update(dict(log2_n=(6, 7, 8), exact_max_log2_n=7, repeats=1, err_rows=32, fit_min_log2_n=6))
    m = al.run(c, str(tmp_path))
    assert [pt["n"] for pt in m["points"]] == [64, 128, 256]
    assert all(pt["err_float64"] <= pt["bound"] for pt in m["points"])
    assert "exact" not in m["points"][-1]["seconds"] and "exact" in m["points"][0]["seconds"]
    assert m["fits"]["poly"]["time_exponent"] is not None and m["fits"]["poly"]["cpu_exponent"]
    assert m["fits"]["exact"]["n_range"] == [64, 128]
    for name in ("metrics.json", "report.md", "almost_linear.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["fits"]["poly"]["ops_exponent"] > 1
