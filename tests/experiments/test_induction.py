"""The induction experiment: the synthetic no-op task's data, and a tiny run (slow)."""

import numpy as np
import pytest

from outeffhop.experiments import induction
from outeffhop.launch.configs import load_config


def test_batch_targets():
    b = induction.make_batch(np.random.default_rng(0), 64, 12, 10)
    ids, labels = b["input_ids"], b["labels"]
    assert ids.shape == labels.shape == (64, 12)
    assert np.all(ids[:, 0] == induction.BOS) and np.all(labels[:, 0] == -100)
    marked = 0
    for row, lab in zip(ids, labels, strict=True):
        where = np.flatnonzero(row == induction.MARK)
        assert len(where) <= 1
        if len(where) == 0:
            np.testing.assert_array_equal(lab[1:], row[1:])  # identity: heads must no-op
            continue
        marked += 1
        i = where[0]
        np.testing.assert_array_equal(lab[1 : i + 2], row[1 : i + 2])
        assert np.all(lab[i + 2 :] == row[i + 1])  # after MARK, key: the key
    assert 10 < marked < 54
    with pytest.raises(ValueError, match="vocab must be"):
        induction.make_batch(np.random.default_rng(0), 2, 12, 3)


@pytest.mark.slow
def test_tiny_run(tmp_path):
    res = induction.run(load_config("induction:tiny"), str(tmp_path))
    assert [r["variant"] for r in res["results"]] == ["vanilla", "softmax1"]
    assert (tmp_path / "report.md").exists() and (tmp_path / "induction.png").exists()


def test_mark_prob_sets_the_share_of_rows_with_a_copy():
    rng = np.random.default_rng(0)
    none = induction.make_batch(rng, 32, 12, 10, mark_prob=0.0)
    np.testing.assert_array_equal(none["labels"][:, 1:], none["input_ids"][:, 1:])
    every = induction.make_batch(rng, 32, 12, 10, mark_prob=1.0)
    assert np.all((every["input_ids"] == induction.MARK).sum(1) == 1)
    share = (induction.make_batch(rng, 4000, 12, 10, 0.1)["input_ids"] == induction.MARK).any(1)
    assert abs(share.mean() - 0.1) < 0.02
    with pytest.raises(ValueError, match="mark_prob"):
        induction.make_batch(rng, 2, 12, 10, mark_prob=1.5)


def test_backcopy_rows_follow_the_bigram_or_copy_rule():
    from outeffhop.train.tasks import induction as task

    vocab, trig, branch = 32, 3, 4
    b = task.make_backcopy_batch(np.random.default_rng(1), 64, 40, vocab, trig, branch)
    ids, labels = b["input_ids"], b["labels"]
    table = task.successors(vocab, branch)
    assert np.all(ids[:, 0] == task.BOS) and np.all(ids[:, 1:] >= task.FIRST_CONTENT)
    np.testing.assert_array_equal(labels[:, 1:-1], ids[:, 2:])  # next-token targets
    assert np.all(labels[:, 0] == -100) and np.all(labels[:, -1] == -100)
    copies = 0
    for row in ids:
        for t in range(1, len(row) - 1):
            if row[t] < task.FIRST_CONTENT + trig and t >= 2:
                assert row[t + 1] == row[t - 1]
                copies += 1
            else:
                assert row[t + 1] in table[row[t]]
    assert copies > 0
    np.testing.assert_array_equal(table, task.successors(vocab, branch))  # fixed table
    with pytest.raises(ValueError, match="branch"):
        task.successors(vocab, 40)
