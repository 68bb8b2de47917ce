"""Measure the efficiency phase transition: see configs/phase_transition.py."""

from absl import app, flags
from ml_collections import config_flags

from prompt_theory import phase_transition

_CONFIG = config_flags.DEFINE_config_file("config", "configs/phase_transition.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", "runs/phase_transition", "Where results are written.")


def main(argv):
    del argv
    phase_transition.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
