"""Train one config: python scripts/train.py --config configs/bert.py:quick --workdir DIR.

Override any field with --config.a.b=v (e.g. --config.model.attention.normalizer=softmax1).
Re-running with the same --workdir resumes from its newest checkpoint. Multi-host: set
--config.distributed.enabled=True or OUTEFFHOP_DISTRIBUTED=1 (see scripts/launch_*.sh).
Exit status: 0 done, 1 bad config or checkpoint, 2 non-finite loss.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from outeffhop.hugepages import reexec_with_hugepages
from outeffhop.train import NonFiniteLossError, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py:<preset>")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
        train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    reexec_with_hugepages()  # 2 MiB pages for XLA CPU buffers (OUTEFFHOP_HUGEPAGES=0: off)
    app.run(main)
