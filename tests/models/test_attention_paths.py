"""Attention path selection (explicit weights, XLA, cuDNN): the decision, its log line, and
that each fused layout computes what the explicit path computes (on CPU, through XLA)."""

import functools
import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from outeffhop import models
from outeffhop.nn.attention import MultiHeadAttention, attention_config, attention_path
from outeffhop.ops import attention as attn


def _path(normalizer="softmax", implementation=None, **kw):
    cfg = attention_config(normalizer=normalizer, implementation=implementation)
    args = dict(dtype=jnp.bfloat16, head_dim=64, length=128, has_mask=False, dropout=False)
    args.update(kw)
    return attention_path(cfg, **args)


def test_path_decisions():
    assert _path(backend="cpu")[0] == "reference"  # measured faster on CPU
    assert _path(backend="gpu") == ("cudnn", "cuDNN flash attention")
    assert _path("softmax1", backend="gpu", has_mask=True)[0] == "cudnn"  # T=128, S=1+128+1
    assert _path(backend="tpu")[0] == "xla"
    path, why = _path(backend="gpu", dtype=jnp.float32)
    assert path == "xla" and "float32" in why
    assert "multiple of 8" in _path(backend="gpu", head_dim=36)[1]
    assert "even lengths" in _path(backend="gpu", has_mask=True, length=127)[1]
    assert _path(backend="gpu", dropout=True) == (
        "reference",
        "attention dropout needs explicit weights",
    )
    assert _path("clipped", backend="gpu")[0] == "reference"
    assert _path("sink", backend="gpu")[0] == "xla"  # its bias gradient
    assert _path(implementation="xla", backend="gpu")[0] == "xla"
    assert _path(implementation="reference", backend="gpu")[0] == "reference"
    assert _path(implementation="fused", backend="cpu")[0] == "xla"
    with pytest.raises(ValueError, match="implementation='cudnn' cannot run here: .*cpu"):
        _path(implementation="cudnn", backend="cpu")


def _module(normalizer, implementation):
    cfg = attention_config(normalizer=normalizer, implementation=implementation)
    return MultiHeadAttention(4, ml_collections.FrozenConfigDict(cfg))


CASES = [(n, c) for n in ("softmax", "softmax1", "sink") for c in ("none", "causal", "pad")]


@pytest.mark.parametrize(("normalizer", "case"), CASES)
def test_xla_path_equals_the_explicit_path(normalizer, case):
    x = jax.random.normal(jax.random.key(0), (2, 6, 32))
    pad = jnp.array([[1] * 6, [1] * 4 + [0] * 2])
    kw = {"mask_BL": pad if case == "pad" else None, "is_causal": case == "causal"}
    ref, fused = _module(normalizer, "reference"), _module(normalizer, "xla")
    params = ref.init(jax.random.key(1), x, **kw)["params"]
    if normalizer == "sink":  # a non-zero sink, so that the bias matters
        params = {**params, "sink": jnp.array([1.0, -0.5, 0.0, 2.0])}

    @jax.jit
    def out_and_grads(p, x):
        def f(m):
            return jax.value_and_grad(
                lambda p, x: jnp.sum(jnp.sin(m.apply({"params": p}, x, **kw))), argnums=(0, 1)
            )(p, x)

        return f(ref), f(fused)

    a, b = out_and_grads(params, x)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=2e-5, rtol=1e-5), a, b)


@pytest.mark.parametrize(("t", "causal"), [(5, True), (5, False), (6, True)])
def test_cudnn_layout_of_softmax1_equals_the_reference(t, causal):
    """softmax1_inputs(even=True): the zero key plus masked padding to even lengths."""
    q, k, v = jax.random.normal(jax.random.key(2), (3, 2, t, 2, 8))
    mask = jnp.ones((2, 1, 1, t), bool).at[1, ..., t - 2 :].set(False)
    q1, k1, v1, mask1, causal1, first = attn.softmax1_inputs(q, k, v, mask, causal, even=True)
    assert q1.shape[1] % 2 == 0 and k1.shape[1] % 2 == 0

    @jax.jit
    def both(q1, k1, v1, mask1, q, k, v, mask):
        got = jax.nn.dot_product_attention(
            q1, k1, v1, mask=mask1, is_causal=causal1, implementation="xla"
        )[:, first : first + t]
        want = attn.dot_product_attention(
            q, k, v, normalizer="softmax1", mask=mask, is_causal=causal, implementation="reference"
        )
        return got, want

    got, want = both(q1, k1, v1, mask1, q, k, v, mask)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_each_layer_logs_its_path(caplog):
    cfg = models.get_config("opt-tiny", vocab_size=32, max_len=8)
    model = models.build_model(cfg)
    ids = jnp.zeros((1, 8), jnp.int32)
    with caplog.at_level(logging.INFO, logger="absl"):
        jax.eval_shape(functools.partial(model.init, jax.random.key(0), ids))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("attention ")]
    assert lines == [
        f"attention layer_{i}/attention: reference path (CPU default (explicit weights "
        "measured faster))"
        for i in range(cfg.num_layers)
    ]
