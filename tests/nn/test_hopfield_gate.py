"""GatedHopfield: a per-head gate between a Hopfield layer's heads and its output projection."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop.nn.hopfield import Hopfield
from outeffhop.nn.hopfield_gate import GatedHopfield
from outeffhop.nn.pooling import HopfieldLayer

KW = (("input_size", 8), ("num_heads", 2), ("normalizer", "softmax1"))


def _inputs():
    r = jax.random.normal(jax.random.key(0), (2, 3, 8))
    y = jax.random.normal(jax.random.key(1), (2, 5, 8))
    return (y, r, y)


@pytest.mark.parametrize(("layer", "cls"), [("hopfield", Hopfield), ("lookup", HopfieldLayer)])
def test_open_gate_is_the_ungated_layer_and_a_closed_head_contributes_nothing(layer, cls):
    extra = (("quantity", 4),) if layer == "lookup" else ()
    gated = GatedHopfield(layer, KW + extra, "unconditional_per_head")
    inputs = _inputs() if layer == "hopfield" else _inputs()[1]
    p = gated.init(jax.random.key(2), inputs)["params"]
    plain = cls(**dict(KW + extra))
    inner = {**p["hopfield"], "out_proj": p["out_proj"]}
    want = plain.apply({"params": inner}, inputs)
    open_ = {**p, "gate": {"logit": jnp.full((2,), 50.0)}}
    chex.assert_trees_all_close(gated.apply({"params": open_}, inputs), want, atol=1e-5)
    # Close head 1: the output is W_O applied to head 0's part alone.
    half = {**p, "gate": {"logit": jnp.array([50.0, -50.0])}}
    heads = cls(**dict(KW + extra), disable_out_projection=True).apply(
        {"params": p["hopfield"]}, inputs
    )
    heads = heads.at[..., 4:].set(0.0)
    w, b = p["out_proj"]["kernel"], p["out_proj"]["bias"]
    chex.assert_trees_all_close(gated.apply({"params": half}, inputs), heads @ w + b, atol=1e-5)


def test_conditional_gate_depends_on_the_state_and_starts_at_gate_init():
    gated = GatedHopfield("hopfield", KW, "conditional_per_token", gate_init=0.25)
    inputs = _inputs()
    v = gated.init(jax.random.key(3), inputs)
    _, state = gated.apply(v, inputs, mutable=["intermediates"], capture_intermediates=True)
    g = state["intermediates"]["gate"]["__call__"][0]
    assert g.shape == (2, 3, 2, 1)
    np.testing.assert_allclose(g, 0.25, atol=0.05)  # small kernels: close to the init value
    assert float(jnp.std(g)) > 0  # per token


def test_bad_fields_name_what_is_wrong():
    with pytest.raises(ValueError, match="gate must be one of"):
        GatedHopfield("hopfield", KW, "always")
    with pytest.raises(ValueError, match="layer must be one of"):
        GatedHopfield("pool", KW)
    with pytest.raises(ValueError, match="input_size"):
        GatedHopfield("hopfield", (("num_heads", 2),))
    with pytest.raises(ValueError, match="disable_out_projection"):
        GatedHopfield("hopfield", KW + (("disable_out_projection", True),))
