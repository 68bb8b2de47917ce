"""The README's main job: python scripts/demo.py --workdir runs/demo [--preset quick]."""

from absl import app, flags

from outeffhop import main_job

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Where reports and plots go.")
_PRESET = flags.DEFINE_string("preset", "quick", "Preset passed to every section's config.")
_ONLY = flags.DEFINE_list("only", [], "Run only these sections (default: all).")


def main(argv):
    del argv
    main_job.run(_WORKDIR.value, _PRESET.value, tuple(_ONLY.value))


if __name__ == "__main__":
    app.run(main)
