"""Train one config: python scripts/train.py --config configs/bert.py:quick --workdir DIR.

Override any field with --config.a.b=v (e.g. --config.model.attention.normalizer=softmax1).
Re-running with the same --workdir resumes from its newest checkpoint. Multi-host: set
--config.distributed.enabled=True or OUTEFFHOP_DISTRIBUTED=1 (see scripts/launch_*.sh).
Exit status: 0 done, 1 bad config or checkpoint, 2 non-finite loss.
"""

import sys

from outeffhop.launch.hugepages import reexec_with_hugepages


def main():
    from absl import app, flags
    from ml_collections import config_flags

    from outeffhop.launch import cli

    config = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py:<preset>")
    workdir = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics)")
    flags.mark_flags_as_required(["config", "workdir"])

    def run(argv):
        del argv
        cli.quiet_logs(flags.FLAGS.verbosity)  # orbax logs every save at INFO
        from outeffhop.train import NonFiniteLossError, train_and_evaluate

        try:
            train_and_evaluate(config.value, workdir.value)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        except NonFiniteLossError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        print(cli.results_line(workdir.value), flush=True)

    app.run(run, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    reexec_with_hugepages()  # before jax is imported (OUTEFFHOP_HUGEPAGES=0: off)
    main()
