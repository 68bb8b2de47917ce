"""Outlier induction (heads that must no-op): python scripts/induction.py
--config configs/induction.py:quick --workdir results/induction."""

from absl import app, flags
from ml_collections import config_flags

from outeffhop import induction

_CONFIG = config_flags.DEFINE_config_file("config", "configs/induction.py:quick", "config")
_WORKDIR = flags.DEFINE_string("workdir", "results/induction", "output directory")


def main(argv):
    del argv
    induction.run(_CONFIG.value, _WORKDIR.value)
    with open(f"{_WORKDIR.value}/report.md") as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)
