"""2 processes x 4 CPU devices (jax.distributed on 127.0.0.1, gloo) reproduce 1 x 8 devices."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from outeffhop.train import train_and_evaluate as train
from outeffhop.train.metrics_log import read_metrics
from tests import ROOT
from tests.train import toy_task as toy

STEPS = 8

WORKER = """
import sys
from outeffhop.train import train_and_evaluate
from tests.train import toy_task as toy
c = toy.get_config()
c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = {steps}, 1, 4, 4
c.parallelism, c.fsdp_min_size = "fsdp", 64  # sync_every_step: automatic on CPU
c.distributed.enabled, c.distributed.coordinator_address = True, sys.argv[2]
c.distributed.num_processes, c.distributed.process_id = 2, int(sys.argv[3])
c.distributed.num_cpu_devices = 4
train_and_evaluate(c, sys.argv[1])
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(workdir):
    return [r for r in read_metrics(workdir) if "loss" in r or "eval_loss" in r]


@pytest.mark.slow
def test_two_processes_reproduce_eight_devices(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    address = f"127.0.0.1:{_free_port()}"
    code = WORKER.format(steps=STEPS)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "multi"), address, str(i)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # SIGKILL: a hung gloo worker ignores SIGTERM
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)

    c = toy.get_config()
    c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = STEPS, 1, 4, 4
    c.parallelism, c.fsdp_min_size = "fsdp", 64
    assert len(jax.devices()) == 8
    train(c, str(tmp_path / "single"))
    multi, single = _rows(tmp_path / "multi"), _rows(tmp_path / "single")
    assert [r["step"] for r in multi] == [r["step"] for r in single]
    for key in ("loss", "eval_loss", "grad_norm", "param_norm"):
        a = [r[key] for r in multi if key in r]
        b = [r[key] for r in single if key in r]
        np.testing.assert_allclose(a, b, rtol=2e-5)
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["4", "8"]
