"""2 processes x 4 CPU devices (jax.distributed on 127.0.0.1, gloo) reproduce 1 x 8 devices."""

import os

import jax
import pytest

from outeffhop.train import train_and_evaluate as train
from tests.train import two_processes as two

STEPS = 8


@pytest.mark.slow
def test_two_processes_reproduce_eight_devices(tmp_path):
    two.wait(two.start_two(tmp_path / "multi", STEPS))
    c = two.config(STEPS)
    assert len(jax.devices()) == 8
    train(c, str(tmp_path / "single"))
    two.assert_same(two.rows(tmp_path / "multi"), two.rows(tmp_path / "single"))
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["4", "8"]
