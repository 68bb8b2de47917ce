"""STanHop-Net normalizer study: python scripts/stanhop.py --config configs/stanhop.py:quick
--workdir runs/stanhop_study (trains softmax, softmax1, clipped, gsh; writes metrics.json,
report.md and PNGs). Training one variant only: scripts/train.py with the same config."""

from absl import app, flags
from ml_collections import config_flags

from outeffhop.studies import stanhop_study

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/stanhop.py:quick", "configs/stanhop.py:<preset>"
)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (one run per normalizer)")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    stanhop_study.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
