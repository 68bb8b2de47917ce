"""Does a clipped-softmax baseline train? Attention alive at init, gradients, a short run.

Clipped softmax ``clip((zeta - gamma) p + gamma, 0, 1)`` zeroes every weight p below
``-gamma / (zeta - gamma)``. Attention starts near uniform (p ~ 1/L over L keys), so once
``L >= (zeta - gamma) / -gamma`` a row can be all zeros at init: it outputs 0 and passes no
gradient to its query, key and value projections; with every row of a layer dead its
attention never starts. With the ``gamma = -alpha / L`` convention the uniform weight
``(1 + alpha / L) / L - alpha / L`` is <= 0 for every L once ``alpha >= L / (L - 1)``
(about 1): the papers' alpha (12 for OPT) clips uniform attention at any length, and only
rows with few visible keys (the first ~L / alpha queries of a causal model) stay alive.

``check(job, steps)`` measures, for one study job (configs/reproduce.py), the share of
visible attention weights that are non-zero and of query rows that are all zero, per layer,
and the gradient norm of the attention projections, at init and after ``steps`` training
steps, plus the loss curve and how far the query/key kernels moved.

    python -m outeffhop.experiments.outlier_study.clip_init cpu opt clipped 300 [field=value ...]
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop import models
from outeffhop.experiments.outlier_study.jobs import job_config
from outeffhop.launch.configs import load_config
from outeffhop.measure import attention_mass, outliers
from outeffhop.nn.attention import clip_range, uniform_clipped_from
from outeffhop.train import loop, tasks, train_and_evaluate

PROJECTIONS = ("query", "key", "value", "out_proj")


def uniform_weight(gamma: float, zeta: float, num_keys: int) -> float:
    """Clipped softmax of uniform attention over L keys: clip((zeta - gamma) / L + gamma, 0, 1)."""
    return float(np.clip((zeta - gamma) / num_keys + gamma, 0.0, 1.0))


def _weights(cfg, params, batch):
    """{layer path: attention weights [B, H, T, S]} on ``batch`` (explicit-weights path)."""
    cfg = copy.deepcopy(cfg)
    cfg.model.attention.implementation = "reference"
    model = tasks.get_task(cfg.task).build_model(cfg)
    inputs = {**models.model_inputs(cfg.model, batch), "deterministic": True}
    _, found = outliers.capture(
        model, {"params": params}, patterns=[attention_mass.WEIGHTS_PATTERN], **inputs
    )
    return {k: np.asarray(v) for k, v in found.items()}


def alive(cfg, params, batch) -> dict:
    """Per layer: share of visible weights > 0, share of all-zero query rows, mean row sum.

    Visible = where plain softmax on the same params is > 0 (masks and causality), so the
    statistics hold for any model without knowing its masks.
    """
    plain = copy.deepcopy(cfg)
    plain.model.attention.normalizer = "softmax"
    visible = {k: w > 0 for k, w in _weights(plain, params, batch).items()}
    out = {}
    for k, w in _weights(cfg, params, batch).items():
        vis = visible[k]
        rows = vis.any(-1)
        dead = (w <= 0).all(-1) & rows
        out[k.split("/attention")[0]] = {
            "alive_weights": float((w > 0)[vis].mean()),
            "dead_rows": float(dead.sum() / rows.sum()),
            "row_mass": float(w.sum(-1)[rows].mean()),
        }
    return out


def attention_grad_norms(cfg, params, batch) -> dict:
    """{layer: {projection: ||d loss / d kernel||}} of the mean training loss on ``batch``."""
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)

    def loss(p):
        s, w, _ = task.loss(model, p, batch, jax.random.key(0), False)
        return s / jnp.maximum(w, 1.0)

    grads = jax.jit(jax.grad(loss))(params)
    return _per_layer_kernels(grads, lambda g: float(jnp.linalg.norm(g)))


def _per_layer_kernels(tree, fn) -> dict:
    """{layer: {projection: fn(kernel)}} over every ``.../layer_i/attention/<proj>/kernel``."""
    out: dict = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = [getattr(k, "key", str(k)) for k in path]
        is_kernel = len(names) >= 3 and names[-1] == "kernel" and names[-3] == "attention"
        if is_kernel and names[-2] in PROJECTIONS:
            out.setdefault("/".join(names[:-3]), {})[names[-2]] = fn(leaf)
    return out


def _moved(p0, p1) -> dict:
    """{layer: {projection: ||W_1 - W_0|| / ||W_0||}}."""
    a = _per_layer_kernels(p0, np.asarray)
    b = _per_layer_kernels(p1, np.asarray)
    return {
        layer: {k: float(np.linalg.norm(b[layer][k] - v) / np.linalg.norm(v)) for k, v in d.items()}
        for layer, d in a.items()
    }


def _init_params(cfg):
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)
    state = jax.jit(lambda r: loop.init_fn(r, cfg=cfg, task=task, model=model, tx=_NoOpt()))(
        loop._keys(cfg)[0]
    )
    return state["params"]


class _NoOpt:
    """An optax-like object whose state is empty (init only needs the params)."""

    def init(self, params):
        return ()


def check(job: dict, steps: int, workdir: str) -> dict:
    """Alive share, gradients and kernel motion at init and after ``steps`` steps of ``job``."""
    cfg = job_config(job["family"], job["preset"], job["variant"], job["seed"], job["overrides"])
    cfg.num_steps = steps
    cfg.eval_every, cfg.checkpoint_every = 0, 0
    cfg.log_every = max(1, steps // 10)
    task = tasks.get_task(cfg.task)
    batch = next(iter(task.train_iter(cfg, workdir, 0, 1)))
    length = int(cfg.data.seq_len) if "seq_len" in cfg.data else None
    gamma, zeta = clip_range(cfg.model.attention, length or 1)
    p0 = _init_params(cfg)
    t0 = time.perf_counter()
    state = train_and_evaluate(cfg, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        curve = [json.loads(line) for line in f]
    p1 = state["params"]
    return {
        "job": {k: job[k] for k in ("family", "variant", "preset", "seed")},
        "overrides": {k: v for k, v in job["overrides"].items() if "attention" in k},
        "keys": length,
        "gamma": gamma,
        "zeta": zeta,
        "uniform_weight": uniform_weight(gamma, zeta, length) if length else None,
        "dead_from_keys": uniform_clipped_from(cfg.model.attention, length) if length else None,
        "init": {"alive": alive(cfg, p0, batch), "grad": attention_grad_norms(cfg, p0, batch)},
        "final": {"alive": alive(cfg, p1, batch), "grad": attention_grad_norms(cfg, p1, batch)},
        "moved": _moved(p0, p1),
        "loss": [(r["step"], r["loss"]) for r in curve if "loss" in r],
        "train_s": time.perf_counter() - t0,
    }


def main(argv) -> None:
    """argv: preset family variant steps [dotted.field=python_literal ...]; prints JSON."""
    import ast

    from outeffhop.experiments.outlier_study.scheduler import jobs_for

    preset, family, variant, steps, *fields = argv
    study = load_config(f"reproduce:{preset}")
    workdir = os.path.join(os.environ.get("CLIP_INIT_DIR", "/tmp/clip_init"), family)
    job = next(
        j
        for j in jobs_for(study, workdir)
        if j["family"] == family and j["variant"] == "vanilla" and j["seed"] == 0
    )
    job = dict(job, variant=variant)
    for f in fields:
        k, v = f.split("=", 1)
        job["overrides"][k] = ast.literal_eval(v)
    job["overrides"]["data.cache_dir"] = os.path.join(workdir, "data_cache")
    name = "_".join([variant.replace("+", "_"), *(f.replace("/", "_") for f in fields)])
    run_dir = os.path.join(workdir, name)
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: the trainer would resume
    out = check(job, int(steps), run_dir)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
