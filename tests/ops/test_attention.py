"""Attention: fused == reference (masks, causal, cross), direct formulas, adversarial input."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from outeffhop.ops import attention as attn
from outeffhop.ops.attention import attention_weights, default_implementation, dot_product_attention
from outeffhop.ops.softmax import NORMALIZERS

B, H, D = 2, 2, 4
GZ = {"gamma": -0.1, "zeta": 1.1}


def _qkv(t=5, s=5, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    q = scale * rng.normal(size=(B, t, H, D))
    k, v = rng.normal(size=(B, s, H, D)), rng.normal(size=(B, s, H, D))
    return tuple(jnp.asarray(a, jnp.float32) for a in (q, k, v))


def _masks(t, s):
    """Named masks: key padding [B,1,1,S] and an explicit [B,H,T,S] one with an empty row."""
    padding = jnp.arange(s)[None, None, None, :] < jnp.array([s - 2, s])[:, None, None, None]
    rng = np.random.default_rng(1)
    explicit = jnp.asarray(rng.random((B, H, t, s)) < 0.6).at[:, :, :, 0].set(True)
    explicit = explicit.at[1, 0, t - 1].set(False)  # one query sees no key at all
    return {"none": None, "padding": padding, "explicit": explicit}


MASK_CASES = (("padding", False), ("padding", True), ("explicit", True))


def _loss(q, k, v, mask, **kw):
    out = dot_product_attention(q, k, v, mask=mask, **kw)
    return jnp.sum(jnp.sin(3.0 * out)), out


@functools.partial(jax.jit, static_argnames=("normalizer", "is_causal"))
def _fused_and_reference(q, k, v, mask, normalizer, is_causal):
    """(out, grads) of both paths."""
    f = jax.value_and_grad(_loss, argnums=(0, 1, 2), has_aux=True)
    res = {}
    for impl in ("fused", "reference"):
        (_, out), g = f(
            q, k, v, mask, normalizer=normalizer, is_causal=is_causal, implementation=impl
        )
        res[impl] = out, g
    return res


def _assert_paths_agree(res):
    chex.assert_trees_all_close(res["fused"], res["reference"], atol=2e-6)


class AttentionTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("softmax", "softmax1")
    def test_fused_equals_reference_unmasked(self, normalizer):
        q, k, v = _qkv()
        outs = {
            impl: self.variant(
                functools.partial(dot_product_attention, normalizer=normalizer, implementation=impl)
            )(q, k, v)
            for impl in ("fused", "reference", None)
        }
        chex.assert_trees_all_close(outs["fused"], outs["reference"], atol=2e-6)
        chex.assert_trees_all_close(outs[None], outs[default_implementation(normalizer)])

    # Unmasked causal attention: see the cross-attention test (T < S and T > S).
    @parameterized.parameters(*[(n, m, c) for n in ("softmax", "softmax1") for m, c in MASK_CASES])
    def test_fused_equals_reference_with_masks(self, normalizer, mask, is_causal):
        q, k, v = _qkv()
        res = _fused_and_reference(q, k, v, _masks(5, 5)[mask], normalizer, is_causal)
        _assert_paths_agree(res)
        out, grads = res["fused"]
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
        if mask == "explicit":  # the query that sees no key gets 0 and passes no gradient
            np.testing.assert_array_equal(out[1, 4, 0], 0.0)
            np.testing.assert_array_equal(grads[0][1, 4, 0], 0.0)

    @parameterized.product(normalizer=("softmax", "softmax1"), ts=((3, 6), (6, 3)))
    def test_fused_equals_reference_cross_attention_causal(self, normalizer, ts):
        q, k, v = _qkv(*ts)
        # No mask: softmax1's fused path turns causal into a local window; check it for T != S.
        _assert_paths_agree(_fused_and_reference(q, k, v, None, normalizer, True))

    def test_masked_keys_do_not_matter(self):
        q, k, v = _qkv()
        pad = _masks(5, 5)["padding"]  # batch 0 masks its last two keys
        k2, v2 = k.at[0, 3:].set(1e3), v.at[0, 3:].set(-7.0)
        for normalizer in NORMALIZERS:
            a = dot_product_attention(q, k, v, normalizer=normalizer, mask=pad, **GZ)
            b = dot_product_attention(q, k2, v2, normalizer=normalizer, mask=pad, **GZ)
            chex.assert_trees_all_close(a, b, atol=1e-6)

    @parameterized.parameters("softmax", "softmax1", "clipped", "clipped_softmax1")
    def test_reference_matches_direct_formula(self, normalizer):
        q, k, v = (np.asarray(a, np.float64) for a in _qkv(4, 6))
        causal = np.tril(np.ones((4, 6), bool))
        logits = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(D)
        e = np.where(causal, np.exp(logits), 0.0)
        one = 1.0 if normalizer.endswith("softmax1") else 0.0
        w = e / (one + e.sum(-1, keepdims=True))
        if normalizer.startswith("clipped"):
            w = np.where(causal, np.clip((GZ["zeta"] - GZ["gamma"]) * w + GZ["gamma"], 0, 1), 0)
        expected = np.einsum("bhts,bshd->bthd", w, v)
        got = dot_product_attention(
            *(jnp.asarray(a, jnp.float32) for a in (q, k, v)),
            normalizer=normalizer,
            is_causal=True,
            **GZ,
        )
        chex.assert_trees_all_close(got, expected, atol=2e-6)
        weights = attention_weights(*(jnp.asarray(a, jnp.float32) for a in (q, k)), **GZ)
        chex.assert_shape(weights, (B, H, 4, 6))


CASES = [(n, "reference") for n in NORMALIZERS] + [("softmax", "fused"), ("softmax1", "fused")]


@jax.jit
def _all_cases(q, k, v, mask):
    """For every (normalizer, path): (out, grads) of causal masked attention."""
    f = jax.value_and_grad(_loss, argnums=(0, 1, 2), has_aux=True)
    res = {}
    for n, impl in CASES:
        (_, out), grads = f(q, k, v, mask, normalizer=n, implementation=impl, is_causal=True, **GZ)
        res[n, impl] = out, grads
    return res


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_keeps_dtype_and_matches_fp32(dtype):
    q, k, v = _qkv()
    mask = _masks(5, 5)["padding"]
    low = _all_cases(*(a.astype(dtype) for a in (q, k, v)), mask)
    ref = _all_cases(q, k, v, mask)
    for case, (out, grads) in low.items():
        assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
        chex.assert_trees_all_close(out.astype(jnp.float32), ref[case][0], atol=5e-2)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
def test_adversarial_inputs_stay_finite(dtype):
    # q scaled so logits reach about +-1e4; batch 1 fully masked; causal on top.
    q, k, v = _qkv(scale=1e4 / np.sqrt(D) / 2)
    mask = jnp.ones((B, 1, 1, 5), bool).at[1].set(False)
    for case, (out, grads) in _all_cases(*(a.astype(dtype) for a in (q, k, v)), mask).items():
        assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
        for a in (out, *grads):
            assert bool(jnp.all(jnp.isfinite(a))), case
        np.testing.assert_array_equal(out[1], 0.0)
        assert bool(jnp.any(jnp.abs(grads[2]) > 0)), case  # v still gets gradient


def test_length_one():
    q, k, v = _qkv(1, 1)
    for normalizer in NORMALIZERS:
        out = dot_product_attention(q, k, v, normalizer=normalizer, **GZ)
        assert bool(jnp.all(jnp.isfinite(out)))
        if normalizer == "softmax":  # one key takes all the weight
            chex.assert_trees_all_close(out, v, atol=1e-6)
        if normalizer == "softmax1":  # the zero key competes: weight sigmoid(logit)
            w = jax.nn.sigmoid(jnp.einsum("bthd,bshd->bth", q, k) / np.sqrt(D))
            chex.assert_trees_all_close(out, w[..., None] * v, atol=1e-6)


def test_bad_input_names_the_argument():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="normalizer must be one of"):
        dot_product_attention(q, k, v, normalizer="softmax_1")
    with pytest.raises(ValueError, match="implementation must be one of"):
        dot_product_attention(q, k, v, implementation="flash")
    with pytest.raises(ValueError, match="implementation='fused' supports normalizer"):
        dot_product_attention(q, k, v, normalizer="clipped", implementation="fused", **GZ)
    with pytest.raises(ValueError, match="needs gamma and zeta"):
        dot_product_attention(q, k, v, normalizer="clipped")
    with pytest.raises(ValueError, match=r"q and k must be \[B, L, H, D\]"):
        dot_product_attention(q[0], k, v)
    with pytest.raises(ValueError, match="q and k must share B, H and D"):
        dot_product_attention(q[..., :3], k, v)
    with pytest.raises(ValueError, match="v must have k's shape"):
        dot_product_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match="mask must be broadcastable"):
        dot_product_attention(q, k, v, mask=jnp.ones((B, H, 5, 4), bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        dot_product_attention(q, k, v, mask=jnp.ones((B, H, 5, 5)))


def test_fused_sink_matches_weights():
    q, k, v = jax.random.normal(jax.random.key(3), (3, 2, 5, 4, 8))
    sink = 2.0 * jax.random.normal(jax.random.key(4), (4,))
    pad = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)[:, None, None, :]
    for mask, causal in [(None, False), (None, True), (pad, False), (pad, True)]:
        fused = attn.sink_attention(q, k, v, sink, mask=mask, is_causal=causal)
        w = attn.sink_weights(q, k, sink, mask=mask, is_causal=causal)
        np.testing.assert_allclose(fused, jnp.einsum("bhts,bshd->bthd", w, v), atol=1e-5)
        # the sink takes the mass the keys leave: row sums = 1 - 1 / (1 + sum exp(l - s))
        assert bool(jnp.all(w.sum(-1) < 1.0))
