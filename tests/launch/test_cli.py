"""The scripts' entry point: bad flags and config overrides end in one sentence, exit 1."""

import os
import pathlib
import subprocess
import sys

import pytest

from outeffhop.launch import cli
from tests import ROOT


def _train(*args):
    env = {**os.environ, "OUTEFFHOP_HUGEPAGES": "0"}
    cmd = [sys.executable, "scripts/train.py", "--config", "configs/bert.py:quick", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--workdir=/tmp/x", "--config.optim.lrr=1"), "unknown field 'lrr' (Did you mean \"lr\""),
        (("--workdir=/tmp/x", "--config=configs/bert.py:quik"), "preset must be one of quick"),
    ],
)
def test_bad_override_or_preset_is_one_sentence(args, message):
    out = _train(*args)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_results_line_names_what_the_run_left(tmp_path):
    assert cli.results_line(str(tmp_path)).endswith("(no report written)")
    (tmp_path / "report.md").write_text("# r")
    (tmp_path / "metrics.json").write_text("{}")
    assert cli.results_line(str(tmp_path)) == f"results: {tmp_path}/ (report.md, metrics.json)"


def _run(*args):
    env = {**os.environ, "OUTEFFHOP_HUGEPAGES": "0"}
    cmd = [sys.executable, "scripts/run.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_run_refuses_a_training_config_in_one_sentence(tmp_path):
    out = _run("--config=configs/bert.py:quick", f"--workdir={tmp_path}")
    assert out.returncode == 1 and "c.experiment" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_every_experiment_config_names_a_module_with_run():
    import importlib

    from outeffhop.launch.configs import load_config

    named = 0
    for path in sorted(pathlib.Path(ROOT, "configs").glob("[!_]*.py")):
        config = load_config(path.stem)
        if "experiment" not in config:
            assert "task" in config, f"{path.name} names neither an experiment nor a task"
            continue
        assert callable(importlib.import_module(cli.experiment_module(config)).run)
        named += 1
    assert named >= 12


def test_default_workdir_is_runs_and_the_config_stem():
    assert cli.default_workdir("configs/phase_transition.py:quick,n=3") == "runs/phase_transition"
