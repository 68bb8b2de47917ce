"""BERT's MLM head at the scored positions only: same loss, accuracy and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outeffhop import models
from outeffhop.data import text
from outeffhop.models import losses
from outeffhop.train.tasks import _transformer as task_adapters

L, VOCAB = 16, 64


def mlm_batch(mask_prob, rows=4, seed=0, max_predictions=0):
    """A batch of real MLM rows from the data pipeline's example maker (CLS/SEP never masked)."""
    stream = np.random.default_rng(seed).integers(5, VOCAB, rows * (L - 2)).astype(np.int32)
    ex = text.MlmExamples(stream, L, 2, 3, 0, 4, VOCAB, mask_prob, 0.8, 0.1, 5, max_predictions)
    out = [ex(i, np.random.default_rng(seed + i)) for i in range(rows)]
    return {k: jnp.asarray(np.stack([o[k] for o in out])) for k in out[0]}


@pytest.fixture(scope="module")
def tiny_bert():
    cfg = models.get_config("bert-tiny", num_layers=1, d_ff=32, vocab_size=VOCAB)
    model = models.build_model(cfg)
    batch = mlm_batch(0.15)
    params = jax.jit(lambda k, b: model.init(k, **models.model_inputs(cfg, b))["params"])(
        jax.random.key(0), batch
    )

    def sums(loss, p, b, rng):  # train=True: dropout masks must match too
        def f(p):
            s, n, c = loss(model, p, b, rng, True)
            return s, (n, c)

        return jax.value_and_grad(f, has_aux=True)(p)

    @jax.jit
    def gathered_and_full(p, b, rng):  # one compilation for both parametrizations
        return sums(task_adapters._mlm_loss, p, b, rng), sums(task_adapters._loss, p, b, rng)

    return model, params, gathered_and_full


def test_prediction_cap_bounds_and_errors():
    caps = [losses.mlm_prediction_cap(n) for n in (1, 8, 16, 128, 512)]
    assert caps[0] == 1 and caps == sorted(caps)
    for n, k in zip((1, 8, 16, 128, 512), caps, strict=True):
        assert 0.15 * n <= k <= n
    assert losses.mlm_prediction_cap(128) < 128 // 2  # the point: far fewer than L
    with pytest.raises(ValueError, match="seq_len"):
        losses.mlm_prediction_cap(0)
    with pytest.raises(ValueError, match="mask_prob"):
        losses.mlm_prediction_cap(8, mask_prob=1.5)


@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
def test_positions_list_scored_first_and_flag_overflow(seed, k):
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random((3, 6)) < 0.4, 7, losses.IGNORE)
    pos, overflow = losses.masked_positions_from_labels(jnp.asarray(labels), k)
    pos = np.asarray(pos)
    counts = (labels >= 0).sum(1)
    assert bool(overflow) == bool((counts > k).any())
    for row, p, c in zip(labels, pos, counts, strict=True):
        assert len(set(p)) == k  # distinct positions: nothing scored twice
        scored = np.flatnonzero(row >= 0)
        np.testing.assert_array_equal(p[: min(c, k)], scored[:k])
        assert (row[p[c:]] < 0).all()  # padding slots are unscored


def test_model_logits_at_positions_equal_full_logits(tiny_bert):
    model, params, _ = tiny_bert
    batch = mlm_batch(0.15)
    inputs = models.model_inputs(model.config, batch)
    pos, _ = losses.masked_positions_from_labels(batch["labels"], 5)
    apply = jax.jit(lambda x, q: model.apply({"params": params}, **x, masked_positions=q))
    full = apply(inputs, None)
    some = apply(inputs, pos)
    assert some.shape == (4, 5, VOCAB)
    np.testing.assert_allclose(some, jnp.take_along_axis(full, pos[..., None], 1), atol=1e-5)
    with pytest.raises(ValueError, match="masked_positions"):
        model.apply({"params": params}, **inputs, masked_positions=pos[:2])
    with pytest.raises(ValueError, match="logits"):
        models.masked_lm_loss(some, batch)  # positions missing from the batch


@pytest.mark.parametrize("mask_prob", [0.15, 0.9])  # gathered branch; overflow -> full head
def test_gathered_loss_and_grads_equal_full_head(tiny_bert, mask_prob):
    _, params, gathered_and_full = tiny_bert
    batch = mlm_batch(mask_prob)
    k = losses.mlm_prediction_cap(L)
    _, overflow = losses.masked_positions_from_labels(batch["labels"], k)
    assert bool(overflow) == (mask_prob > 0.5)  # both branches are exercised
    assert int((batch["labels"] >= 0).sum()) > 0
    ((s1, (n1, c1)), g1), ((s2, (n2, c2)), g2) = gathered_and_full(params, batch, jax.random.key(1))
    assert n1 == n2 == int((batch["labels"] >= 0).sum())
    np.testing.assert_allclose(s1, s2, rtol=1e-5)
    assert c1 == c2
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g2)


def test_exact_count_masking_carries_positions(tiny_bert):
    """Google BERT's masking: a fixed count per row, positions from the pipeline, no fallback."""
    _, params, gathered_and_full = tiny_bert
    batch = mlm_batch(0.15, rows=6, max_predictions=3)
    scored = np.asarray(batch["labels"]) >= 0
    assert (scored.sum(1) == 2).all()  # round(0.15 * 14 maskable) = 2 <= 3
    pos = np.asarray(batch["masked_positions"])
    assert pos.shape == (6, 3) and pos.dtype == np.int32
    for row, p in zip(scored, pos, strict=True):
        assert row[p[:2]].all() and not row[p[2]] and len(set(p)) == 3
    ((s1, (n1, c1)), g1), ((s2, (n2, c2)), g2) = gathered_and_full(params, batch, jax.random.key(1))
    assert n1 == n2 == 12
    np.testing.assert_allclose(s1, s2, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g2)
    logits = jnp.zeros((6, L, VOCAB))  # full-head logits ignore the batch's positions
    assert float(losses.masked_lm_loss(logits, batch)[1]["num_tokens"]) == 12


def test_exact_count_masking_rate():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=128)
    maskable = np.ones(128, bool)
    maskable[[0, -1]] = False
    for seed in range(20):
        kw = dict(maskable_L=maskable, mask_id=4, vocab_lo=5, vocab_hi=1000, max_predictions=20)
        _, lab = text.mask_tokens(ids, np.random.default_rng(seed), **kw)
        assert (lab != text.IGNORE).sum() == 19  # round(0.15 * 126)
        assert lab[0] == lab[-1] == text.IGNORE
