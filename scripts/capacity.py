"""Capacity sweep: scripts/capacity.py --config configs/capacity.py:quick."""

from absl import app, flags
from ml_collections import config_flags

from prompt_theory.capacity import run

_CONFIG = config_flags.DEFINE_config_file("config", "configs/capacity.py")
_WORKDIR = flags.DEFINE_string("workdir", "runs/capacity", "Output directory.")


def main(argv):
    del argv
    run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
