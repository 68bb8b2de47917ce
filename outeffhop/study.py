"""The outlier study: train every attention variant, evaluate each run, hand rows to report.

One job = (model family, variant, seed): ``configs/<family>.py:<preset>`` with the variant's
attention fields, trained by ``outeffhop.train`` in its own process pinned to one core
(``taskset`` + single-threaded XLA: 2.7x the throughput of one two-thread process, DESIGN
section 8), then evaluated in the same process: FP metric, outlier statistics of the
papers' module set, attention mass (null slot, first token, delimiters), W8A8 fake
quantization (and ablations), qwix int8. Each job writes
``<workdir>/runs/<family>/<variant>/seed<k>/eval.json``; a finished job is not rerun.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from outeffhop import attention_mass, data, models, outliers, quant, quant_qwix
from outeffhop.config_files import load_config
from outeffhop.train import checkpoint, loop, optim, tasks, train_and_evaluate

# The papers' variants: attention fields set on config.model.attention.
VARIANTS = {
    "vanilla": {"normalizer": "softmax", "gate": "none"},
    "softmax1": {"normalizer": "softmax1", "gate": "none"},
    "clipped": {"normalizer": "clipped", "gate": "none"},
    "gated": {"normalizer": "softmax", "gate": "conditional_per_token"},
    "clipped+softmax1": {"normalizer": "clipped_softmax1", "gate": "none"},
    "gated+softmax1": {"normalizer": "softmax1", "gate": "conditional_per_token"},
}
FAMILIES = ("bert", "opt", "vit")
SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}.")


def job_config(family: str, preset: str, variant: str, seed: int, overrides: dict):
    """The trainer config of one job: the family's preset, the variant, seed and overrides."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}.")
    check_variant(variant)
    cfg = load_config(f"{family}:{preset}")
    cfg.model.attention.update(VARIANTS[variant])
    cfg.seed = seed
    cfg.progress_bar = False
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    cfg.data.batch_size = cfg.batch_size
    return cfg


def load_params(cfg, workdir: str):
    """The newest checkpoint's params; ValueError if missing or of another model shape."""
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)
    tx = optim.make_optimizer(cfg.optim, cfg.num_steps)
    init = lambda rng: loop.init_fn(rng, cfg=cfg, task=task, model=model, tx=tx)  # noqa: E731
    abstract = jax.eval_shape(init, jax.random.key(0))
    step = checkpoint.latest_compatible_step(workdir, abstract["params"])
    if step is None:
        raise ValueError(f"workdir {workdir!r} holds no checkpoint; train it first.")
    mngr = checkpoint.make_manager(workdir, 1, read_only=True)
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    mngr.close()
    return state["state"]["params"], step


def _valid_rows(batch):
    if "weight" in batch:
        return np.asarray(batch["weight"]) > 0
    mask = batch.get("attention_mask")
    if mask is None:
        return np.ones(len(next(iter(batch.values()))), bool)
    return np.asarray(mask).sum(-1) > 0


def _query_valid(batch):
    """bool [B, T] (or [B] without a padding mask): the queries the statistics average over."""
    rows = _valid_rows(batch)
    mask = batch.get("attention_mask")
    return rows if mask is None else rows[:, None] & (np.asarray(mask) > 0)


def _attention_mass(cfg, workdir, variables, batches, inputs_fn) -> dict:
    """Attention mass on the null slot, key 0 and (text) delimiter tokens, per layer/head."""
    cfg = copy.deepcopy(cfg)
    cfg.model.attention.implementation = "reference"  # the weights exist on this path only
    model = tasks.get_task(cfg.task).build_model(cfg)
    groups = attention_mass.no_groups
    if cfg.model.model in ("bert", "opt"):
        _, info = data.make_dataset(cfg, "eval", workdir=workdir, batch_size=cfg.batch_size)
        specials = (info.cls_id, info.sep_id, info.eos_id)
        table = attention_mass.tokenizer_delimiters(info.tokenizer_path, specials)
        groups = attention_mass.text_groups(table)
    return attention_mass.attention_mass(
        model, variables, batches, inputs_fn=inputs_fn, groups_fn=groups, valid_fn=_query_valid
    )


def _metric(cfg, sums) -> dict[str, float]:
    """FP / quantized metric from summed (loss, weight, correct): ppl for LMs, acc for ViT."""
    loss = sums["loss"] / max(sums["weight"], 1.0)
    acc = sums["correct"] / max(sums["weight"], 1.0)
    if cfg.model.model == "vit":
        return {"metric": 100.0 * acc, "metric_name": "accuracy %", "loss": loss}
    return {"metric": math.exp(min(loss, 50.0)), "metric_name": "perplexity", "loss": loss}


def evaluate(cfg, workdir: str, params=None, *, num_calib: int = 16, ablations=True, int8=True):
    """The paper's table row for one trained run (plus ablations, curves and a histogram).

    Calibration uses ``num_calib`` batches of the training stream (held out from the eval
    split; the same batches every time), evaluation the eval split.
    """
    task = tasks.get_task(cfg.task)
    model = task.build_model(cfg)
    if params is None:
        params, _ = load_params(cfg, workdir)
    variables = {"params": params}
    family = cfg.model.model
    eval_batches = list(task.eval_batches(cfg, workdir, 0, 1))
    it = task.train_iter(cfg, workdir, 0, 1)
    calib = [next(it) for _ in range(num_calib)]

    def make_forward(m):
        # The full head, no lax.cond (the trainer's BERT loss has one): quantizer sites
        # record ranges through Python side effects, which control flow would leak.
        def forward(v, batch):
            logits = m.apply(v, **models.model_inputs(cfg.model, batch), deterministic=True)
            mean, met = models.loss_fn(cfg.model)(logits, batch)
            n = met["num_tokens"]
            return {"loss": mean * n, "weight": n, "correct": met["accuracy"] * n}

        return forward

    forward = make_forward(model)
    fp = _metric(cfg, quant.sum_metrics(forward, variables, eval_batches)[0])

    def inputs(b):
        return (), {**models.model_inputs(cfg.model, b), "deterministic": True}

    sets = ("paper", "ffn", "layers")
    union = sum((outliers.module_set(family, n) for n in sets), ())
    acc = outliers.outlier_accumulator(
        model, variables, eval_batches, union, inputs_fn=inputs, valid_fn=_valid_rows
    )
    stats = {n: acc.summary(f"{family}:{n}") for n in sets}
    mass = _attention_mass(cfg, workdir, variables, eval_batches, inputs)
    recipes = quant.ablations() if ablations else {"W8A8": quant.QuantConfig()}
    quantized = {}
    for name, qc in recipes.items():
        ranges = quant.calibrate(forward, variables, calib, qc) if qc.act_bits else None
        q = quant.quantized(forward, ranges, qc)
        quantized[name] = _metric(cfg, quant.sum_metrics(q, variables, eval_batches)[0])
    if int8:
        example = {**models.model_inputs(cfg.model, eval_batches[0]), "deterministic": True}
        quantized["int8-qwix"] = _metric(
            cfg,
            quant.sum_metrics(*_qwix(model, variables, calib, eval_batches, make_forward, example))[
                0
            ],
        )
    _, found = outliers.capture(
        model, variables, patterns=f"{family}:ffn", **inputs(eval_batches[0])[1]
    )
    last = max(found, key=lambda k: int(k.split("_")[1].split("/")[0]))
    counts, edges = outliers.histogram({last: found[last]}, bins=80)[last]
    paper = stats["paper"]
    return {
        "family": family,
        "fp": fp,
        "avg_kurtosis": paper["avg_kurtosis"],
        "max_inf_norm": paper["max_inf_norm"],
        "w8a8": quantized["W8A8"],
        "quantized": quantized,
        "outliers": stats,
        "attention_mass": mass,
        "histogram": {"module": last, "counts": counts.tolist(), "edges": edges.tolist()},
    }


def table_row(row: dict) -> str:
    """The paper's table row: FP metric, avg kurtosis, max inf-norm, W8A8 metric."""
    name = row["fp"]["metric_name"]
    head = f"| FP ({name}) | avg kurtosis | max inf-norm | W8A8 ({name}) |"
    cells = (row["fp"]["metric"], row["avg_kurtosis"], row["max_inf_norm"], row["w8a8"]["metric"])
    return head + "\n|---|---|---|---|\n| " + " | ".join(f"{c:.4g}" for c in cells) + " |"


def evaluate_checkpoint(config, workdir: str, **kw) -> dict:
    """``evaluate`` on the newest checkpoint in ``workdir`` (trained with ``config``)."""
    params, step = load_params(config, workdir)
    row = evaluate(config, workdir, params, **kw)
    row["step"] = step
    return row


def _qwix(model, variables, calib, eval_batches, make_forward, example):
    ranges = quant.calibrate(make_forward(model), variables, calib, quant_qwix.calibration_config())
    qmodel, qvars = quant_qwix.int8_ptq(model, variables, ranges, **example)
    return make_forward(qmodel), qvars, eval_batches


def run_job(job: dict) -> dict:
    """Train (resuming) and evaluate one job; writes and returns ``eval.json``."""
    cfg = job_config(job["family"], job["preset"], job["variant"], job["seed"], job["overrides"])
    wd = job["workdir"]
    os.makedirs(wd, exist_ok=True)
    t0 = time.perf_counter()
    state = train_and_evaluate(cfg, wd)
    t1 = time.perf_counter()
    row = evaluate(
        cfg,
        wd,
        state["params"],
        num_calib=job["num_calib"],
        ablations=job["ablations"],
        int8=job["int8"],
    )
    row.update(
        variant=job["variant"],
        seed=job["seed"],
        steps=cfg.num_steps,
        train_s=t1 - t0,
        eval_s=time.perf_counter() - t1,
    )
    with open(os.path.join(wd, "eval.json"), "w") as f:
        json.dump(row, f)
    return row


def run_jobs(jobs: list[dict], workers: int, log_dir: str) -> None:
    """Run jobs in subprocesses, ``workers`` at a time, each pinned to its own core."""
    os.makedirs(log_dir, exist_ok=True)
    pending = [j for j in jobs if not os.path.exists(os.path.join(j["workdir"], "eval.json"))]
    cores = list(range(os.cpu_count() or 1))
    running: dict[int, tuple] = {}
    free = list(range(workers))
    failed = []
    while pending or running:
        while pending and free:
            slot, job = free.pop(0), pending.pop(0)
            name = f"{job['family']}-{job['variant']}-seed{job['seed']}".replace("+", "_")
            spec = os.path.join(log_dir, name + ".json")
            with open(spec, "w") as f:
                json.dump(job, f)
            env = dict(os.environ, XLA_FLAGS=SINGLE_THREAD, JAX_PLATFORMS="cpu")
            cmd = [sys.executable, "-m", "outeffhop.study", spec]
            if workers > 1 and _has_taskset():
                cmd = ["taskset", "-c", str(cores[slot % len(cores)])] + cmd
            log = open(os.path.join(log_dir, name + ".log"), "w")  # noqa: SIM115 (closed on exit)
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            running[proc.pid] = (proc, slot, name, log, time.perf_counter())
            logging.info("started %s on slot %d", name, slot)
        time.sleep(0.5)
        for pid, (proc, slot, name, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[pid]
            free.append(slot)
            took = time.perf_counter() - t0
            logging.info("finished %s rc=%d in %.0f s", name, proc.returncode, took)
            if proc.returncode != 0:
                failed.append(name)
    if failed:
        raise RuntimeError(f"jobs failed: {', '.join(failed)}; see the logs in {log_dir}.")


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def jobs_for(config, workdir: str) -> list[dict]:
    """Every (family, variant, seed) job of a study config (configs/reproduce.py)."""
    for v in config.variants:
        check_variant(v)
    out = []
    for family in config.families:
        overrides = _flatten(config.overrides.get(family, {}))
        overrides["data.cache_dir"] = os.path.join(workdir, "data_cache", family)
        for variant in config.variants:
            for seed in range(config.num_seeds):
                out.append(
                    dict(
                        family=family,
                        preset=config.preset,
                        variant=variant,
                        seed=seed,
                        overrides=overrides,
                        num_calib=config.num_calib,
                        ablations=family in config.ablations,
                        int8=family in config.int8,
                        workdir=os.path.join(workdir, "runs", family, variant, f"seed{seed}"),
                    )
                )
    return out


def _flatten(tree, prefix: str = "") -> dict:
    """A nested (Config)dict -> {"a.b": value}."""
    out = {}
    for k, v in tree.items():
        if hasattr(v, "items"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def warm_data_cache(jobs: list[dict]) -> None:
    """Build each family's tokenizer and corpus cache once, before parallel jobs read it."""
    seen = set()
    for job in jobs:
        if job["family"] in seen:
            continue
        seen.add(job["family"])
        cfg = job_config(job["family"], job["preset"], job["variant"], 0, job["overrides"])
        task = tasks.get_task(cfg.task)
        next(iter(task.train_iter(cfg, job["workdir"], 0, 1)))
        task.eval_batches(cfg, job["workdir"], 0, 1)


def collect(workdir: str) -> list[dict]:
    """Every ``eval.json`` row under ``workdir/runs``."""
    rows = []
    for root, _, files in sorted(os.walk(os.path.join(workdir, "runs"))):
        if "eval.json" in files:
            with open(os.path.join(root, "eval.json")) as f:
                rows.append(json.load(f))
    return rows


def run(config, workdir: str) -> dict:
    """The whole study for a configs/reproduce.py config; writes ``workdir/report.md``."""
    import platform

    from outeffhop import report

    t0 = time.perf_counter()
    jobs = jobs_for(config, workdir)
    workers = config.workers or os.cpu_count() or 1
    logging.info("%d jobs on %d workers", len(jobs), workers)
    warm_data_cache(jobs)
    run_jobs(jobs, workers, os.path.join(workdir, "logs"))
    rows = collect(workdir)
    steps = sorted({(r["family"], r["steps"]) for r in rows})
    meta = {
        "preset": config.preset,
        "steps": ", ".join(f"{f} {s}" for f, s in steps),
        "seeds": config.num_seeds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {workers} pinned workers",
        "wall_s": time.perf_counter() - t0,
        "notes": list(config.notes),
    }
    report.write(rows, workdir, meta, list(config.variants))
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    with open(sys.argv[1]) as f:
        run_job(json.load(f))
