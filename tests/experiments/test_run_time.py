"""A study run's wall time: training windows from metrics.jsonl over resumed sessions."""

import json

import pytest

from outeffhop.experiments.outlier_study import report
from outeffhop.experiments.outlier_study.jobs import logged_train_seconds


def _write(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def test_logged_seconds_sum_windows_and_skip_eval_rows(tmp_path):
    # windows of 50 steps at 100 and 200 tokens/s, 10 tokens per step: 5 s + 2.5 s
    rows = [
        {"step": 50, "loss": 1.0, "tokens_per_s": 100.0},
        {"step": 50, "eval_loss": 1.0},
        {"step": 100, "loss": 1.0, "tokens_per_s": 200.0},
    ]
    _write(tmp_path / "m.jsonl", rows)
    assert logged_train_seconds(str(tmp_path / "m.jsonl"), 10) == pytest.approx(7.5)


def test_resumed_log_counts_each_step_once(tmp_path):
    # session 1 logged 0..100 (cut back to its checkpoint at 100); session 2 ran 100..200
    # at half the speed: the sum is the two sessions' windows, each step once
    first = [{"step": s, "tokens_per_s": 40.0} for s in (50, 100)]
    second = [{"step": s, "tokens_per_s": 20.0} for s in (150, 200)]
    _write(tmp_path / "m.jsonl", first + second)
    direct = sum(4 * 50 / r["tokens_per_s"] for r in first + second)
    assert logged_train_seconds(str(tmp_path / "m.jsonl"), 4) == pytest.approx(direct)
    assert logged_train_seconds(str(tmp_path / "missing.jsonl"), 4) == 0.0


def test_run_seconds_prefers_the_logged_training_time():
    assert report.run_seconds({"train_s": 10.0, "train_log_s": 30.0, "eval_s": 5.0}) == 35.0
    assert report.run_seconds({"train_s": 10.0, "eval_s": 5.0}) == 15.0
