"""Print the paper's table row for a trained checkpoint, or for a pretrained model directly.

    python scripts/evaluate.py --config configs/bert.py:quick --workdir runs/bert_quick \\
        [--config.model.attention.normalizer=softmax1] [--ablations] [--json out.json]
    python scripts/evaluate.py --config configs/bert.py:quick \\
        --config.init_from=hf:/path/to/bert-base-uncased [--workdir DIR]

FP metric (perplexity, or accuracy for ViT), avg kurtosis, max inf-norm, W8A8 metric. A
--workdir holding checkpoints: its newest one is evaluated, and the config must be the one
the run was trained with, init_from included (a mismatched checkpoint is an error).
Otherwise the parameters of ``--config.init_from`` (hf:<save_pretrained folder>, or another
run's workdir) are evaluated as they are, the architecture read from the HF config.json
(docs/pretrained.md); --workdir then only holds the data cache (default: a temporary folder).
Exit status: 0 done, 1 bad config or checkpoint.
"""

import json
import os
import sys
import tempfile

from absl import app, flags
from ml_collections import config_flags

from outeffhop.launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py:<preset>")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "run directory holding checkpoints/ (with init_from: data cache only)"
)
_ABLATIONS = flags.DEFINE_bool("ablations", False, "also per-channel, W8A16, W4A8, estimators")
_INT8 = flags.DEFINE_bool("int8", True, "also real int8 PTQ with qwix")
_CALIB = flags.DEFINE_integer("num_calib", 16, "held-out calibration batches")
_JSON = flags.DEFINE_string("json", None, "write the full row (curves, ablations) here")
flags.mark_flags_as_required(["config"])


def _has_checkpoint(workdir) -> bool:
    from outeffhop.train import checkpoint

    folder = checkpoint.checkpoint_dir(workdir) if workdir else ""
    return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def evaluate(cfg, workdir, **kw) -> dict:
    """The row of ``workdir``'s newest checkpoint if it has one, else of ``cfg.init_from``.

    As in training, ``init_from = "hf:..."`` first sets the model architecture from the
    checkpoint's config.json, so a run fine-tuned from it is evaluated with the same flags.
    """
    from outeffhop.experiments.outlier_study import jobs
    from outeffhop.train import init_from

    init_from.configure(cfg)
    if _has_checkpoint(workdir):
        return jobs.evaluate_checkpoint(cfg, workdir, **kw)
    if not cfg.get("init_from"):
        raise ValueError(
            f"--workdir {workdir!r} holds no checkpoint; train it first or give --config.init_from."
        )
    params = init_from.initial_params(cfg)
    row = jobs.evaluate(cfg, workdir or tempfile.mkdtemp(prefix="outeffhop_eval_"), params, **kw)
    row["init_from"] = cfg.init_from
    return row


def main(argv):
    del argv
    cli.quiet_logs(flags.FLAGS.verbosity)
    from outeffhop.experiments.outlier_study import jobs

    try:
        row = evaluate(
            _CONFIG.value,
            _WORKDIR.value,
            num_calib=_CALIB.value,
            ablations=_ABLATIONS.value,
            int8=_INT8.value,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(jobs.table_row(row))
    for name, q in row["quantized"].items():
        print(f"{name}: {q['metric']:.4g}")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(row, f)
        print(f"results: {_JSON.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
