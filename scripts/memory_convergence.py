"""Associative-memory convergence study.

python scripts/memory_convergence.py --config configs/memory_convergence.py:quick --workdir DIR
"""

from absl import app, flags
from ml_collections import config_flags

from outeffhop.studies import convergence

_CONFIG = config_flags.DEFINE_config_file("config", "configs/memory_convergence.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", "runs/memory_convergence", "Output directory.")


def main(argv):
    del argv
    convergence.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
