"""Data-pipeline throughput: today's per-record MLM path vs memory-mapped shards, RSS while
reading a 1 GiB shard set, JPEG decoding at 1 and 2 grain workers.

Run: .venv/bin/python benchmarks/bench_data.py [--workdir /tmp/bench_data] [--only mlm,rss,jpeg]
(about 3 min on 2 cores; the first run also builds the corpus cache, trains the tokenizer
and writes 1 GiB of synthetic shards). Prints every rate and ratio measured in this one run.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import grain
import numpy as np

from outeffhop import data
from outeffhop.data import prepare, shards


def _rate(ds, n: int, repeats: int = 3, threads: int = 0) -> float:
    """Median batches/s over `repeats` runs of `n` batches, after a 5-batch warm-up.

    A MapDataset is read with `threads` prefetch threads (0: synchronously, so the rate is
    the pipeline's own cost and not a prefetch buffer filled during the warm-up); an
    IterDataset (worker processes) as it is, with n large against its prefetch buffer.
    """
    if isinstance(ds, grain.MapDataset):
        ds = ds.to_iter_dataset(
            grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads)
        )
    rates = []
    for _ in range(repeats):
        it = iter(ds)
        for _ in range(5):
            next(it)
        t = time.perf_counter()
        for _ in range(n):
            next(it)
        rates.append(n / (time.perf_counter() - t))
    return float(np.median(rates))


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def bench_mlm(workdir: str, batches: int) -> None:
    """Today's path (cache: per-record masking) vs shards, stdlib corpus, seq 128."""
    base = data.get_data_config("mlm")
    base.update(seq_len=128)
    shards_dir = os.path.join(workdir, "shards_mlm128")
    if not os.path.exists(os.path.join(shards_dir, shards.MANIFEST)):
        shutil.rmtree(shards_dir, ignore_errors=True)
        t = time.perf_counter()
        cfg = base.copy_and_resolve_references()
        cfg.shards_dir = shards_dir
        prepare.prepare(cfg)
        print(f"prepare (stdlib corpus, 2 workers): {time.perf_counter() - t:.1f} s")
    for batch in (16, 256):
        rates = {}
        for fmt in ("cache", "shards"):
            cfg = base.copy_and_resolve_references()
            cfg.update(batch_size=batch, format=fmt, shards_dir=shards_dir)
            ds, _ = data.make_dataset(
                cfg, "train", workdir=workdir, process_index=0, process_count=1
            )
            rates[fmt] = _rate(ds, max(50, batches * 16 // batch))
        print(
            f"mlm seq 128 batch {batch}: cache {rates['cache']:.1f} batches/s "
            f"({rates['cache'] * batch:.0f} rows/s), shards {rates['shards']:.1f} batches/s "
            f"({rates['shards'] * batch:.0f} rows/s), ratio {rates['shards'] / rates['cache']:.1f}x"
            f"  [{_load()}]"
        )


_RSS_CHILD = """
import sys, time
import numpy as np
from outeffhop.data import shard_batches, shards, text
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
base = rss()
rows = shards.ShardSet(sys.argv[1], "train", release_rows=int(sys.argv[2]))
src = shard_batches.ShardBatches(rows=rows, task="mlm", global_batch=1024, process_index=0,
    process_count=1, seed=0, train=True, num_epochs=1, pad_id=0, mask_id=4,
    is_special=text.special_table(30522, 5))
peak, t = base, time.perf_counter()
for k in range(len(src)):
    src[k]
    if k % 64 == 0:
        peak = max(peak, rss())
dt = time.perf_counter() - t
print(f"{base:.0f} {max(peak, rss()):.0f} {len(src) * 1024 / dt:.0f}")
"""


def bench_rss(workdir: str) -> None:
    """Resident memory while one shuffled epoch of a 1 GiB shard set is read (subprocess)."""
    root = os.path.join(workdir, "shards_1gib")
    rows_total = (1 << 30) // (128 * 2)
    if not os.path.exists(os.path.join(root, shards.MANIFEST)):
        shutil.rmtree(root, ignore_errors=True)
        w = shards.ShardWriter(root, "train", 128, np.uint16, 1 << 20)
        rng = np.random.default_rng(0)
        for lo in range(0, rows_total, 1 << 18):
            w.add(rng.integers(5, 30522, (min(1 << 18, rows_total - lo), 128), np.uint16))
        entry = w.close()
        m = {
            "format": shards.FORMAT,
            "objective": "mlm",
            "seq_len": 128,
            "row_len": 128,
            "dtype": "uint16",
            "splits": {"train": entry},
        }
        with open(os.path.join(root, shards.MANIFEST), "w") as f:
            json.dump(m, f)
    for release in (64, 0):
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, root, str(release)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        base, peak, rate = (float(v) for v in out)
        what = f"release_rows={release}" if release else "no page release"
        print(
            f"rss reading 1 GiB of shards ({rows_total} rows, batch 1024, {what}): "
            f"baseline {base:.0f} MiB, peak {peak:.0f} MiB, +{peak - base:.0f} MiB, "
            f"{rate:.0f} rows/s  [{_load()}]"
        )


def bench_jpeg(workdir: str, batches: int) -> None:
    """Train batches of 224 px DeiT-augmented JPEGs (400x300 px files) at 0, 1 and 2 workers."""
    from absl import flags
    from PIL import Image

    flags.FLAGS.mark_as_parsed()
    root = os.path.join(workdir, "jpegs")
    if not os.path.exists(root):
        rng = np.random.default_rng(0)
        for c in range(4):
            os.makedirs(os.path.join(root, f"c{c}"))
            for i in range(64):
                x = rng.integers(0, 255, (300, 400, 3), np.uint8)
                Image.fromarray(x).save(os.path.join(root, f"c{c}", f"{i}.jpg"), quality=90)
    rates = {}
    for workers, threads in ((0, 0), (0, 16), (1, 0), (2, 0)):
        cfg = data.get_data_config("image_folder")
        cfg.update(
            path=root,
            image_size=224,
            batch_size=32,
            num_workers=workers,
            random_resized_crop=True,
            hflip=True,
            randaugment_n=2,
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
            label_smoothing=0.1,
            val_fraction=0.05,
        )
        ds, _ = data.make_dataset(cfg, "train", process_index=0, process_count=1)
        rates[workers, threads] = _rate(ds, batches, repeats=1, threads=threads) * 32
    print(
        f"jpeg 400x300 -> 224 DeiT train rows/s: in-process {rates[0, 0]:.0f} (1 thread), "
        f"{rates[0, 16]:.0f} (16 threads, the default iterator); worker processes: "
        f"1 {rates[1, 0]:.0f}, 2 {rates[2, 0]:.0f} ({rates[2, 0] / rates[1, 0]:.2f}x of 1)  "
        f"[{_load()}]"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/bench_data")
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--only", default="mlm,rss,jpeg")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    docs = data.stdlib_documents(cache_dir=f"{args.workdir}/data_cache")
    print(f"stdlib corpus: {len(docs)} documents, {sum(map(len, docs)) / 1e6:.2f} M characters")
    only = set(args.only.split(","))
    if "mlm" in only:
        bench_mlm(args.workdir, args.batches)
    if "rss" in only:
        bench_rss(args.workdir)
    if "jpeg" in only:
        bench_jpeg(args.workdir, max(8, args.batches // 10))
    print(
        f"max rss of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
        " MiB"
    )


if __name__ == "__main__":
    main()
