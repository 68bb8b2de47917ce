"""Prepare token shards once: python scripts/prepare_data.py --config configs/bert.py:paper
--config.data.name=parquet --config.data.path=/data/wiki --config.data.shards_dir=/data/shards

Trains (or loads, with --config.data.tokenizer_path) the tokenizer, tokenizes the corpus in
parallel and writes fixed-length token shards plus manifest.json to data.shards_dir; train
with the same config and --config.data.format=shards (the paper presets' default).
"""

from absl import app
from ml_collections import config_flags

from outeffhop.data.prepare import prepare

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py:<preset>")


def main(argv):
    del argv
    m = prepare(_CONFIG.value)
    for split, s in m["splits"].items():
        print(
            f"{split}: {s['documents']} documents, {s['tokens']} tokens, {s['rows']} rows "
            f"of {m['row_len']} in {len(s['shards'])} shards"
        )


if __name__ == "__main__":
    app.run(main)
