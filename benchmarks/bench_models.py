"""Model training-step throughput: fwd+bwd tokens/s, softmax vs softmax1 vs gated vs sink.

Command (tiny presets: about 1 min; with bert-base at B=8 L=128: about 5-10 min on 2 shared
CPU cores, mostly compilation):
  .venv/bin/python benchmarks/bench_models.py                      # tiny presets + bert-base
  .venv/bin/python benchmarks/bench_models.py --presets bert-tiny --repeats 5   # quicker

For each preset, every attention variant is compiled first, then timed in interleaved rounds
(load changes on a shared machine hit all variants alike). The step is
jit(value_and_grad) of the task loss w.r.t. the parameters, dropout off. The table gives the
median wall ms, tokens/s (B * L / wall), median process CPU ms (all threads; less sensitive
than wall time to other processes), tokens per CPU second, and the ratios of each variant's
medians to the first variant's (softmax).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop import models

VARIANTS = {
    "softmax": dict(normalizer="softmax"),
    "softmax1": dict(normalizer="softmax1"),
    "gated": dict(normalizer="softmax", gate="conditional_per_token"),
    "softmax1+gated": dict(normalizer="softmax1", gate="conditional_per_token"),
    "sink": dict(normalizer="sink"),
}
SHAPES = {"bert-base": (8, 128), "opt-125m": (8, 128)}  # (batch, length); tiny: (16, 64)


def make_batch(cfg, batch: int, length: int) -> dict:
    """Random inputs and targets of cfg.task."""
    rng = np.random.default_rng(0)
    if cfg.model == "vit":
        s, c = cfg.image_size, cfg.num_channels
        images = rng.normal(size=(batch, s, s, c)).astype(np.float32)
        return {"image": images, "label": rng.integers(0, cfg.num_classes, batch)}
    ids = rng.integers(1, cfg.vocab_size, (batch, length)).astype(np.int32)
    labels = np.where(rng.random((batch, length)) < 0.15, ids, models.IGNORE)
    if cfg.model == "opt":
        labels = np.concatenate([ids[:, 1:], np.full((batch, 1), models.IGNORE)], axis=1)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}


def make_step(cfg, batch: dict):
    """(jit(value_and_grad(loss)), params) for the model of cfg."""
    model = models.build_model(cfg)
    inputs = models.model_inputs(cfg, batch)
    params = jax.jit(model.init)(jax.random.key(0), **inputs)["params"]
    loss_of = models.loss_fn(cfg)

    def loss(p, b):
        logits = model.apply({"params": p}, **models.model_inputs(cfg, b), deterministic=True)
        return loss_of(logits, b)[0]

    return jax.jit(jax.value_and_grad(loss)), jax.tree.map(jnp.asarray, params)


def time_variants(steps: dict, batch: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall ms, process CPU ms) per variant, interleaved rounds after compiling."""
    for fn, params in steps.values():
        jax.block_until_ready(fn(params, batch))  # compile + warm-up
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(repeats):
        for name, (fn, params) in steps.items():
            t, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn(params, batch))
            wall[name].append(1e3 * (time.perf_counter() - t))
            cpu[name].append(1e3 * (time.process_time() - c))
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in steps}


def bench_preset(preset: str, variants: list[str], repeats: int) -> list[str]:
    """Markdown rows for one preset."""
    base = models.get_config(preset, hidden_dropout=0.0, attention_dropout=0.0)
    batch_size, length = SHAPES.get(preset, (16, 64))
    batch = make_batch(base, batch_size, length)
    steps = {}
    for name in variants:
        cfg = models.get_config(preset, hidden_dropout=0.0, attention_dropout=0.0)
        cfg.attention.update(VARIANTS[name])
        steps[name] = make_step(cfg, batch)
    times = time_variants(steps, jax.tree.map(jnp.asarray, batch), repeats)
    tokens = batch_size * (
        length if base.model != "vit" else 1 + (base.image_size // base.patch_size) ** 2
    )
    ref_wall, ref_cpu = times[variants[0]]
    rows = []
    for name, (w, c) in times.items():
        rows.append(
            f"| {preset} | B={batch_size} T={tokens // batch_size} | {name} | {w:.1f} | "
            f"{tokens / w * 1e3:,.0f} | {c:.1f} | {tokens / c * 1e3:,.0f} | {w / ref_wall:.2f} | "
            f"{c / ref_cpu:.2f} |"
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="bert-tiny,opt-tiny,vit-tiny,bert-base")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    variants = args.variants.split(",")
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.device_count()}")
    print(
        "| preset | shape | variant | wall ms | tokens/s | CPU ms | tokens/CPU-s | wall ratio "
        "| CPU ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        for row in bench_preset(preset, variants, args.repeats):
            print(row, flush=True)


if __name__ == "__main__":
    main()
