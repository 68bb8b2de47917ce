"""The associative-memory study: pattern sets, query kinds, fixed-point counting, end to end."""

import importlib.util
import json
import os

import numpy as np
import pytest

from outeffhop.experiments.memory import convergence, dimension, noop
from outeffhop.experiments.memory import data as memory_data
from outeffhop.experiments.memory import storage_capacity as capacity
from tests import ROOT


def _config(name, preset="quick"):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(preset)


def test_pattern_sets_are_unit_norm_and_corruptions_do_what_they_say():
    rng = np.random.default_rng(0)
    for kind in memory_data.PATTERN_SETS:
        p = memory_data.patterns(kind, 50, 64, seed=1)
        np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    p = memory_data.patterns("random", 2000, 64, seed=1)
    masked = memory_data.corrupt(p, "mask", 0.25, rng)
    assert abs(np.mean(masked == 0) - 0.25) < 0.01
    noisy = memory_data.corrupt(p, "noise", 0.5, rng)
    assert abs(np.linalg.norm(noisy - p, axis=1).mean() - 0.5) < 0.02
    assert np.all(memory_data.nearest_memory(p, p) == np.arange(len(p)))
    with pytest.raises(ValueError, match="pattern set"):
        memory_data.patterns("faces", 5, 64, seed=0)
    with pytest.raises(ValueError, match="dim"):
        memory_data.patterns("digits", 5, 32, seed=0)


def test_unrelated_query_kinds():
    rng = np.random.default_rng(0)
    stored = memory_data.patterns("random", 16, 64, seed=0)
    orth = noop.queries("orthogonal", stored, 20, rng)
    np.testing.assert_allclose(orth @ stored.T, 0.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(orth, axis=1), 1.0, atol=1e-5)
    assert noop.queries("orthogonal", memory_data.patterns("random", 64, 64, 0), 5, rng) is None
    digits = memory_data.patterns("digits", 300, 64, seed=0)
    assert np.all(noop.queries("inverted", digits, 20, rng) @ digits.T <= 1e-6)
    assert np.mean(noop.queries("anti_mean", digits, 20, rng) @ digits.T < 0) > 0.95
    with pytest.raises(ValueError, match="query kind"):
        noop.queries("other", stored, 3, rng)


def test_steps_to_fixed_point_counts_the_first_small_change():
    deltas = np.array([[1.0, 1.0, 1.0], [1e-7, 1.0, 1.0], [0.0, 1e-7, 1.0]])  # [T, N]
    np.testing.assert_array_equal(convergence.steps_to_fixed_point(deltas, 1e-6), [2, 3, -1])


def _tiny(name):
    c = _config(name)
    c.num_queries = 20
    c.betas = (64.0,) if name != "memory_convergence" else (16.0,)
    c.pattern_sets = ("random",)
    if name == "memory_capacity":
        c.num_patterns_random = (10, 100)
        c.update_steps = (0,)
    elif name == "memory_convergence":
        c.num_patterns = {"random": 50}
        c.max_steps = 5
        c.gsh_alphas = (1.5,)
    elif name == "memory_dimension":
        c.dims, c.max_log2_patterns, c.noises, c.update_steps = (4, 6), 4, (0.0, 0.3), (0, 1)
        c.betas = (1.0,)
    else:
        c.num_patterns = {"random": (8,)}
        c.update_steps = (0,)
    return c


STUDIES = [
    (capacity, "memory_capacity"),
    (convergence, "memory_convergence"),
    (noop, "memory_noop"),
    (dimension, "memory_dimension"),
]


@pytest.mark.parametrize(("study", "config"), STUDIES)
def test_tiny_study_writes_metrics_report_and_plots(study, config, tmp_path):
    metrics = study.run(_tiny(config), str(tmp_path))
    files = os.listdir(tmp_path)
    assert "metrics.json" in files and "report.md" in files
    assert any(f.endswith(".png") for f in files)
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f)["results"] == metrics["results"]
    if study is convergence:  # the CCCP guarantee (GSH too): energy never increases
        assert all(r["energy_monotone"] for r in metrics["results"])
        assert {r["normalizer"] for r in metrics["results"]} == {"softmax", "softmax1", "gsh"}
        for r in metrics["results"]:  # ||x - T(x)|| <= sqrt(d) tol where the tolerance was met
            conv = r["stationarity_max_converged"]
            assert conv is None or conv <= np.sqrt(64) * 1e-5 * 1.01
    if study is dimension:  # one-step errors never exceed the bound
        assert metrics["bound_check"]["softmax"]["violations"] == 0
        assert metrics["bound_check"]["softmax1"]["violations"] == 0
        assert metrics["bound_check"]["softmax1_vs_softmax"]["condition_agrees_min"] == 1.0
    if study is capacity:  # well-separated random memories at beta 64: perfect recall
        assert all(r["error_rate"] <= 0.05 for r in metrics["results"])


@pytest.mark.slow
@pytest.mark.parametrize(("study", "config"), STUDIES)
def test_quick_presets_run(study, config, tmp_path):
    metrics = study.run(_config(config), str(tmp_path))
    assert metrics["results"]


def test_dimension_sampling_and_first_crossing():
    rng = np.random.default_rng(0)
    stored, target, x = dimension.sample(5, 4, 10, 2.0, (0.0, 0.5), rng)
    assert stored.shape == (3, 4, 5) and target.shape == (3, 4) and x.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=-1), 2.0, rtol=1e-5)
    assert all(len(set(t)) == len(t) for t in target)  # distinct targets per set
    xi_t = np.take_along_axis(stored, target[..., None], axis=1)
    np.testing.assert_allclose(x[0], xi_t, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(x[1] - xi_t, axis=-1), 0.5 * 2.0, rtol=1e-5)
    ms = [2, 4, 8, 16]
    assert dimension.first_crossing(ms, [0.0, 0.01, 0.2, 0.0], 0.05) == (4, False)
    assert dimension.first_crossing(ms, [0.1, 0.0, 0.0, 0.0], 0.05) == (None, False)
    assert dimension.first_crossing(ms, [0.0] * 4, 0.05) == (16, True)


def test_dimension_probe_matches_direct_updates():
    """The batched probe's errors and separations agree with a numpy loop; chunking changes
    nothing."""
    rng = np.random.default_rng(1)
    stored, target, x = dimension.sample(4, 40, 20, 1.7, (0.2,), rng)
    beta = np.asarray([1.5], np.float32)
    full = dimension.probe(x, stored, target, beta, (0, 1), chunk=64)
    chunked = dimension.probe(x, stored, target, beta, (0, 1), chunk=8)
    for k in full:
        np.testing.assert_allclose(full[k], chunked[k], rtol=1e-5, atol=1e-6)
    xi, t = stored[0].astype(np.float64), target[0]
    for q in range(3):
        s = x[0, 0, q].astype(np.float64)
        for step in range(2):
            w = np.exp(1.5 * xi @ s - np.max(1.5 * xi @ s))
            s = (w / w.sum()) @ xi
            err = np.linalg.norm(s - xi[t[q]]) / np.linalg.norm(xi[t[q]])
            np.testing.assert_allclose(full[f"softmax_err{step}"][0, 0, q], err, rtol=1e-4)
        others = [xi[t[q]] @ xi[j] for j in range(40) if j != t[q]]
        np.testing.assert_allclose(full["delta"][0, q], xi[t[q]] @ xi[t[q]] - max(others),
                                   rtol=1e-4)  # fmt: skip
