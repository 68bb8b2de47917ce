"""The experiments' entry point: flags, huge pages before heavy imports, quiet logs, a last line.

``scripts/run.py --config configs/<name>.py:<preset> [--workdir DIR]`` is ``experiment_main()``:
it restarts once with huge pages (before jax is imported), reads ``--config`` and
``--workdir`` (default ``runs/<name>``; absl's ``--verbosity=1`` shows third-party INFO
logs), imports the module the config names in its ``experiment`` field, runs
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


def experiment_module(config) -> str:
    """The module path a config names in ``config.experiment`` (one ValueError otherwise)."""
    module = config.get("experiment") if hasattr(config, "get") else None
    if not isinstance(module, str) or not module:
        raise ValueError(
            "the config must name its experiment in c.experiment (a module exposing "
            "run(config, workdir)); training configs run with scripts/train.py."
        )
    return module


def default_workdir(config_arg: str) -> str:
    """``runs/<config file stem>`` for ``configs/<stem>.py[:preset]``."""
    stem = os.path.splitext(os.path.basename(config_arg.split(":", 1)[0]))[0]
    return os.path.join("runs", stem or "experiment")


def experiment_main() -> None:
    """Run ``config.experiment``'s ``run(config, workdir)`` (see the module docstring)."""
    reexec_with_hugepages()  # 2 MiB pages for XLA CPU buffers (OUTEFFHOP_HUGEPAGES=0: off)
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py:<preset>")
    workdir = flags.DEFINE_string("workdir", None, "output directory (default runs/<exp>)")
    flags.mark_flag_as_required("config")

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        quiet_logs(flags.FLAGS.verbosity)  # absl's --verbosity: 1 shows INFO logs
        out = workdir.value or default_workdir(
            config_flags.get_config_filename(flags.FLAGS["config"])
        )
        try:
            module = importlib.import_module(experiment_module(config.value))
            module.run(config.value, out)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        print(results_line(out), flush=True)

    app.run(main, flags_parser=parse_flags)
