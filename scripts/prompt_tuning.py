"""Tune soft prompts on the synthetic tasks: see configs/prompt_tuning.py."""

from absl import app, flags
from ml_collections import config_flags

from prompt_theory import tuning

_CONFIG = config_flags.DEFINE_config_file("config", "configs/prompt_tuning.py:quick")
_WORKDIR = flags.DEFINE_string("workdir", "runs/prompt_tuning", "Where results are written.")


def main(argv):
    del argv
    tuning.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
