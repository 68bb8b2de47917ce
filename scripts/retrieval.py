"""Retrieval demo: python scripts/retrieval.py --config configs/retrieval.py:quick --workdir DIR."""

from absl import app, flags
from ml_collections import config_flags

from outeffhop.studies import retrieval

_CONFIG = config_flags.DEFINE_config_file("config", "configs/retrieval.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", "runs/retrieval", "Output directory.")


def main(argv):
    del argv
    retrieval.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
