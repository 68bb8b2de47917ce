"""Resume on another process count: 2 -> 1 and 1 -> 2 processes equal an uninterrupted run."""

import os
import shutil

import pytest

from outeffhop.train import checkpoint
from outeffhop.train import train_and_evaluate as train
from tests.train import two_processes as two


def _forget_last(workdir):
    """Drop the step-8 checkpoint: the run resumes from step 4 with the same config."""
    shutil.rmtree(workdir / "checkpoints" / "8")


@pytest.mark.slow
def test_resume_2_to_1_and_1_to_2_processes_equals_uninterrupted(tmp_path):
    two_then_one, one_then_two, whole = tmp_path / "2to1", tmp_path / "1to2", tmp_path / "whole"
    first = two.start_two(two_then_one, 8)  # 2 processes, checkpoints at 4 and 8
    train(two.config(8), str(whole))  # meanwhile the uninterrupted 1-process run
    expected = two.rows(whole)
    shutil.copytree(whole, one_then_two)
    _forget_last(one_then_two)
    two.wait(first)
    second = two.start_two(one_then_two, 8)  # 2 processes resume a 1-process checkpoint
    _forget_last(two_then_one)
    train(two.config(8), str(two_then_one))  # 1 process resumes a 2-process checkpoint
    two.wait(second)
    two.assert_same(two.rows(two_then_one), expected)
    two.assert_same(two.rows(one_then_two), expected)
    files = sorted(
        f
        for f in os.listdir(two_then_one / "checkpoints" / "4" / "data_iter")
        if f.endswith(".json")
    )
    assert files == ["process_0-of-2.json", "process_1-of-2.json"]


@pytest.mark.slow
def test_differing_iterator_states_name_the_process_counts(tmp_path):
    train(two.config(8), str(tmp_path))
    _forget_last(tmp_path)
    d = tmp_path / "checkpoints" / "4" / "data_iter"
    state = (d / "process_0-of-1.json").read_text()
    assert '"next_index": 4' in state
    (d / "process_0-of-1.json").rename(d / "process_0-of-2.json")
    (d / "process_1-of-2.json").write_text(state.replace('"next_index": 4', '"next_index": 5'))
    with pytest.raises(checkpoint.ResumeMismatch, match=r"saved by \[2\] processes.*differ"):
        train(two.config(8), str(tmp_path))
    for name in ("process_0-of-2.json", "process_1-of-2.json"):
        (d / name).write_text('{"unrelated": 1}')
    with pytest.raises(checkpoint.ResumeMismatch, match="does not fit this run's data pipeline"):
        train(two.config(8), str(tmp_path))
