"""Tests for outeffhop.measure.quant_qwix: real int8 PTQ agrees with the fake-quant W8A8 grid."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop.measure import quant, quant_qwix


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Dense(16, name="fc1")(x))
        return nn.Dense(3, name="head")(nn.LayerNorm(name="ln")(h))


def make_forward(model):
    return lambda v, x: {"out": model.apply(v, x)}


@pytest.fixture(scope="module")
def setup():
    net = Net()
    batches = [jax.random.normal(jax.random.key(i), (4, 6, 8)) * (1 + i) for i in range(3)]
    variables = net.init(jax.random.key(9), batches[0])
    cfg = quant_qwix.calibration_config()
    ranges = quant.calibrate(make_forward(net), variables, batches, cfg)
    return net, variables, batches, cfg, ranges


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_matches_fake_quant(setup, per_channel):
    net, variables, batches, cfg, ranges = setup
    qmodel, qvars = quant_qwix.int8_ptq(net, variables, ranges, batches[0], per_channel=per_channel)
    kernel = qvars["params"]["fc1"]["kernel"].array
    assert kernel.qvalue.dtype == jnp.int8
    assert (len(np.unique(kernel.scale)) == 1) == (not per_channel)
    out = jax.jit(make_forward(qmodel))(qvars, batches[1])["out"]
    fq = dataclasses.replace(cfg, weight_bits=8, weight_per_channel=per_channel)
    want = quant.quantized(make_forward(net), ranges, fq)(variables, batches[1])["out"]
    fp = make_forward(net)(variables, batches[1])["out"]
    assert float(jnp.mean(jnp.abs(want - fp))) > 1e-3  # quantization is visible
    np.testing.assert_allclose(out, want, atol=2e-5)


def test_int8_evaluate_and_missing_range(setup):
    net, variables, batches, _, ranges = setup

    def make_metric(model):
        return lambda v, x: {"mse": jnp.mean(model.apply(v, x) ** 2)}

    res = quant_qwix.int8_evaluate(
        make_metric, net, variables, batches[:2], batches[2:], batches[0]
    )
    assert np.isfinite(res["mse"])
    partial = {k: v for k, v in ranges.items() if not k.startswith("head")}
    with pytest.raises(ValueError, match="ranges has no entry"):
        quant_qwix.int8_ptq(net, variables, partial, batches[0])
