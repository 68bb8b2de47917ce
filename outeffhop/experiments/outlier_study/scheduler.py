"""The outlier study's scheduler: every job of a config, one pinned process per core, the report.

Each job trains in its own process pinned to one core (``taskset`` + single-threaded XLA: on
the 2-core dev box that gave 2.7x the throughput of one process using both cores); a job
whose ``eval.json`` exists under the config's evaluation protocol is not rerun, so a stopped
study resumes from its finished runs; one measured under another protocol (or before
protocols existed: ``ours``) is evaluated again from its final checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

from outeffhop.experiments.outlier_study.jobs import check_variant, job_config, variant_overrides
from outeffhop.train import tasks

# the worker imports the jobs module rather than running it with -m (whose package imports it
# first, and runpy warns)
WORKER = "import sys; from outeffhop.experiments.outlier_study.jobs import main; main(sys.argv[1])"
SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def finished(job: dict) -> bool:
    """Whether ``job`` has an ``eval.json`` measured under the job's protocol.

    A run evaluated under another protocol is not finished: it is logged and evaluated again
    (its training resumes from the final checkpoint, so only the evaluation runs).
    """
    from outeffhop.experiments.outlier_study.report import row_protocol

    path = os.path.join(job["workdir"], "eval.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        measured = row_protocol(json.load(f))
    wanted = job.get("protocol", "official")
    if measured != wanted:
        logging.warning(
            "%s was evaluated under protocol %r, the study asks %r: evaluating it again",
            job["workdir"],
            measured,
            wanted,
        )
    return measured == wanted


def run_jobs(jobs: list[dict], workers: int, log_dir: str) -> None:
    """Run jobs in subprocesses, ``workers`` at a time, each pinned to its own core."""
    os.makedirs(log_dir, exist_ok=True)
    pending = [j for j in jobs if not finished(j)]
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
            cmd = [sys.executable, "-c", WORKER, spec]
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
    """Every (family, variant, seed) job of a study config (configs/reproduce.py).

    Seed-major within a family: every variant of seed k comes before seed k + 1, so a study
    stopped part-way holds whole paired seeds.
    """
    for v in config.variants:
        check_variant(v)
    out = []
    for family in config.families:
        overrides = _flatten(config.overrides.get(family, {}))
        overrides["data.cache_dir"] = os.path.join(workdir, "data_cache", family)
        for seed in range(config.num_seeds):
            for variant in config.variants:
                out.append(
                    dict(
                        family=family,
                        preset=config.preset,
                        variant=variant,
                        seed=seed,
                        overrides={**overrides, **variant_overrides(config, family, variant)},
                        protocol=config.get("protocol", "official"),
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

    from outeffhop.experiments.outlier_study import report

    t0 = time.perf_counter()
    jobs = jobs_for(config, workdir)
    workers = config.workers or os.cpu_count() or 1
    logging.info("%d jobs on %d workers", len(jobs), workers)
    warm_data_cache(jobs)
    run_jobs(jobs, workers, os.path.join(workdir, "logs"))
    rows = collect(workdir)
    protocol = config.get("protocol", "official")
    steps = sorted({(r["family"], r["steps"]) for r in rows})
    meta = {
        "preset": config.preset,
        "steps": ", ".join(f"{f} {s}" for f, s in steps),
        "seeds": config.num_seeds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {workers} pinned workers",
        "wall_s": time.perf_counter() - t0,
        "notes": list(config.notes),
        "protocol": protocol,
    }
    report.write(rows, workdir, meta, list(config.variants))
    return {"rows": rows, "meta": meta}
