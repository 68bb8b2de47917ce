"""Resume on another process count: 2 -> 1 and 1 -> 2 processes equal an uninterrupted run."""

import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from outeffhop.train import checkpoint
from outeffhop.train import train_and_evaluate as train
from outeffhop.train.metrics_log import read_metrics
from tests import ROOT
from tests.train import toy_task as toy

WORKER = """
import sys
from outeffhop.train import train_and_evaluate
from tests.train import toy_task as toy
c = toy.get_config()
c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = int(sys.argv[4]), 1, 4, 4
c.parallelism, c.fsdp_min_size, c.progress_bar = "fsdp", 64, False
c.distributed.enabled, c.distributed.coordinator_address = True, sys.argv[2]
c.distributed.num_processes, c.distributed.process_id = 2, int(sys.argv[3])
c.distributed.num_cpu_devices = 4
train_and_evaluate(c, sys.argv[1])
"""


def _config(steps):
    c = toy.get_config()
    c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = steps, 1, 4, 4
    c.parallelism, c.fsdp_min_size, c.progress_bar = "fsdp", 64, False
    return c


def _start_two(workdir, steps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(workdir), address, str(i), str(steps)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def _wait(procs):
    try:
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # SIGKILL: a hung gloo worker ignores SIGTERM
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)


def _rows(workdir):
    return [r for r in read_metrics(workdir) if "loss" in r or "eval_loss" in r]


def _assert_same(a, b):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for key in ("loss", "eval_loss", "grad_norm", "param_norm"):
        x = [r[key] for r in a if key in r]
        y = [r[key] for r in b if key in r]
        np.testing.assert_allclose(x, y, rtol=2e-5)


def _forget_last(workdir):
    """Drop the step-8 checkpoint: the run resumes from step 4 with the same config."""
    shutil.rmtree(workdir / "checkpoints" / "8")


@pytest.mark.slow
def test_resume_2_to_1_and_1_to_2_processes_equals_uninterrupted(tmp_path):
    two_then_one, one_then_two, whole = tmp_path / "2to1", tmp_path / "1to2", tmp_path / "whole"
    first = _start_two(two_then_one, 8)  # 2 processes, checkpoints at 4 and 8
    train(_config(8), str(whole))  # meanwhile the uninterrupted 1-process run
    expected = _rows(whole)
    shutil.copytree(whole, one_then_two)
    _forget_last(one_then_two)
    _wait(first)
    second = _start_two(one_then_two, 8)  # 2 processes resume a 1-process checkpoint
    _forget_last(two_then_one)
    train(_config(8), str(two_then_one))  # 1 process resumes a 2-process checkpoint
    _wait(second)
    _assert_same(_rows(two_then_one), expected)
    _assert_same(_rows(one_then_two), expected)
    files = sorted(
        f
        for f in os.listdir(two_then_one / "checkpoints" / "4" / "data_iter")
        if f.endswith(".json")
    )
    assert files == ["process_0-of-2.json", "process_1-of-2.json"]


@pytest.mark.slow
def test_differing_iterator_states_name_the_process_counts(tmp_path):
    train(_config(8), str(tmp_path))
    _forget_last(tmp_path)
    d = tmp_path / "checkpoints" / "4" / "data_iter"
    state = (d / "process_0-of-1.json").read_text()
    assert '"next_index": 4' in state
    (d / "process_0-of-1.json").rename(d / "process_0-of-2.json")
    (d / "process_1-of-2.json").write_text(state.replace('"next_index": 4', '"next_index": 5'))
    with pytest.raises(checkpoint.ResumeMismatch, match=r"saved by \[2\] processes.*differ"):
        train(_config(8), str(tmp_path))
    for name in ("process_0-of-2.json", "process_1-of-2.json"):
        (d / name).write_text('{"unrelated": 1}')
    with pytest.raises(checkpoint.ResumeMismatch, match="does not fit this run's data pipeline"):
        train(_config(8), str(tmp_path))
