"""The README's main job: python scripts/demo.py --workdir runs/demo [--preset quick|cpu].

Runs every study in its quick (or cpu) form and writes <workdir>/report.md; --only names a
subset of sections.
"""

from outeffhop.launch.hugepages import reexec_with_hugepages


def main():
    from absl import app, flags

    from outeffhop.launch import cli

    presets = ("quick", "cpu")
    workdir = flags.DEFINE_string("workdir", "runs/demo", "Where reports and plots go.")
    preset = flags.DEFINE_enum("preset", "quick", presets, "quick (README) or cpu.")
    only = flags.DEFINE_list("only", [], "Sections to run (default all).")

    def run(argv):
        del argv
        cli.quiet_logs(flags.FLAGS.verbosity)
        from outeffhop.experiments import main_job

        main_job.run(workdir.value, preset.value, tuple(only.value))
        print(cli.results_line(workdir.value), flush=True)

    app.run(run, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    reexec_with_hugepages()  # before jax is imported (OUTEFFHOP_HUGEPAGES=0: off)
    main()
