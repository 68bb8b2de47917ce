"""The (data, model) mesh: shapes from config.mesh, tensor parallelism equals one device."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from outeffhop import models
from outeffhop.train import register_task, sharding, tasks
from outeffhop.train import train_and_evaluate as train
from outeffhop.train.metrics_log import read_metrics
from outeffhop.train.tasks import _transformer
from tests.train import toy_task as toy


def _loss(model, params, batch, rng, train):
    return _transformer._loss(model, params, {"input_ids": batch["tokens"]}, rng, train)


def tiny_opt_task() -> tasks.Task:
    """OPT (tiny sizes) on the toy task's Markov sequences: a logically partitioned model."""
    return tasks.Task(
        name="tiny_opt",
        build_model=lambda cfg: models.build_model(cfg.model),
        init=lambda model, rngs, b: _transformer._init(model, rngs, {"input_ids": b["tokens"]}),
        loss=_loss,
        example_batch=lambda cfg, n: {"tokens": np.zeros((n, cfg.data.seq_len), np.int32)},
        train_iter=toy._train_iter,
        eval_batches=toy._eval_batches,
        tokens_per_example=lambda cfg: cfg.data.seq_len,
        logical_rules=_transformer._rules,
    )


register_task("tiny_opt", tiny_opt_task)


def tiny_opt_config(**model):
    c = toy.get_config()
    c.task = "tiny_opt"
    c.model = models.get_config("opt-tiny", vocab_size=16, max_len=16, hidden_dropout=0.1)
    c.model.update(model)
    c.num_steps, c.log_every, c.eval_steps, c.checkpoint_every = 3, 1, 0, 0
    return c


def _losses(workdir, key="loss"):
    return np.array([r[key] for r in read_metrics(workdir) if key in r])


def test_mesh_shape_resolves_minus_one_and_rejects_bad_sizes():
    assert sharding.mesh_shape(8, -1, 1) == (8, 1)
    assert sharding.mesh_shape(8, -1, 4) == (2, 4)
    assert sharding.mesh_shape(8, 2, -1) == (2, 4)
    assert sharding.mesh_shape(8, 4, 2) == (4, 2)
    for data, model, match in [
        (-1, 3, "must divide the 8 devices"),
        (2, 2, "must equal the device count 8"),
        (-1, -1, "cannot both be -1"),
        (0, 8, "config.mesh.data must be a positive integer or -1"),
    ]:
        with pytest.raises(ValueError, match=match):
            sharding.mesh_shape(8, data, model)
    mesh = sharding.make_mesh(data=2, model=4)
    assert dict(mesh.shape) == {"data": 2, "model": 4}
    # consecutive devices form one model group
    assert [d.id for d in mesh.devices[0]] == [d.id for d in jax.devices()[:4]]


def test_two_by_four_mesh_gives_the_losses_of_one_device(tmp_path):
    """fsdp over data=2 plus Megatron splits over model=4 == one device (fp32, dropout on)."""
    c = tiny_opt_config(num_layers=1)  # every split is in one layer; two cost a compile more
    one = train(c, str(tmp_path / "one"), devices=jax.devices()[:1])
    c.parallelism, c.fsdp_min_size, c.mesh.model = "fsdp", 0, 4
    tp = train(c, str(tmp_path / "tp"))
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(
            _losses(tmp_path / "tp", key), _losses(tmp_path / "one", key), rtol=2e-5
        )
    for a, b in zip(jax.tree.leaves(tp["params"]), jax.tree.leaves(one["params"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    layer = tp["params"]["layer_0"]
    assert layer["ffn_in"]["kernel"].sharding.spec == P("data", "model")  # column parallel
    assert layer["ffn_out"]["kernel"].sharding.spec == P("model", "data")  # row parallel
    assert layer["attention"]["query"]["kernel"].sharding.spec == P("data", "model")
    assert layer["attention"]["out_proj"]["kernel"].sharding.spec == P("model", "data")
    assert tp["params"]["word_embeddings"]["embedding"].sharding.spec == P("model", "data")


def test_model_axis_needs_logical_rules_and_divisible_sizes(tmp_path):
    c = toy.get_config()
    c.mesh.model = 2
    with pytest.raises(ValueError, match="config.mesh.model > 1 needs a task whose params"):
        train(c, str(tmp_path / "toy"))
    c = tiny_opt_config(num_heads=2, d_ff=66)
    c.mesh.model = 4
    with pytest.raises(
        ValueError, match="ffn_in/bias dimension 66 over 4 devices of mesh axis .model."
    ):
        train(c, str(tmp_path / "odd"))
