"""Prompt tuning: only P moves, inits, optimizers, poly-attention gradients, the two run()s."""

import importlib
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_theory import model as pm
from prompt_theory import tuning
from prompt_theory.experiments import phase_transition as pt
from prompt_theory.experiments import prompt_tuning

tuning_config = importlib.import_module("configs.prompt_tuning")
pt_config = importlib.import_module("configs.phase_transition")


def _cfg(**overrides):
    cfg = tuning_config.get_config("quick").tune
    cfg.update(
        dict(
            steps=12, batch_size=16, log_every=5, prompt_len=4, optimizer="adam", learning_rate=0.05
        )
    )
    cfg.update(overrides)
    return cfg


def _data():
    params = pm.init_params(jax.random.PRNGKey(0), 4, d_ff=8)
    x, y = tuning.lipschitz_task(jax.random.PRNGKey(1), 16, 5, 4)
    return params, x, y


def test_prompt_gets_gradients_and_params_do_not_move():
    params, x, y = _data()
    frozen = jax.tree.map(jnp.copy, params)
    prompt = tuning.init_prompt(jax.random.PRNGKey(2), 4, 4)
    grad = jax.jit(jax.grad(tuning.prompt_loss))(prompt, params, x, y)
    assert float(jnp.abs(grad).max()) > 0
    lines = []
    tuned, hist = tuning.tune_prompt(
        params, x, y, _cfg(steps=7), key=jax.random.PRNGKey(2), log=lines.append
    )
    chex.assert_trees_all_equal(params, frozen)
    assert not np.allclose(tuned, prompt)
    assert len(hist["loss"]) == 7 and hist["loss"][-1] < hist["loss"][0]
    assert [c["step"] for c in hist["criterion"]] == [0, 5, 6] and len(lines) == 3
    assert all("B_prompt" in line and ("efficient" in line or "hard" in line) for line in lines)


def test_the_step_differentiates_only_the_prompt():
    params, x, y = _data()
    tx = tuning.make_optimizer("sgd", 0.1)
    step = tuning.make_train_step(params, tx)
    args = (jnp.zeros((4, 4)), tx.init(jnp.zeros((4, 4))), x, y)
    jaxpr = jax.make_jaxpr(step)(*args)
    # the step's inputs are (prompt, opt_state, x, y) only: params enter as constants
    assert len(jaxpr.in_avals) == len(jax.tree.leaves(args))


def test_poly_gradients_match_exact_for_small_norms():
    params, x, y = _data()
    prompt = 0.1 * tuning.init_prompt(jax.random.PRNGKey(3), 4, 4)
    grad = jax.jit(jax.grad(tuning.prompt_loss), static_argnames=("scale", "attention_fn"))
    exact = grad(prompt, params, 0.3 * x, y, scale="1/d")
    poly = grad(prompt, params, 0.3 * x, y, scale="1/d", attention_fn=tuning.attention_fn_for(4))
    chex.assert_trees_all_close(poly, exact, atol=1e-5)


def test_projected_tuning_stays_under_the_target():
    params, x, y = _data()
    _, hist = tuning.tune_prompt(
        params,
        x,
        y,
        _cfg(norm_target=0.2, project=True, learning_rate=0.5),
        key=jax.random.PRNGKey(0),
        log=lambda _: None,
    )
    assert max(c["B_prompt"] for c in hist["criterion"]) <= 0.2 + 1e-5


@pytest.mark.parametrize("method", tuning.INITS)
def test_inits(method):
    source = jax.random.normal(jax.random.PRNGKey(0), (10, 3, 6))
    prompt = tuning.init_prompt(jax.random.PRNGKey(1), 5, 6, method, source=source)
    assert prompt.shape == (5, 6)
    if method == "uniform":
        assert float(jnp.abs(prompt).max()) <= 0.5
    if method in ("sample", "vocab"):  # every row is a row of the source
        rows = np.asarray(source).reshape(-1, 6)
        assert all(np.any(np.all(rows == r, axis=1)) for r in np.asarray(prompt))


def test_adafactor_preset_trains():
    params, x, y = _data()
    _, hist = tuning.tune_prompt(
        params,
        x,
        y,
        _cfg(optimizer="adafactor", learning_rate=0.3, steps=20),
        key=jax.random.PRNGKey(0),
        log=lambda _: None,
    )
    assert min(hist["loss"][-5:]) < hist["loss"][0]


def test_bad_input_fails_early():
    params, x, y = _data()
    with pytest.raises(ValueError, match="prompt"):
        tuning.prompt_loss(jnp.zeros((4, 3)), params, x, y)
    with pytest.raises(ValueError, match="method"):
        tuning.init_prompt(jax.random.PRNGKey(0), 4, 4, "text")
    with pytest.raises(ValueError, match="source"):
        tuning.init_prompt(jax.random.PRNGKey(0), 4, 4, "vocab")
    with pytest.raises(ValueError, match="optimizer"):
        tuning.make_optimizer("lamb")
    with pytest.raises(ValueError, match="x and y"):
        tuning.tune_prompt(params, x, y[:, :2], _cfg(), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="preset"):
        tuning_config.get_config("huge")


@pytest.mark.slow
def test_prompt_tuning_run_writes_its_outputs(tmp_path):
    c = tuning_config.get_config("quick")
    c.tasks = {"memorization": 4}
    c.variants = {"exact": {}, "poly_g2": {"degree": 2}}
    c.tune.update(dict(steps=3, batch_size=4, log_every=2, prompt_len=2))
    res = prompt_tuning.run(c, str(tmp_path))
    assert set(res) == {"memorization"} and set(res["memorization"]) == {"exact", "poly_g2"}
    for name in ("metrics.json", "report.md", "loss_curves.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["results"]["memorization"]["exact"][
        "loss_curve"
    ]


@pytest.mark.slow
def test_phase_transition_run_writes_its_outputs(tmp_path):
    c = pt_config.get_config("quick")
    c.error.update(dict(n=32, degrees=(1, 3), bounds=(0.3, 2.0)))
    c.degree.update(dict(n=32, bounds=(0.3, 1.0), max_degree=3, log2_n_crit=(8, 16)))
    c.time.update(
        dict(log2_n_min=6, log2_n_max=7, degrees=(2,), repeats=1, dense_max_bytes=4 * 64**2)
    )
    m = pt.run(c, str(tmp_path))
    errs = m["error"]["degrees"]["1"]["max_err"]
    assert errs[1] > errs[0]  # error grows with B at fixed rank
    assert (
        m["time"]["seconds"]["exact_blocked"][0] is None
        and m["time"]["seconds"]["exact_blocked"][1]
    )
    assert set(m["time"]["crossover_n"]) == {"poly_g2", "poly_g2_causal"}
    sec = m["time"]["seconds"]  # the 1-layer readout's baselines: the last L rows only
    assert {"rows_exact_L8", "rows_exact_L128", "rows_poly_g2_L128"} <= set(sec)
    assert "exact_best / poly_g2" in m["time"]["speedup"]
    crit = m["degree"]["B_crit"]
    assert set(crit["limit_ratio"]) == {"0.01", "0.0001", "1/n", "1/n^2"}
    assert crit["d_log2_n"]["1/n"][0] == pytest.approx(0.707, abs=1e-3)  # 0.300 sqrt(ln 2^8)
    for name in (
        "metrics.json",
        "report.md",
        "error_vs_B.png",
        "degree_rank_vs_B.png",
        "time_vs_n.png",
    ):
        assert os.path.getsize(tmp_path / name) > 0
