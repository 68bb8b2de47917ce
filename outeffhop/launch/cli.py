"""The scripts' entry point: flags, huge pages before heavy imports, quiet logs, a last line.

``scripts/<name>.py`` is ``experiment_main("<module>", "configs/<name>.py:quick",
"runs/<name>")``: it restarts once with huge pages (before jax is imported), defines
``--config`` / ``--workdir`` (absl's ``--verbosity=1`` shows third-party INFO logs), runs
``<module>.run(config, workdir)`` and ends with one line naming where the results are.
Nothing here imports jax at module level.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys

from outeffhop.launch.hugepages import reexec_with_hugepages

NOISY_LOGGERS = ("absl", "orbax", "jax", "jax._src.xla_bridge", "grain", "tensorflow")


def quiet_logs(verbosity: int = 0) -> None:
    """Third-party INFO logs off unless ``verbosity`` >= 1 (warnings and errors stay)."""
    level = logging.INFO if verbosity >= 1 else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.INFO if verbosity >= 1 else absl_logging.WARNING)
    except ImportError:  # absl is a dependency; keep the helper usable without it
        pass


def _sentence(e: BaseException) -> str:
    """One line from a flag-parsing error (ml_collections nests quotes, newlines, tracebacks)."""
    text = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\'", "'")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        head = lines[0].rstrip(":")
        return f"{head}: {lines[-1]}"  # the exception the config file raised
    return " ".join(lines).strip("'\" ")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad flag or config override reported in one sentence.

    ``--config.optim.lrr=1`` (no such field) ends the process with exit status 1 and
    ``error: --config override: unknown field 'lrr'; Did you mean "lr" instead of "lrr"?``
    instead of a traceback.
    """
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        where = f" in {' '.join(overrides)}" if overrides else ""
        clean = str(e).replace("\\n", " ").replace("\\", "")
        field = re.search(r"'(\w+)'", clean)
        name = f"unknown field {field.group(1)!r}" if field else _sentence(e)
        hint = re.search(r"Did you mean [^?]*\?", clean)
        hint = f" ({hint.group(0)})" if hint else ""
        print(f"error: --config override{where}: {name}{hint}", file=sys.stderr)
    except (flags.Error, ValueError, TypeError) as e:
        print(f"error: {_sentence(e)}", file=sys.stderr)
    sys.exit(1)


def results_line(workdir: str) -> str:
    """``results: <workdir>/report.md, metrics.json, ...`` naming what the run left there."""
    names = ("report.md", "metrics.json", "metrics.jsonl", "checkpoints", "summary.json")
    found = [n for n in names if os.path.exists(os.path.join(workdir, n))]
    return f"results: {workdir}/ ({', '.join(found) if found else 'no report written'})"


def experiment_main(module: str, default_config: str, default_workdir: str) -> None:
    """Run ``module.run(config, workdir)`` from the command line (see the module docstring)."""
    reexec_with_hugepages()  # 2 MiB pages for XLA CPU buffers (OUTEFFHOP_HUGEPAGES=0: off)
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", default_config, "configs/<exp>.py:<arg>")
    workdir = flags.DEFINE_string("workdir", default_workdir, "output directory")

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        quiet_logs(flags.FLAGS.verbosity)  # absl's --verbosity: 1 shows INFO logs
        try:
            importlib.import_module(module).run(config.value, workdir.value)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        print(results_line(workdir.value), flush=True)

    app.run(main, flags_parser=parse_flags)
