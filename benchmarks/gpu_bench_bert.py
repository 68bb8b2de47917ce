"""bf16 BERT-base training MFU on one GPU, sized to finish in about 5 minutes.

    python benchmarks/gpu_bench_bert.py --out=$OUT/gpu_bench_bert
    python benchmarks/gpu_bench_bert.py --smoke   # bert-tiny, seconds, checks the script on CPU

Runs ``bench_train`` with bf16 compute (f32 params, AdamW), BERT-base at batch 256 x seq 128
and 64 x 512, 20 timed steps each, every step paired with a bf16 8192^2 matmul timed
right before it. Also prints MFU against the nominal dense bf16 peak of known cards.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train  # noqa: E402
import jax  # noqa: E402

NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM


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


if __name__ == "__main__":
    main()
