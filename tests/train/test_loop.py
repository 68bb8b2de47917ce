"""The trainer: schedules, sharding equivalence, exact resume, NaN guard, bad configs."""

import functools
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from outeffhop.train import (
    NonFiniteLossError,
    config_check,
    loop,
    optim,
    register_task,
    sharding,
    tasks,
)
from outeffhop.train import train_and_evaluate as train
from outeffhop.train.metrics_log import read_metrics
from tests import ROOT
from tests.train import toy_task as toy


def losses(workdir):
    return np.array([r["loss"] for r in read_metrics(workdir) if "loss" in r])


def tree_digest(path):
    """Hash of every file's relative path, size, mtime and bytes under ``path``."""
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            p = os.path.join(root, name)
            st = os.stat(p)
            h.update(f"{os.path.relpath(p, path)}:{st.st_size}:{st.st_mtime_ns}".encode())
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_schedules_warmup_then_decay():
    cfg = toy.get_config().optim
    cfg.lr, cfg.warmup_steps, cfg.end_lr_ratio = 1.0, 10, 0.0
    lin = optim.learning_rate_schedule(cfg, 110)
    np.testing.assert_allclose([lin(0), lin(5), lin(10), lin(60), lin(110)], [0, 0.5, 1, 0.5, 0])
    cfg.schedule = "cosine"
    cos = optim.learning_rate_schedule(cfg, 110)
    np.testing.assert_allclose([cos(5), cos(10), cos(60), cos(110)], [0.5, 1, 0.5, 0], atol=1e-6)
    cfg.schedule = "constant"
    np.testing.assert_allclose(optim.learning_rate_schedule(cfg, 110)(100), 1.0)


def test_no_weight_decay_on_bias_and_layernorm():
    c = toy.get_config()
    model = toy.ToyLM(**c.model.to_dict())
    tokens = np.zeros((1, 4), np.int32)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, train=False))["params"]
    mask = optim.decay_mask(params)
    assert mask["Embed_0"]["embedding"] and mask["Dense_0"]["kernel"]
    assert not mask["Dense_0"]["bias"]
    assert not any(jax.tree.leaves(mask["LayerNorm_0"]))


def test_eight_devices_dp_and_fsdp_with_accumulation_give_the_losses_of_one(tmp_path):
    """1 device == 8 devices data parallel == 8 devices FSDP with 2 microbatches."""
    c = toy.get_config()
    c.model.dropout = 0.0  # microbatches draw their own dropout keys
    c.num_steps, c.log_every, c.eval_steps, c.checkpoint_every = 8, 1, 0, 0
    c.fsdp_min_size = 64
    one = train(c, str(tmp_path / "one"), devices=jax.devices()[:1])
    dp = train(c, str(tmp_path / "dp"))
    c.parallelism, c.grad_accum_steps = "fsdp", 2
    fsdp = train(c, str(tmp_path / "fsdp"))
    assert len(jax.devices()) == 8
    for run, state in (("dp", dp), ("fsdp", fsdp)):
        np.testing.assert_allclose(losses(tmp_path / run), losses(tmp_path / "one"), rtol=2e-5)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        assert len(state["params"]["Dense_1"]["kernel"].sharding.device_set) == 8
        replicated = [x.sharding.is_fully_replicated for x in jax.tree.leaves(state)]
        assert all(replicated) == (run == "dp")


RUN = """
import sys, jax
from outeffhop.train import train_and_evaluate
from tests.train import toy_task as toy
c = toy.get_config()
c.num_steps, c.log_every, c.checkpoint_every, c.eval_steps = {steps}, 1, 7, 0
train_and_evaluate(c, sys.argv[1], devices=jax.devices()[:1])
"""


def test_exact_resume_after_sigkill(tmp_path):
    steps = 100
    code = RUN.format(steps=steps)
    c = toy.get_config()
    c.num_steps, c.log_every, c.checkpoint_every, c.eval_steps = steps, 1, 7, 0
    kill_at = int(np.random.default_rng().integers(10, 70))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", code, str(killed)], cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed / "metrics.jsonl").exists() and len(losses(killed)) >= kill_at:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert (killed / "checkpoints").exists()
    one = jax.devices()[:1]
    resumed = train(c, str(killed), devices=one)
    straight = train(c, str(tmp_path / "straight"), devices=one)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(losses(killed), losses(tmp_path / "straight"))


def _poisoned_task():
    """The toy task whose 7th training batch holds an out-of-vocabulary token (NaN embed)."""
    base = toy.task()

    def train_iter(cfg, workdir, pi, pc):
        ds = toy._dataset(cfg, cfg.data.seed, cfg.batch_size // pc, pi, pc)
        bad = cfg.model.vocab_size + 3
        return iter(ds.map_with_index(lambda i, b: {"tokens": b["tokens"] + bad * (i == 6)}))

    return tasks.Task(**{**base.__dict__, "name": "toy_nan", "train_iter": train_iter})


def test_nan_guard_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    register_task("toy_nan", _poisoned_task)
    c = toy.get_config()
    c.task, c.checkpoint_every, c.num_steps, c.eval_steps = "toy_nan", 3, 20, 0
    with pytest.raises(NonFiniteLossError, match="at step 7.*checkpoint kept: step 6"):
        train(c, str(tmp_path), devices=jax.devices()[:1])
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bf16 toy run with checkpoints at steps 10 and 20 (and an eval at the end)."""
    workdir = tmp_path_factory.mktemp("trained")
    c = toy.get_config()
    c.model.dtype = "bfloat16"
    c.num_steps, c.checkpoint_every, c.eval_every = 20, 10, 0
    state = train(c, str(workdir), devices=jax.devices()[:1])
    return workdir, state


def test_bf16_compute_trains_with_float32_params(trained):
    workdir, state = trained
    ls = losses(workdir)
    assert np.all(np.isfinite(ls)) and ls[-1] < ls[0]
    assert {x.dtype for x in jax.tree.leaves(state["params"])} == {np.dtype(np.float32)}
    assert [r["step"] for r in read_metrics(workdir) if "eval_loss" in r] == [20]


def _corrupt(workdir):
    for root, _, files in os.walk(workdir / "checkpoints" / "20" / "state"):
        for name in files:
            if os.path.basename(root) == "d":
                with open(os.path.join(root, name), "r+b") as f:
                    f.write(b"garbage" * 4)


def _partial(workdir):
    shutil.rmtree(workdir / "checkpoints" / "20" / "state" / "d")
    os.remove(workdir / "checkpoints" / "20" / "state" / "_METADATA")


BAD = [
    ("batch_size", 0, "config.batch_size must be > 0"),
    ("num_steps", -5, "config.num_steps must be > 0"),
    ("optim.lr", 0.0, "config.optim.lr must be > 0"),
    ("model.hidden_size", 0, "config.model.hidden_size must be > 0"),
    ("data.seq_len", -1, "config.data.seq_len must be > 0"),
    ("optim.name", "lamb", "config.optim.name must be one of adamw"),
    ("optim.schedule", "step", "config.optim.schedule must be one of linear"),
    ("parallelism", "tp", "config.parallelism must be dp or fsdp"),
    ("rng_impl", "philox", "config.rng_impl must be one of threefry2x32"),
    ("batch_size", 12, "config.batch_size must be divisible by grad_accum_steps x device"),
    ("data.path", "/no/such/corpus", "config.data.path '/no/such/corpus' does not exist"),
    ("model.hidden_size", 48, "another shape than config.model .*Dense_0/bias"),
    ("corrupt", _corrupt, "is corrupt or partial"),
    ("partial", _partial, "is corrupt or partial"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"), BAD, ids=[b[0] + str(i) for i, b in enumerate(BAD)]
)
def test_bad_config_fails_clearly_and_touches_no_checkpoint(
    tmp_path, trained, field, value, message
):
    workdir = tmp_path / "w"
    shutil.copytree(trained[0], workdir)
    c = toy.get_config()
    c.num_steps = 6
    if callable(value):
        value(workdir)
    else:
        section, _, name = field.rpartition(".")
        (c[section] if section else c)[name] = value
    before = tree_digest(workdir)
    with pytest.raises(ValueError, match=message):
        train(c, str(workdir))
    assert tree_digest(workdir) == before


def test_script_exits_nonzero_on_bad_config(tmp_path):
    config = tmp_path / "toy_config.py"
    config.write_text("from tests.train import toy_task\n\nget_config = toy_task.get_config\n")
    out = subprocess.run(
        [sys.executable, "scripts/train.py", "--config", str(config),
         "--workdir", str(tmp_path), "--config.optim.schedule=bogus"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT},
    )  # fmt: skip
    assert out.returncode == 1
    assert "config.optim.schedule must be one of" in out.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


def _load_config(name, preset):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


@pytest.mark.parametrize("name", ["bert", "opt", "vit"])
def test_config_presets_are_valid(name):
    for preset in ("quick", "cpu", "paper"):
        c = _load_config(name, preset)
        task = tasks.get_task(c.task)
        c.data.path = ""  # the paper ViT preset needs a user's ImageNet folder
        config_check.validate(c, task, num_devices=8)
        task.check(c)
        task.build_model(c)
    with pytest.raises(ValueError, match="preset must be one of quick, cpu, paper"):
        _load_config(name, "huge")


def test_model_params_and_adam_moments_follow_the_logical_fsdp_rules():
    c = _load_config("vit", "quick")
    task = tasks.get_task("vit")
    model = task.build_model(c)
    tx = optim.make_optimizer(c.optim, c.num_steps)
    init = functools.partial(loop.init_fn, cfg=c, task=task, model=model, tx=tx)
    abstract = jax.eval_shape(init, jax.random.key(0))
    specs = loop._param_specs_for(c, task, model, "fsdp")
    mesh = sharding.make_mesh()
    sh = sharding.state_shardings(abstract, mesh, "fsdp", 0, specs)
    kernel = sh["params"]["layer_0"]["ffn_in"]["kernel"]  # [embed, mlp]
    assert kernel.spec == P("data", None)
    shape = abstract["params"]["layer_0"]["ffn_in"]["kernel"].shape
    opt_sh, opt_abs = jax.tree.leaves(sh["opt_state"]), jax.tree.leaves(abstract["opt_state"])
    moments = [s for s, x in zip(opt_sh, opt_abs, strict=True) if x.shape == shape]
    assert len(moments) == 2 * c.model.num_layers  # Adam mu and nu of every ffn_in
    assert all(m == kernel for m in moments)
    dp = sharding.state_shardings(
        abstract, mesh, "dp", 0, loop._param_specs_for(c, task, model, "dp")
    )
    assert all(x.is_fully_replicated for x in jax.tree.leaves(dp))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert", "opt", "vit"])
def test_quick_presets_train_fsdp_on_eight_devices(tmp_path, name):
    """The model adapters end to end: tokenizer/data pipeline, FSDP shardings, eval, save."""
    c = _load_config(name, "quick")
    c.parallelism, c.num_steps, c.eval_steps, c.log_every = "fsdp", 3, 1, 1
    c.data.max_chars = min(c.data.get("max_chars", 0) or 200_000, 200_000)
    state = train(c, str(tmp_path))
    assert np.all(np.isfinite(losses(tmp_path)))
    assert not state["params"]["layer_0"]["ffn_in"]["kernel"].sharding.is_fully_replicated
    assert os.listdir(tmp_path / "checkpoints") == ["3"]
