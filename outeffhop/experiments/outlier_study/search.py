"""Do outliers form? Train one study job and read its outlier statistics over training.

The tool behind the cpu presets' search (docs/table.md): the job trains exactly as in the
study (same schedule; checkpoints every ``every`` steps, all kept), then each checkpoint and
the init are read back: eval metric, average kurtosis and max inf-norm of the family's
``paper`` and ``ffn`` module sets on ``batches`` eval batches, and the attention mass on the
first token and the null slot. "Outliers form" means, here, max inf-norm >= 10x its init
value and kurtosis well above 3 (a Gaussian's).

    python -m outeffhop.experiments.outlier_study.search vit cpu vanilla 3000 500 \
        [dotted.field=python_literal ...]   # prints one JSON object per read-out
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import time

import jax
import orbax.checkpoint as ocp

from outeffhop import models
from outeffhop.experiments.outlier_study import jobs
from outeffhop.measure import attention_mass, outliers, quant
from outeffhop.train import checkpoint, loop, optim, tasks, train_and_evaluate


def readout(cfg, model, params, evals) -> dict:
    """Eval metric, outlier statistics (paper / ffn sets) and attention mass of ``params``."""
    v = {"params": params}
    family = cfg.model.model
    inputs = jobs._inputs_fn(cfg)
    out = jobs._metric(cfg, quant.sum_metrics(jobs._forward(model, cfg), v, evals)[0])
    for name in ("paper", "ffn"):
        s = outliers.outlier_stats(
            model, v, evals, models.outlier_modules(family, name), inputs_fn=inputs
        )
        out[f"{name}_kurtosis"], out[f"{name}_inf_norm"] = s["avg_kurtosis"], s["max_inf_norm"]
    mass = attention_mass.attention_mass(
        tasks.get_task(cfg.task).build_model(_reference(cfg)),
        v,
        evals,
        inputs_fn=inputs,
        groups_fn=attention_mass.no_groups,
        valid_fn=jobs._query_valid,
    )
    out["first_mass"], out["null_mass"] = mass["mean"]["first"], mass["mean"]["null"]
    out["first_mass_top"] = mass["max_head"]["first"]
    return out


def _reference(cfg):
    import copy

    cfg = copy.deepcopy(cfg)
    cfg.model.attention.implementation = "reference"
    return cfg


def _abstract(cfg):
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)
    tx = optim.make_optimizer(cfg.optim, cfg.num_steps)
    init = lambda rng: loop.init_fn(rng, cfg=cfg, task=task, model=model, tx=tx)  # noqa: E731
    return init, jax.eval_shape(init, jax.random.key(0))


def run(cfg, workdir: str, every: int, batches: int = 2) -> list[dict]:
    """Train ``cfg`` (checkpoint every ``every`` steps), then one read-out per checkpoint."""
    cfg.checkpoint_every, cfg.max_to_keep = every, cfg.num_steps // every + 2
    cfg.eval_every = 0
    t0 = time.perf_counter()
    train_and_evaluate(cfg, workdir)
    train_s = time.perf_counter() - t0
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)
    evals = task.eval_batches(cfg, workdir, 0, 1)[:batches]
    init, abstract = _abstract(cfg)
    p0 = jax.jit(init)(loop._keys(cfg)[0])["params"]  # the trainer's init draw
    rows = [{"step": 0, **readout(cfg, model, p0, evals)}]
    mngr = checkpoint.make_manager(workdir, 1000, read_only=True)
    target = ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    for step in sorted(mngr.all_steps()):
        params = mngr.restore(step, args=target)["state"]["params"]
        rows.append({"step": step, **readout(cfg, model, params, evals)})
    mngr.close()
    rows[-1]["train_s"] = train_s
    return rows


def main(argv) -> None:
    """argv: family preset variant steps every [dotted.field=python_literal ...]."""
    family, preset, variant, steps, every, *fields = argv
    overrides = {}
    for f in fields:
        k, v = f.split("=", 1)
        overrides[k] = ast.literal_eval(v)
    cfg = jobs.job_config(family, preset, variant, 0, overrides)
    cfg.num_steps = int(steps)
    root = os.environ.get("SEARCH_DIR", "/tmp/outlier_search")
    name = "_".join([family, preset, variant.replace("+", "_"), steps, *fields]).replace("/", "_")
    workdir = os.path.join(root, name)
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run: the trainer would resume
    for row in run(cfg, workdir, int(every)):
        print(json.dumps({"name": name, **row}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
