"""Process-0 metric sinks: JSONL, TensorBoard (tensorboardX) and a tqdm progress bar."""

from __future__ import annotations

import json
import os

import tqdm
from absl import logging
from etils import epath
from tensorboardX import SummaryWriter

SHOWN = ("loss", "tokens_per_s", "eval_loss")  # on the progress bar


def is_local(path) -> bool:
    """True for a plain filesystem path, False for a URL (gs://, s3://, ...)."""
    return "://" not in os.fspath(path)


class MetricsLog:
    """Writes ``{step, **metrics}`` rows; every method is a no-op when ``enabled`` is False.

    ``workdir`` is any ``etils.epath`` path. Locally, ``metrics.jsonl`` is appended to and
    flushed per row; on object stores (gs://, which cannot append) the whole file is
    rewritten per row (a few hundred kB for a long run). TensorBoard events are written
    only for local workdirs (tensorboardX has no general epath/fsspec writer).
    """

    def __init__(self, workdir, *, enabled, start_step, num_steps, progress_bar):
        self.enabled = enabled
        if not enabled:
            return
        root = epath.Path(workdir)
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "metrics.jsonl"
        self.local = is_local(workdir)
        self.rows = _rows_up_to(self.path, start_step)  # drop rows a killed run wrote late
        self.path.write_text("".join(self.rows))
        self.jsonl = self.path.open("a") if self.local else None
        self.tb = SummaryWriter(os.fspath(root / "tb")) if self.local else None
        if not self.local:
            logging.warning(
                "workdir %s is not local: no TensorBoard events (metrics.jsonl only)", workdir
            )
        self.shown = {}
        self.bar = tqdm.tqdm(
            total=num_steps, initial=start_step, disable=not progress_bar, dynamic_ncols=True
        )

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        line = json.dumps(row) + "\n"
        if self.local:
            self.jsonl.write(line)
            self.jsonl.flush()
        else:
            self.rows.append(line)
            self.path.write_text("".join(self.rows))
        if self.tb is not None:
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
            if self.tb is not None:
                self.tb.close()
            if self.jsonl is not None:
                self.jsonl.close()


def _rows_up_to(path: epath.Path, step: int) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines(keepends=True)
    return [line for line in lines if line.strip() and json.loads(line)["step"] <= step]


def read_metrics(workdir) -> list[dict]:
    """Rows of ``workdir/metrics.jsonl`` in order (any epath workdir)."""
    text = (epath.Path(workdir) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
