"""Data-pipeline throughput: batches/s of the MLM, CLM and digits train iterators, and corpus size.

Run: .venv/bin/python benchmarks/bench_data.py [--workdir /tmp/bench_data] (about 1 min; the
first run also builds the corpus cache and trains both tokenizers).
"""

import argparse
import time

import numpy as np

from outeffhop import data


def _rate(ds, n: int, repeats: int = 3) -> float:
    """Median batches/s over `repeats` runs of `n` batches, after a 5-batch warm-up."""
    rates = []
    for r in range(repeats):
        it = iter(ds)
        for _ in range(5):
            next(it)
        t = time.perf_counter()
        for _ in range(n):
            next(it)
        rates.append(n / (time.perf_counter() - t))
        del r
    return float(np.median(rates))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/bench_data")
    p.add_argument("--batches", type=int, default=200)
    args = p.parse_args()
    docs = data.stdlib_documents(cache_dir=f"{args.workdir}/data_cache")
    print(f"stdlib corpus: {len(docs)} documents, {sum(map(len, docs)) / 1e6:.2f} M characters")
    cases = [
        ("mlm", dict(batch_size=16, seq_len=128)),
        ("clm", dict(batch_size=16, seq_len=128)),
        ("digits", dict(batch_size=128)),
        ("digits", dict(batch_size=128, image_size=32, augment=True)),
    ]
    for preset, kw in cases:
        cfg = data.get_data_config(preset)
        cfg.update(kw)
        t = time.perf_counter()
        ds, info = data.make_dataset(cfg, "train", workdir=args.workdir, process_index=0,
                                     process_count=1)  # fmt: skip
        build = time.perf_counter() - t
        rate = _rate(ds, args.batches)
        tokens = f", {info.num_examples * info.seq_len / 1e6:.2f} M tokens" if info.seq_len else ""
        print(f"{preset} {kw}: build {build:.2f} s, {info.num_examples} train examples{tokens}, "
              f"{rate:.0f} batches/s ({rate * info.batch_size:.0f} examples/s)")  # fmt: skip


if __name__ == "__main__":
    main()
