"""Associative-memory capacity study.

python scripts/memory_capacity.py --config configs/memory_capacity.py:quick --workdir DIR
"""

from absl import app, flags
from ml_collections import config_flags

from outeffhop.studies import capacity

_CONFIG = config_flags.DEFINE_config_file("config", "configs/memory_capacity.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", "runs/memory_capacity", "Output directory.")


def main(argv):
    del argv
    capacity.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
