"""Clipped softmax at init: the uniform-weight formula and the alive statistics on tiny models."""

import numpy as np
import pytest

from outeffhop import models
from outeffhop.experiments.outlier_study import clip_init
from outeffhop.launch.configs import load_config
from outeffhop.nn.attention import attention_config, uniform_clipped_from
from outeffhop.train import tasks


@pytest.mark.parametrize("gamma", [-0.025, -12 / 512, -0.1, -1e-5])
def test_uniform_weight_is_zero_exactly_from_the_threshold(gamma):
    cfg = attention_config(normalizer="clipped", gamma=gamma, zeta=1.0)
    lengths = np.arange(2, 400)
    zero = [clip_init.uniform_weight(gamma, 1.0, int(n)) == 0.0 for n in lengths]
    dead = uniform_clipped_from(cfg, 2)
    np.testing.assert_array_equal(zero, lengths >= dead)


def test_alpha_convention_clips_uniform_attention_at_every_length():
    # gamma = -alpha / L: the uniform weight (1 + alpha/L)/L - alpha/L <= 0 iff alpha >= L/(L-1)
    for n in (8, 65, 128, 512):
        assert clip_init.uniform_weight(-12.0 / n, 1.0, n) == 0.0
        assert clip_init.uniform_weight(-0.5 / n, 1.0, n) > 0.0


def _tiny(task_name, normalizer, gamma, seq_len=64):
    cfg = load_config(f"{task_name}:quick")
    cfg.model.attention.update(normalizer=normalizer, gamma=gamma)
    if task_name == "induction":
        cfg.data.seq_len = cfg.model.max_len = seq_len
    task = tasks.get_task(cfg.task)
    batch = task.example_batch(cfg, 2)
    return cfg, clip_init._init_params(cfg), batch


@pytest.mark.slow
def test_bidirectional_rows_die_past_the_threshold_and_causal_rows_survive_before_it():
    # 64 visible keys >= 41: near-uniform rows of a bidirectional model are all zero at init
    cfg, params, _ = _tiny("bert", "clipped", -0.025)
    ids = models.dummy_inputs(cfg.model, batch_size=2, seq_len=64)
    batch = {**ids, "attention_mask": np.ones((2, 64), np.int32)}
    stats = clip_init.alive(cfg, params, batch)
    assert all(s["dead_rows"] == 1.0 and s["alive_weights"] == 0.0 for s in stats.values())
    assert cfg.model.attention.normalizer == "clipped"  # alive() leaves its config alone
    # causal: query t sees t + 1 keys; alive exactly while t + 1 < 41 (init is near uniform)
    cfg, params, batch = _tiny("induction", "clipped", -0.025, seq_len=64)
    stats = clip_init.alive(cfg, params, batch)
    for s in stats.values():
        assert s["dead_rows"] == pytest.approx(1 - 40 / 64, abs=2 / 64)
    grads = clip_init.attention_grad_norms(cfg, params, batch)
    assert all(g["value"] > 0 and g["query"] > 0 for g in grads.values())
