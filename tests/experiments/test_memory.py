"""The associative-memory study: pattern sets, query kinds, fixed-point counting, end to end."""

import importlib.util
import json
import os

import numpy as np
import pytest

from outeffhop.experiments.memory import convergence, noop
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
    else:
        c.num_patterns = {"random": (8,)}
        c.update_steps = (0,)
    return c


@pytest.mark.parametrize(
    ("study", "config"),
    [(capacity, "memory_capacity"), (convergence, "memory_convergence"), (noop, "memory_noop")],
)
def test_tiny_study_writes_metrics_report_and_plots(study, config, tmp_path):
    metrics = study.run(_tiny(config), str(tmp_path))
    files = os.listdir(tmp_path)
    assert "metrics.json" in files and "report.md" in files
    assert any(f.endswith(".png") for f in files)
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f)["results"] == metrics["results"]
    if study is convergence:  # the CCCP guarantee: energy never increases
        assert all(r["energy_monotone"] for r in metrics["results"])
    if study is capacity:  # well-separated random memories at beta 64: perfect recall
        assert all(r["error_rate"] <= 0.05 for r in metrics["results"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("study", "config"),
    [(capacity, "memory_capacity"), (convergence, "memory_convergence"), (noop, "memory_noop")],
)
def test_quick_presets_run(study, config, tmp_path):
    metrics = study.run(_config(config), str(tmp_path))
    assert metrics["results"]
