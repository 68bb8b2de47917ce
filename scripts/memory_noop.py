"""Associative-memory noop study.

python scripts/memory_noop.py --config configs/memory_noop.py:quick --workdir DIR
"""

from absl import app, flags
from ml_collections import config_flags

from outeffhop.studies import noop

_CONFIG = config_flags.DEFINE_config_file("config", "configs/memory_noop.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", "runs/memory_noop", "Output directory.")


def main(argv):
    del argv
    noop.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
