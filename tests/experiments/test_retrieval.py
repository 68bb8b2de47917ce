"""The retrieval demo and the main-job driver, at a tiny size."""

import json
import os

import numpy as np
import pytest

from outeffhop.experiments.memory import retrieval
from outeffhop.launch.configs import load_config


def _tiny():
    c = load_config("retrieval:quick")
    c.num_patterns, c.num_queries, c.betas = 60, 20, (4.0, 256.0)
    return c


def test_demo_writes_outputs_and_shows_the_null_memory(tmp_path):
    m = retrieval.run(_tiny(), str(tmp_path))
    for name in ("metrics.json", "report.md", "retrieval_accuracy.png", "unrelated_norm.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["num_patterns"] == 60
    inverted = m["unrelated"]["inverted"]
    # Every score is <= 0 for an inverted digit: at large beta the null memory takes the
    # mass under softmax1, while softmax must put its unit mass on some stored digit.
    assert inverted["softmax1"]["retrieved_norm"][-1] < 0.05
    assert inverted["softmax"]["retrieved_norm"][-1] > 0.5
    # Clean stored digits are recalled (norm ~1) by both at large beta.
    for name in ("softmax", "softmax1"):
        assert m["clean_retrieved_norm"][name][-1] > 0.95
        assert m["energy_check"][name] <= 1e-5


def test_scores_match_a_direct_count():
    patterns, labels = retrieval.load_digit_patterns(30, seed=1)
    target = np.arange(10)
    retrieved = patterns[[0, 1, 2, 3, 4, 5, 6, 7, 8, 0]][None]  # the last one is wrong
    s = retrieval.retrieval_scores(retrieved, patterns, labels, target)
    assert s["accuracy"][0] == pytest.approx(0.9)
    assert s["class_accuracy"][0] == pytest.approx(0.9 + 0.1 * (labels[0] == labels[9]))


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match="num_patterns"):
        retrieval.load_digit_patterns(0)
    with pytest.raises(ValueError, match="corruption kind"):
        retrieval.corrupt(np.ones((2, 4)), "blur", 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="preset"):
        load_config("retrieval:huge")
    with pytest.raises(FileNotFoundError, match="nope"):
        load_config("nope:quick")
