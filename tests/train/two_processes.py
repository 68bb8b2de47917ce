"""Two toy-task training processes x 4 CPU devices on 127.0.0.1 (jax.distributed, gloo),
and the comparison of their metrics with a one-process run; shared by the resume and the
sharding tests."""

import os
import socket
import subprocess
import sys

import numpy as np

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


def config(steps):
    c = toy.get_config()
    c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = steps, 1, 4, 4
    c.parallelism, c.fsdp_min_size, c.progress_bar = "fsdp", 64, False
    return c


def start_two(workdir, steps):
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


def wait(procs):
    try:
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # SIGKILL: a hung gloo worker ignores SIGTERM
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)


def rows(workdir):
    return [r for r in read_metrics(workdir) if "loss" in r or "eval_loss" in r]


def assert_same(a, b):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for key in ("loss", "eval_loss", "grad_norm", "param_norm"):
        x = [r[key] for r in a if key in r]
        y = [r[key] for r in b if key in r]
        np.testing.assert_allclose(x, y, rtol=2e-5)
