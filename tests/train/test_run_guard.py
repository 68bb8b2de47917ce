"""A workdir holds one experiment: stored config, lock, step budget, failed saves stop at once."""

import json
import os

import pytest

from outeffhop.train import checkpoint, run_guard, train_and_evaluate
from tests.train import toy_task as toy


def _cfg(**kw):
    c = toy.get_config()
    c.num_steps, c.checkpoint_every, c.eval_steps, c.log_every = 6, 3, 0, 3
    for k, v in kw.items():
        node, *path = k.split(".")
        target = c if not path else c[node]
        target[path[-1] if path else node] = v
    return c


def test_experiment_diff_ignores_bookkeeping_fields():
    a = run_guard.flatten({"num_steps": 10, "optim": {"lr": 1.0}, "data": {"cache_dir": "x"}})
    b = run_guard.flatten({"num_steps": 99, "optim": {"lr": 2.0}, "data": {"cache_dir": "y"}})
    assert run_guard.experiment_diff(a, b) == ["optim.lr"]
    assert run_guard.experiment_diff(a, {**a, "seed": 1}) == []  # a field the code added
    assert run_guard.schema_changes(a, {**a, "seed": 1}) == (["seed"], [])


def test_a_run_started_by_older_code_resumes_with_a_warning(tmp_path, caplog):
    # the stored config lacks a field added to the code since (its default keeps the old
    # behaviour): not another experiment; a changed value of a shared field still is
    wd = str(tmp_path)
    run_guard.check_config(wd, _cfg(), has_checkpoint=False)
    stored = json.loads((tmp_path / "config.json").read_text())
    del stored["optim.lr"]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with caplog.at_level("WARNING"):
        run_guard.check_config(wd, _cfg(), has_checkpoint=True)
    assert "started by another code version: fields added since optim.lr=0.01" in caplog.text
    with pytest.raises(ValueError, match=r"seed \(0 -> 1\)"):
        run_guard.check_config(wd, _cfg(seed=1), has_checkpoint=True)


def test_rerun_of_another_experiment_is_refused_unless_forced(tmp_path):
    wd = str(tmp_path)
    run_guard.check_config(wd, _cfg(), has_checkpoint=False)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["optim.lr"] == _cfg().optim.lr
    run_guard.check_config(wd, _cfg(num_steps=50), has_checkpoint=True)  # longer: same run
    with pytest.raises(ValueError, match=r"optim.lr \(0.01 -> 0.5\).*resume=force"):
        run_guard.check_config(wd, _cfg(**{"optim.lr": 0.5}), has_checkpoint=True)
    run_guard.check_config(wd, _cfg(**{"optim.lr": 0.5, "resume": "force"}), has_checkpoint=True)
    assert json.loads((tmp_path / "config.json").read_text())["optim.lr"] == 0.5
    with pytest.raises(ValueError, match="config.resume must be one of auto, force"):
        run_guard.check_config(wd, _cfg(resume="always"), has_checkpoint=True)


def test_second_run_on_a_locked_workdir_is_refused(tmp_path):
    locked = pytest.raises(run_guard.WorkdirLockedError, match=f"in use by pid {os.getpid()}")
    with run_guard.workdir_lock(str(tmp_path)), locked, run_guard.workdir_lock(str(tmp_path)):
        pass
    with run_guard.workdir_lock(str(tmp_path)):  # released: the next run gets it
        pass


def test_budget_at_or_below_the_checkpoint_says_so():
    assert run_guard.check_budget(None, 10) is None and run_guard.check_budget(9, 10) is None
    assert "at step 10 >= config.num_steps=10: nothing to train" in run_guard.check_budget(10, 10)


def test_trainer_refuses_another_variant_in_the_same_workdir(tmp_path):
    train_and_evaluate(_cfg(), str(tmp_path))
    with pytest.raises(ValueError, match=r"model.dropout \(0.1 -> 0.2\)"):
        train_and_evaluate(_cfg(**{"model.dropout": 0.2}), str(tmp_path))  # same shapes
    with pytest.raises(ValueError, match=r"seed \(0 -> 1\)"):
        train_and_evaluate(_cfg(seed=1), str(tmp_path))


def test_failed_save_stops_the_run_at_once_and_keeps_the_last_good(tmp_path, monkeypatch):
    calls = []
    real = checkpoint.save

    def flaky(mngr, step, state, data_iter):
        calls.append(step)
        if step == 6:
            raise OSError(28, "No space left on device")
        real(mngr, step, state, data_iter)

    monkeypatch.setattr(checkpoint, "save", flaky)
    with pytest.raises(run_guard.CheckpointSaveError) as err:
        train_and_evaluate(_cfg(num_steps=12), str(tmp_path))
    msg = str(err.value)
    assert "checkpoint of step 6" in msg and "No space left on device" in msg
    assert "last good checkpoint: step 3" in msg and calls == [3, 6]  # stopped at once
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
