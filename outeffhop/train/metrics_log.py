"""Process-0 metric sinks: JSONL, TensorBoard (tensorboardX) and a tqdm progress bar."""

from __future__ import annotations

import json
import os

import tqdm
from tensorboardX import SummaryWriter

SHOWN = ("loss", "tokens_per_s", "eval_loss")  # on the progress bar


class MetricsLog:
    """Writes ``{step, **metrics}`` rows; every method is a no-op when ``enabled`` is False."""

    def __init__(self, workdir, *, enabled, start_step, num_steps, progress_bar):
        self.enabled = enabled
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        _truncate_after(self.path, start_step)  # rows a killed run wrote past its checkpoint
        self.jsonl = open(self.path, "a")  # noqa: SIM115 (closed in close())
        self.tb = SummaryWriter(os.path.join(workdir, "tb"))
        self.shown = {}
        self.bar = tqdm.tqdm(
            total=num_steps, initial=start_step, disable=not progress_bar, dynamic_ncols=True
        )

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        for k, v in row.items():
            if k != "step":
                self.tb.add_scalar(k, v, step)
        self.shown.update({k: f"{row[k]:.4g}" for k in SHOWN if k in row})
        self.bar.set_postfix(self.shown, refresh=False)

    def advance(self, step: int) -> None:
        if self.enabled:
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.tb.close()
            self.jsonl.close()


def _truncate_after(path: str, step: int) -> None:
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(path, "w") as f:
        f.writelines(rows)


def read_metrics(workdir: str) -> list[dict]:
    """Rows of ``workdir/metrics.jsonl`` in order."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
