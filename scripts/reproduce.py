"""The outlier / W8A8 study: python scripts/reproduce.py --config configs/reproduce.py:quick
--workdir results. Trains every variant (one pinned process per core), evaluates each run
and writes <workdir>/report.md, metrics.json and plots. Finished runs are not redone.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from outeffhop import study
from outeffhop.hugepages import reexec_with_hugepages

_CONFIG = config_flags.DEFINE_config_file("config", "configs/reproduce.py:quick", "study config")
_WORKDIR = flags.DEFINE_string("workdir", "results", "output directory")


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    study.run(_CONFIG.value, _WORKDIR.value)
    with open(f"{_WORKDIR.value}/report.md") as f:
        print(f.read())


if __name__ == "__main__":
    reexec_with_hugepages()  # 2 MiB pages for XLA CPU buffers (OUTEFFHOP_HUGEPAGES=0: off)
    app.run(main)
