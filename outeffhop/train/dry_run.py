"""Dry run: compile the train step for the configured mesh from shapes only, report its cost.

``plan(config, workdir)`` builds the run as ``train_and_evaluate`` does (same config checks,
mesh, shardings, activation constraints), lowers the jitted train step on abstract arrays
(``jax.ShapeDtypeStruct``: no parameter is materialized, no data is read) and compiles it.
It reports per device: parameter and optimizer-state bytes (from the state shardings),
XLA's temporary bytes (``compiled.memory_analysis()``), the collectives in the compiled
HLO by kind, model FLOPs per step, and whether it fits ``config.dry_run_device_gib``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re

import jax
import numpy as np

from outeffhop.train import loop, sharding

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
GIB = 2**30
CPU_NOTE = [
    "  note: CPU compile (XLA's CPU buffer assignment). A GPU build takes cuDNN attention",
    "  where it can and never holds the [B, H, T, S] scores that the explicit path does.",
]


def count_collectives(hlo_text: str) -> dict[str, int]:
    """Occurrences of each collective op in HLO text (async ``-start`` forms count once)."""
    counts = {}
    for kind in COLLECTIVES:
        pattern = rf"= [^=\n]*? {re.escape(kind)}(?:-start)?\("
        counts[kind] = len(re.findall(pattern, hlo_text))
    return counts


def shard_bytes(abstract_tree, sharding_tree) -> int:
    """Bytes of one device's shard of every leaf (the largest shard, for uneven splits)."""
    total = 0
    for x, s in zip(jax.tree.leaves(abstract_tree), jax.tree.leaves(sharding_tree), strict=True):
        shard = s.shard_shape(x.shape)
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return total


def _abstract(tree, shardings):
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
    )


def analytic_flops(num_params: int, tokens: int) -> float:
    """Model FLOPs of one training step, 6 N T (forward 2 N T, backward 4 N T), no attention."""
    return 6.0 * num_params * tokens


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _captured_info(name="absl"):
    """INFO messages logged to ``name`` inside the block (kept off the console)."""
    logger, handler = logging.getLogger(name), _Collect()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def attention_paths(messages) -> dict[str, int]:
    """``{"<path> path (<reason>)": layers}`` from MultiHeadAttention's trace-time log lines."""
    found = collections.Counter()
    for m in messages:
        if m.startswith("attention ") and ": " in m:
            found[m.split(": ", 1)[1]] += 1
    return dict(found)


def compile_step(run):
    """(compiled train step, attention paths) of ``run`` (loop._setup), from abstract
    state and batch."""
    step_fn, _ = loop._compiled_steps(run)
    state = _abstract(run.abstract, run.shardings)
    batch = jax.eval_shape(lambda: run.task.example_batch(run.cfg, run.cfg.batch_size))
    batch_sh = sharding.batch_sharding(run.mesh)
    batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=batch_sh), batch)
    with _captured_info() as messages:
        lowered = step_fn.lower(state, batch)
    return lowered.compile(), attention_paths(messages)


def measure(run) -> dict:
    """Everything ``plan`` reports for a set-up run (see the module docstring)."""
    cfg = run.cfg
    compiled, paths = compile_step(run)
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    params = shard_bytes(run.abstract["params"], run.shardings["params"])
    opt_state = shard_bytes(run.abstract["opt_state"], run.shardings["opt_state"])
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(run.abstract["params"]))
    tokens = cfg.batch_size * run.task.tokens_per_example(cfg)
    total = mem.argument_size_in_bytes + mem.temp_size_in_bytes
    total += mem.output_size_in_bytes - mem.alias_size_in_bytes
    return {
        "devices": int(run.mesh.devices.size),
        "mesh": {k: int(v) for k, v in run.mesh.shape.items()},
        "per_device_bytes": {
            "params": params,
            "opt_state": opt_state,
            "temp": int(mem.temp_size_in_bytes),
        },
        "flops_per_step": analytic_flops(n_params, tokens),
        "collectives": count_collectives(compiled.as_text()),
        "_extra": {
            "num_params": n_params,
            "tokens_per_step": tokens,
            "xla_flops_per_device": float((cost or {}).get("flops", -1.0)),
            "argument_bytes": int(mem.argument_size_in_bytes),
            "output_bytes": int(mem.output_size_in_bytes),
            "alias_bytes": int(mem.alias_size_in_bytes),
            "peak_bytes": int(total),
            "device_gib": float(cfg.dry_run_device_gib),
            "fits": bool(total <= cfg.dry_run_device_gib * GIB),
            "attention_paths": paths,
            "backend": jax.default_backend(),
        },
    }


def _size(n: float) -> str:
    return f"{n / GIB:.3f} GiB" if n >= GIB / 10 else f"{n / 2**20:.2f} MiB"


def report_lines(result: dict) -> list[str]:
    """The human-readable summary of a ``measure`` result."""
    b, x = result["per_device_bytes"], result["_extra"]
    mesh = " x ".join(f"{k}={v}" for k, v in result["mesh"].items())
    verdict = "fits" if x["fits"] else "does NOT fit"
    return [
        f"dry run: {result['devices']} devices, mesh {mesh}",
        f"  per device: params {_size(b['params'])}, optimizer state "
        f"{_size(b['opt_state'])}, temporaries {_size(b['temp'])}",
        f"  per device peak (arguments + temporaries + non-donated outputs): "
        f"{_size(x['peak_bytes'])}: {verdict} in {x['device_gib']:g} GiB",
        f"  model FLOPs per step: {result['flops_per_step']:.4g} (analytic 6 N T: "
        f"N = {x['num_params']:,} params, T = {x['tokens_per_step']:,} tokens; XLA's "
        f"cost analysis counts {x['xla_flops_per_device']:.4g} per device)",
        "  collectives in the compiled step: "
        + ", ".join(f"{k} {v}" for k, v in result["collectives"].items()),
        f"  compiled for {x['backend']}; attention per layer trace: "
        + ("; ".join(f"{k} x{v}" for k, v in x["attention_paths"].items()) or "none"),
    ] + (CPU_NOTE if x["backend"] == "cpu" else [])


def plan(config, workdir: str, *, devices=None) -> dict:
    """Dry-run ``config`` on ``devices`` (default all): print the report, write
    ``workdir/dry_run.json`` (devices, mesh, per_device_bytes, flops_per_step, collectives)
    and return the result (with an ``_extra`` entry that the JSON leaves out)."""
    run = loop._setup(config, workdir, devices)
    result = measure(run)
    if jax.process_index() == 0:
        for line in report_lines(result):
            print(line, flush=True)
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "dry_run.json"), "w") as f:
            json.dump({k: v for k, v in result.items() if k != "_extra"}, f, indent=1)
    return result
