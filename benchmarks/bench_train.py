"""Training tokens/s and MFU of the trainer's step, against a matmul timed in the same run.

    python benchmarks/bench_train.py [--presets bert-tiny,bert-cpu,bert-base] [--steps 5]

MFU = model FLOPs/s / matmul FLOP/s, with model FLOPs per step = 6 x non-embedding params x
tokens + 12 x layers x batch x seq^2 x d_model (attention scores and mixing, fwd + bwd), and
the matmul = the best of three N x N matmuls (2 N^3 FLOPs) timed right before each step
(the machine may be shared: each ratio pairs measurements under the same load). The last
line also gives each run's MFU against the fastest matmul of the whole invocation (the
conservative "peak"). "with LM
head" also counts the tied LM-head projection, 6 x vocab x d_model per position it computes
(the head runs at batch x K positions: K = mlm_prediction_cap(seq), or the fixed count).
Each preset runs once per dropout PRNG in --rng_impl (the key the masks are drawn from;
with bernoulli masks philox4x32's bits fuse into the dropout, rbg's RngBitGenerator is a
separate, slower pass on CPU), dropout mask kind in --dropout_masks (hash, the models'
default, or bernoulli) and MLM masking in --masking. Steps use random token rows masked
by the data pipeline's ``MlmExamples`` and the trainer's own ``train_step`` (jit, donated
state, AdamW). The script restarts itself once with glibc's huge-page malloc tunable
(``outeffhop.launch.hugepages``; the matmul reference runs under it too); ``OUTEFFHOP_HUGEPAGES=0``
measures without.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop import models
from outeffhop.data.text import MlmExamples
from outeffhop.launch import hugepages
from outeffhop.models.losses import mlm_prediction_cap
from outeffhop.train import base_config, get_task, loop, optim, sharding

SIZES = {  # preset -> (model preset, overrides, batch, seq)
    "bert-tiny": ("bert-tiny", {}, 8, 64),
    "bert-cpu": (
        "bert-tiny",
        dict(num_layers=4, d_model=128, num_heads=4, d_ff=512, vocab_size=8192, max_len=128),
        16,
        128,
    ),
    "bert-base": ("bert-base", {}, 8, 128),
}


def matmul_timer(n: int, dtype: str = "float32"):
    """A function timing one [n, n] @ [n, n] matmul in ``dtype``; returns its FLOP/s."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()

    def once() -> float:
        t = time.perf_counter()
        f(a, a).block_until_ready()
        return 2 * n**3 / (time.perf_counter() - t)

    return once


def bench_preset(
    name: str,
    steps: int,
    dtype: str,
    batch: int = 0,
    seq: int = 0,
    rng_impl: str = "threefry2x32",
    peak=None,
    max_predictions: int = 0,
    dropout_masks: str = "hash",
):
    """Median step time, model FLOP/s and MFU of the trainer on random MLM batches.

    ``peak()`` (a matmul_timer) runs right before every timed step, so each step's MFU is
    a ratio of two measurements taken under the same machine load; the median is reported.
    """
    preset, overrides, batch0, seq0 = SIZES[name]
    batch, seq = batch or batch0, seq or seq0
    cfg = base_config()
    cfg.task = "bert"
    cfg.rng_impl = rng_impl
    cfg.model = models.get_config(preset, **overrides)
    cfg.model.dtype = dtype
    cfg.model.dropout_masks = dropout_masks
    cfg.data.seq_len, cfg.data.vocab_size = seq, cfg.model.vocab_size
    cfg.batch_size, cfg.num_steps = batch, 1000
    task = get_task("bert")
    model = task.build_model(cfg)
    tx = optim.make_optimizer(cfg.optim, cfg.num_steps)
    schedule = optim.learning_rate_schedule(cfg.optim, cfg.num_steps)
    mesh = sharding.make_mesh()
    init = functools.partial(loop.init_fn, cfg=cfg, task=task, model=model, tx=tx)
    abstract = jax.eval_shape(init, loop._keys(cfg)[0])
    shardings = sharding.state_shardings(abstract, mesh, "dp", 0)
    state = jax.jit(init, out_shardings=shardings)(loop._keys(cfg)[0])
    step = jax.jit(
        functools.partial(
            loop.train_step, cfg=cfg, task=task, model=model, tx=tx, schedule=schedule
        ),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, None),
        donate_argnums=0,
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(5, cfg.model.vocab_size, (batch, seq)).astype(np.int32)
    ex = MlmExamples(ids.ravel(), seq, 2, 3, 0, 4, cfg.model.vocab_size, 0.15, 0.8, 0.1, 5,
                     max_predictions)  # fmt: skip
    rows = [ex(i, np.random.default_rng(i)) for i in range(batch)]  # the pipeline's masking
    b = sharding.global_batch({k: np.stack([r[k] for r in rows]) for k in rows[0]}, mesh)
    state, m = step(state, b)  # compile
    jax.block_until_ready(m)
    times, peaks = [], []
    for _ in range(steps):
        peaks.append(max(peak(), peak(), peak()) if peak else float("nan"))
        t = time.perf_counter()
        state, m = step(state, b)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    params = abstract["params"]
    n_all = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    emb_keys = ("word_embeddings", "position_embeddings", "type_embeddings", "token_type")
    n_emb = sum(
        int(np.prod(x.shape))
        for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
        if any(k in jax.tree_util.keystr(p) for k in emb_keys)
    )
    m_cfg = cfg.model
    tokens = batch * seq
    flops = 6 * (n_all - n_emb) * tokens + 12 * m_cfg.num_layers * batch * seq**2 * m_cfg.d_model
    k = max_predictions or mlm_prediction_cap(seq)  # head positions per row
    head = 6 * m_cfg.vocab_size * m_cfg.d_model * batch * k
    t = float(np.median(times))
    times, peaks = np.array(times), np.array(peaks)
    return dict(
        mfu=float(np.median(flops / times / peaks)),
        mfu_with_head=float(np.median((flops + head) / times / peaks)),
        peak_flops_per_s=float(np.median(peaks)),
        peak_flops_per_s_max=float(np.max(peaks)),
        model_flops_per_step=float(flops),
        preset=name,
        rng_impl=rng_impl,
        dropout_masks=dropout_masks,
        masking=f"exact {max_predictions}" if max_predictions else "bernoulli",
        batch=batch,
        seq=seq,
        dtype=dtype,
        params=n_all,
        non_embedding_params=n_all - n_emb,
        step_s=t,
        tokens_per_s=tokens / t,
        model_flops_per_s=flops / t,
        model_flops_plus_head_per_s=(flops + head) / t,
    )


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="bert-tiny,bert-cpu,bert-base")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--matmul", type=int, default=4096)
    ap.add_argument("--dtype", default="float32", help="compute dtype of model and matmul")
    ap.add_argument(
        "--rng_impl",
        default="threefry2x32",
        help="dropout PRNGs to compare, comma-separated: rbg | philox4x32 | threefry2x32",
    )
    ap.add_argument(
        "--masking",
        default="bernoulli",
        help="MLM masking to compare, comma-separated: bernoulli (each token w.p. 0.15; head "
        "at up to mlm_prediction_cap(seq) positions) | exact (Google BERT: round(0.15 x "
        "maskable) tokens per row, data.max_predictions = that count)",
    )
    ap.add_argument(
        "--dropout_masks",
        default="hash",
        help="dropout masks to compare, comma-separated: hash (the models' default) | "
        "bernoulli (jax.random.bernoulli, as nn.Dropout)",
    )
    ap.add_argument("--batch", type=int, default=0, help="override the preset's batch")
    ap.add_argument("--seq", type=int, default=0, help="override the preset's length")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    hugepages.reexec_with_hugepages()  # OUTEFFHOP_HUGEPAGES=0 measures without
    print(f"backend {jax.default_backend()}, devices {jax.devices()}, load {os.getloadavg()}")
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    print(f"transparent huge pages: kernel mode {hugepages.thp_mode() or '?'}, malloc asks: "
          f"{hugepages.TUNABLE in tunables} (GLIBC_TUNABLES={tunables!r})")  # fmt: skip
    peak = matmul_timer(args.matmul, args.dtype)
    rows = []
    runs = [
        (n, i, m, d)
        for n in args.presets.split(",")
        for i in args.rng_impl.split(",")
        for m in args.masking.split(",")
        for d in args.dropout_masks.split(",")
    ]
    for name, impl, masking, drop in runs:
        if masking not in ("bernoulli", "exact"):
            raise SystemExit(f"--masking must be bernoulli or exact; got {masking!r}.")
        seq = args.seq or SIZES[name][3]
        k = round(0.15 * (seq - 2)) if masking == "exact" else 0
        r = bench_preset(name, args.steps, args.dtype, args.batch, args.seq, impl, peak, k, drop)
        rows.append(r)
        print(
            f"{name:10s} b{r['batch']} s{r['seq']} {r['dtype']} {impl:12s} {r['masking']:9s} "
            f"{drop:9s}: "
            f"step {r['step_s'] * 1e3:8.1f} ms, {r['tokens_per_s']:9.0f} tok/s, "
            f"model {r['model_flops_per_s'] / 1e9:7.1f} GFLOP/s, "
            f"matmul {r['peak_flops_per_s'] / 1e9:7.1f} GFLOP/s ({args.dtype} {args.matmul}^2), "
            f"MFU {r['mfu']:.1%} (with LM head {r['mfu_with_head']:.1%})",
            flush=True,
        )
    top = max(r["peak_flops_per_s_max"] for r in rows)
    for r in rows:
        r["mfu_vs_run_peak"] = r["model_flops_per_s"] / top
    print(
        f"fastest matmul of the run {top / 1e9:.1f} GFLOP/s; MFU against it: "
        + ", ".join(
            f"{r['preset']} {r['rng_impl']} {r['masking']} {r['dropout_masks']} "
            f"{r['mfu_vs_run_peak']:.1%}"
            for r in rows
        )
    )
    print(f"load average at the end: {os.getloadavg()}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
