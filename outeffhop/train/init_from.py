"""The parameters a run starts from: ``config.init_from`` = "hf:<folder>" or an orbax run.

``"hf:/path"``: a Hugging Face ``save_pretrained`` folder (``models.hf``). ``configure``
first sets ``config.model``'s architecture fields (sizes, vocabulary, position table,
LayerNorm eps, activation) from its config.json, in place, so the caller's config describes
the model that is trained and evaluated; attention, dropout and dtypes stay as configured
(``--config.model.attention.normalizer=softmax1`` fine-tunes a pretrained model into
OutEffHop). ``"/path"``: the newest checkpoint of another run (its workdir, or the
``checkpoints`` folder in it); ``config.model`` must describe that run's model. Only the
parameters are taken: step, optimizer state and data position start fresh. A run whose
workdir already holds a checkpoint resumes from it and ignores ``init_from``.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import traverse_util

from outeffhop.models import hf
from outeffhop.train import checkpoint

HF_PREFIX = "hf:"


def parse(init_from: str) -> tuple[str, str]:
    """("hf" | "orbax" | "", path) of an ``init_from`` string ("" = random init)."""
    if not init_from:
        return "", ""
    if not isinstance(init_from, str):
        raise ValueError(f"config.init_from must be a string path; got {init_from!r}.")
    if init_from.startswith(HF_PREFIX):
        return "hf", os.path.expanduser(init_from[len(HF_PREFIX) :])
    return "orbax", os.path.expanduser(init_from)


def check(init_from: str) -> None:
    """Raises ValueError unless ``init_from`` is "", an HF folder or a run's checkpoints."""
    kind, path = parse(init_from)
    if kind == "hf" and not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(
            f"config.init_from {init_from!r} holds no config.json; give "
            "hf:<save_pretrained folder>."
        )
    if kind == "orbax" and not os.path.isdir(checkpoint.checkpoint_dir(_workdir(path))):
        raise ValueError(
            f"config.init_from {init_from!r} holds no checkpoints/; give a run's workdir or "
            "hf:<save_pretrained folder>."
        )


def _workdir(path: str) -> str:
    path = path.rstrip("/")
    return os.path.dirname(path) if os.path.basename(path) == "checkpoints" else path


def configure(cfg) -> None:
    """With ``init_from = "hf:..."``: ``cfg.model``'s architecture fields from config.json."""
    kind, path = parse(cfg.get("init_from", ""))
    if kind != "hf":
        return
    check(cfg.init_from)
    imported = hf.model_config(hf.read_config(path))
    if imported.model != cfg.model.get("model"):
        raise ValueError(
            f"config.init_from {cfg.init_from!r} holds a {imported.model} model; "
            f"config.model.model is {cfg.model.get('model')!r}."
        )
    with cfg.model.unlocked():
        for field in hf.ARCHITECTURE[1:]:
            if field in imported:
                cfg.model[field] = imported[field]


def load_params(cfg, abstract_params, rng=None):
    """The parameters named by ``cfg.init_from``, as host arrays shaped like ``abstract_params``.

    Raises ValueError when the checkpoint's parameters differ in shape from the config's.
    """
    kind, path = parse(cfg.get("init_from", ""))
    if kind == "hf":
        params = hf.load_params(cfg.model, path, rng)
    elif kind == "orbax":
        params = _orbax_params(_workdir(path), abstract_params)
    else:
        raise ValueError("config.init_from is empty; nothing to load.")
    _check_like(params, abstract_params, cfg.init_from)
    return params


def initial_params(cfg, rng=None):
    """``configure(cfg)``, then the parameters ``cfg.init_from`` names for ``cfg.task``'s model.

    For evaluating a checkpoint without training it (scripts/evaluate.py); the task's
    config checks run first (e.g. data.vocab_size <= model.vocab_size).
    """
    from outeffhop.train import tasks

    configure(cfg)
    task = tasks.get_task(cfg.task)
    if task.check is not None:
        task.check(cfg)
    model = task.build_model(cfg)
    batch = task.example_batch(cfg, 1)
    abstract = jax.eval_shape(
        lambda r: nn.meta.unbox(task.init(model, {"params": r, "dropout": r}, batch)),
        jax.random.key(cfg.get("seed", 0)),
    )
    return load_params(cfg, abstract, rng)


def _check_like(params, abstract, where: str) -> None:
    got = traverse_util.flatten_dict(params, sep="/")
    want = traverse_util.flatten_dict(abstract, sep="/")
    for key in sorted(set(got) | set(want)):
        g, w = got.get(key), want.get(key)
        if g is None or w is None or tuple(g.shape) != tuple(w.shape):
            raise ValueError(
                f"config.init_from {where!r}: parameter {key} is "
                f"{'absent' if g is None else tuple(g.shape)} there but "
                f"{'absent' if w is None else tuple(w.shape)} in config.model."
            )


def _orbax_params(workdir: str, abstract_params):
    """The params of the newest checkpoint in ``workdir`` (read whole onto one local device)."""
    step = checkpoint.latest_compatible_step(workdir, abstract_params)
    if step is None:
        raise ValueError(f"config.init_from {workdir!r} holds no checkpoint.")
    mngr = checkpoint.make_manager(workdir, 1, read_only=True)
    try:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
            mngr.item_metadata(step)["state"],
        )
        out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    finally:
        mngr.close()
    return jax.device_get(out["state"]["params"])


def fresh_state(params, *, tx):
    """The train state of step 0 around given ``params`` (run under jit with out_shardings)."""
    params = jax.tree.map(jnp.asarray, params)
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
