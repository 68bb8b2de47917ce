"""The README's main job: python scripts/demo.py --workdir runs/demo [--preset quick]."""

from absl import app, flags

from outeffhop import main_job
from outeffhop.hugepages import reexec_with_hugepages

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Where reports and plots go.")
_PRESET = flags.DEFINE_enum("preset", "quick", main_job.PRESETS, "quick (README) or full.")
_ONLY = flags.DEFINE_list(
    "only", [], f"Sections to run (default all): {', '.join(main_job.SECTION_NAMES)}."
)


def main(argv):
    del argv
    main_job.run(_WORKDIR.value, _PRESET.value, tuple(_ONLY.value))


if __name__ == "__main__":
    reexec_with_hugepages()  # 2 MiB pages for XLA CPU buffers (OUTEFFHOP_HUGEPAGES=0: off)
    app.run(main)
