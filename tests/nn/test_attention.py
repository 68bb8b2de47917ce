"""Clipped softmax (gamma = -0.025) zeroes near-uniform attention at init on long rows."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop import models
from outeffhop.nn.attention import attention_config, uniform_clipped_from


def test_uniform_clipped_from():
    assert uniform_clipped_from(attention_config(normalizer="clipped"), 128) == 41
    assert uniform_clipped_from(attention_config(normalizer="softmax"), 128) is None
    assert uniform_clipped_from(attention_config(normalizer="clipped", gamma=0.0), 128) is None


@pytest.mark.parametrize("length, dead", [(16, False), (64, True)])
def test_bert_clipped_attention_gets_no_gradient_at_init(length, dead):
    cfg = models.get_config("bert-tiny", num_layers=1)
    cfg.attention.normalizer = "clipped"  # gamma -0.025, zeta 1: dead from 41 keys
    model = models.build_model(cfg)
    ids = jax.random.randint(jax.random.key(0), (2, length), 5, cfg.vocab_size)
    params = model.init(jax.random.key(1), input_ids=ids, deterministic=True)["params"]
    params = nn.meta.unbox(params)

    def loss(p):
        return jnp.sum(model.apply({"params": p}, input_ids=ids, deterministic=True) ** 2)

    g = jax.grad(loss)(params)["layer_0"]["attention"]
    norms = [float(np.abs(np.asarray(g[m]["kernel"])).max()) for m in ("query", "key", "value")]
    if dead:
        assert norms == [0.0, 0.0, 0.0]
    else:
        assert min(norms) > 0


def test_trainer_config_check_warns_about_dead_clipping(caplog):
    from outeffhop.launch.configs import load_config
    from outeffhop.train import config_check

    cfg = load_config("bert:quick")  # seq_len 64
    cfg.model.attention.normalizer = "clipped"
    with caplog.at_level("WARNING"):
        config_check._warn_dead_clipping(cfg)
    assert "clips uniform attention to exactly 0 on rows with >= 41 keys" in caplog.text
    caplog.clear()
    cfg.model.attention.normalizer = "softmax1"
    config_check._warn_dead_clipping(cfg)
    assert caplog.text == ""
