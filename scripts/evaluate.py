"""Print the paper's table row for a trained checkpoint.

    python scripts/evaluate.py --config configs/bert.py:quick --workdir runs/bert_quick \\
        [--config.model.attention.normalizer=softmax1] [--ablations] [--json out.json] \\
        [--protocol official|ours] [--num_calib N]

FP metric (perplexity, or accuracy for ViT), avg kurtosis, max inf-norm, W8A8 metric and the
protocol line; the config must be the one the run was trained with (a mismatched checkpoint
is an error). ``--protocol`` (outeffhop.measure.protocols): "official" (default) uses the
official OutEffHop code's quantizer sites, estimator and calibration batches, "ours" this
project's input-side sites.
Exit status: 0 done, 1 bad config or checkpoint.
"""

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from outeffhop.launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py:<preset>")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory holding checkpoints/")
_ABLATIONS = flags.DEFINE_bool("ablations", False, "also per-channel, W8A16, W4A8, estimators")
_INT8 = flags.DEFINE_bool("int8", True, "also real int8 PTQ with qwix")
_CALIB = flags.DEFINE_integer("num_calib", None, "calibration batches (default: the protocol's)")
_PROTOCOL = flags.DEFINE_enum("protocol", "official", ["official", "ours"], "evaluation protocol")
_JSON = flags.DEFINE_string("json", None, "write the full row (curves, ablations) here")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    cli.quiet_logs(flags.FLAGS.verbosity)
    from outeffhop.experiments.outlier_study import jobs

    try:
        row = jobs.evaluate_checkpoint(
            _CONFIG.value,
            _WORKDIR.value,
            protocol=_PROTOCOL.value,
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
    app.run(main)
