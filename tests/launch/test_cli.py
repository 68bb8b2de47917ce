"""The scripts' entry point: bad flags and config overrides end in one sentence, exit 1."""

import os
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
