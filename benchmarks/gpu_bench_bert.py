"""bf16 BERT-base and OPT-125m training MFU on one GPU, sized to finish in about 6 minutes.

    python benchmarks/gpu_bench_bert.py --out=$OUT/gpu_bench_bert
    python benchmarks/gpu_bench_bert.py --smoke   # tiny models, seconds, checks it on CPU

Runs ``bench_train`` with bf16 compute (f32 params, AdamW), BERT-base at batch 256 x seq 128
and 64 x 512, 20 timed steps each, every step paired with a bf16 8192^2 matmul timed
right before it. Then OPT-125m (configs/opt.py:paper: bf16, dropout 0.1) at batch 32 x 512
through the trainer's own step with ``attention.implementation='fused'`` (cuDNN where it
can, else XLA; the path each layer took is printed), 20 timed steps. Prints MFU against
the nominal dense bf16 peak of known cards.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from outeffhop import models  # noqa: E402
from outeffhop.launch.configs import load_config  # noqa: E402
from outeffhop.train import dry_run, loop, sharding  # noqa: E402

NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM


def opt_fused(smoke: bool, steps: int) -> dict:
    """Step time, tokens/s and model FLOP/s of OPT-125m bf16 with fused attention."""
    cfg = load_config("opt:paper")  # bf16 compute, fp32 params and AdamW state
    if smoke:
        cfg.model = models.get_config("opt-tiny", vocab_size=512, max_len=64, dtype="bfloat16")
    cfg.model.attention.implementation = "fused"
    cfg.batch_size, cfg.data.seq_len = (8, 64) if smoke else (32, 512)
    cfg.data.vocab_size, cfg.parallelism = cfg.model.vocab_size, "dp"
    run = loop._setup(cfg, "/nonexistent-gpu-bench", None)
    state = loop._initial_state(run, None, None)
    step_fn, _ = loop._compiled_steps(run)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg.model.vocab_size, (cfg.batch_size, cfg.data.seq_len), np.int32)
    batch = sharding.global_batch({"input_ids": ids, "labels": ids}, run.mesh)
    with dry_run._captured_info() as messages:
        state, m = step_fn(state, batch)  # traces and compiles
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = step_fn(state, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    c, (b, t_len) = cfg.model, (cfg.batch_size, cfg.data.seq_len)
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(run.abstract["params"]))
    flops = 6 * n * b * t_len + 12 * c.num_layers * b * t_len**2 * c.d_model
    step = float(np.median(times))
    return dict(
        paths=dry_run.attention_paths(messages),
        step_s=step,
        tokens_per_s=b * t_len / step,
        model_flops_per_s=flops / step,
        loss=float(m["loss"]),
    )


def main():
    out = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--out=")), "")
    smoke = "--smoke" in sys.argv[1:]
    kind = jax.devices()[0].device_kind
    print(f"device: {kind}")
    shapes = ((8, 64),) if smoke else ((256, 128), (64, 512))
    for batch, seq in shapes:
        path = f"{out}.b{batch}s{seq}.json" if out else ""
        argv = ["--presets", "bert-tiny" if smoke else "bert-base", "--dtype", "bfloat16"]
        argv += ["--matmul", "256" if smoke else "8192", "--steps", "2" if smoke else "20"]
        argv += ["--batch", str(batch), "--seq", str(seq)]
        bench_train.main(argv + (["--out", path] if path else []))
        if path:
            with open(path) as f:
                r = json.load(f)["rows"][0]
            for name, peak in NOMINAL_BF16.items():
                if name in kind:
                    print(f"  MFU vs nominal {name} bf16 peak: {r['model_flops_per_s'] / peak:.1%}")
    r = opt_fused(smoke, 2 if smoke else 20)
    print(
        f"opt-125m bf16 fused attention: {r['paths']}; step {r['step_s'] * 1e3:.1f} ms, "
        f"{r['tokens_per_s']:.0f} tok/s, model {r['model_flops_per_s'] / 1e12:.2f} TFLOP/s, "
        f"loss {r['loss']:.3f}"
    )
    for name, peak in NOMINAL_BF16.items():
        if name in kind:
            print(f"  MFU vs nominal {name} bf16 peak: {r['model_flops_per_s'] / peak:.1%}")
    if out:
        with open(f"{out}.opt125m_fused.json", "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
