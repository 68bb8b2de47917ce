"""Guards that keep a workdir to one experiment: its stored config, a lock, the step budget.

``workdir/config.json`` holds the resolved config of the run that created the workdir. A
rerun whose config differs in a field that changes the experiment (anything but the
bookkeeping fields in ``FREE_FIELDS``) is refused with one sentence naming the fields;
``config.resume = "force"`` accepts it (and records the new config). A field that only one
side has (added to, or removed from, the code since the run started) is not a difference:
new fields come with defaults that keep the old behaviour, so a long study resumes across
code versions; a warning names them. ``workdir/.lock`` (an ``fcntl`` lock held for the
run's lifetime) refuses a second concurrent run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os

from etils import epath

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
RESUME_MODES = ("auto", "force")
# Fields a rerun may change without changing the experiment: how long it runs and how it
# logs, evaluates, checkpoints and spreads over processes.
FREE_FIELDS = (
    "num_steps",
    "log_every",
    "eval_every",
    "eval_steps",
    "checkpoint_every",
    "max_to_keep",
    "progress_bar",
    "sync_every_step",
    "resume",
    "distributed",
    "dry_run",
    "dry_run_device_gib",
    "data.cache_dir",
    "data.num_workers",
)


class WorkdirLockedError(RuntimeError):
    """Another run holds the workdir's lock."""


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed; training stopped at once."""


def save_failed(error: BaseException, step: int, directory, last_good) -> CheckpointSaveError:
    """One sentence for a failed (async) save: what failed, why (first line), what is kept."""
    reason = next((s.strip() for s in str(error).splitlines() if s.strip()), type(error).__name__)
    if len(reason) > 160:
        reason = reason[:157] + "..."
    kept = f"step {last_good}" if last_good is not None else "none"
    return CheckpointSaveError(
        f"saving the checkpoint of step {step} to {directory} failed ({type(error).__name__}: "
        f"{reason}); training stopped; last good checkpoint: {kept}."
    )


def flatten(tree, prefix: str = "") -> dict:
    """A nested config (dict or ConfigDict) -> {"a.b": value} with JSON-friendly values."""
    items = tree.items() if hasattr(tree, "items") else ()
    out = {}
    for k, v in items:
        key = f"{prefix}{k}"
        if hasattr(v, "items"):
            out.update(flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def _free(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FREE_FIELDS)


def experiment_diff(saved: dict, current: dict) -> list[str]:
    """The dotted fields (not free, present in both) whose values differ between two configs."""
    keys = sorted(set(saved) & set(current))
    return [k for k in keys if not _free(k) and saved[k] != current[k]]


def schema_changes(saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """(fields the current config adds, fields it no longer has) against the stored one."""
    return sorted(set(current) - set(saved)), sorted(set(saved) - set(current))


def _jsonable(cfg) -> dict:
    flat = flatten(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    return json.loads(json.dumps(flat, default=repr))


def check_config(workdir: str, cfg, *, has_checkpoint: bool) -> None:
    """Refuse (ValueError) a config that is another experiment than the workdir's; else store it.

    Without a stored config (a new workdir, or one written before configs were stored) the
    current config is written. With one, fields that differ (beyond ``FREE_FIELDS``) raise
    unless ``cfg.resume == "force"``.
    """
    mode = cfg.get("resume", "auto")
    if mode not in RESUME_MODES:
        raise ValueError(f"config.resume must be one of {', '.join(RESUME_MODES)}; got {mode!r}.")
    path = epath.Path(workdir) / CONFIG_FILE
    current = _jsonable(cfg)
    if has_checkpoint and path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{path} is unreadable ({e}); delete it to adopt the current config."
            ) from None
        diff = experiment_diff(saved, current)
        if diff and mode != "force":
            shown = ", ".join(f"{k} ({saved[k]!r} -> {current[k]!r})" for k in diff[:6])
            more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
            raise ValueError(
                f"workdir {workdir} holds a run of another experiment: {shown}{more} differ; "
                "use another --workdir, or --config.resume=force to continue it anyway."
            )
        added, removed = schema_changes(saved, current)
        if added or removed:
            logging.warning(
                "%s was started by another code version: fields added since %s (taken at "
                "their current values), fields removed %s",
                workdir,
                ", ".join(f"{k}={current[k]!r}" for k in added) or "none",
                ", ".join(removed) or "none",
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=1, sort_keys=True))


def check_budget(resume_step: int | None, num_steps: int) -> str | None:
    """A sentence when the checkpoint is already at or past ``num_steps`` (nothing to train)."""
    if resume_step is not None and resume_step >= num_steps:
        return (
            f"the checkpoint is at step {resume_step} >= config.num_steps={num_steps}: nothing "
            "to train; raise --config.num_steps to continue the run."
        )
    return None


def make_workdir(workdir: str) -> None:
    """Create a local ``workdir`` and check it is a writable directory (one ValueError)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir} is a file, not a directory; choose another --workdir.")
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"workdir {workdir} cannot be written ({e.strerror}); choose a writable --workdir."
        ) from None


@contextlib.contextmanager
def workdir_lock(workdir: str):
    """Hold ``workdir/.lock`` exclusively; WorkdirLockedError if another run holds it.

    Local paths only: a URL workdir (gs://...) is not locked (object stores have no flock).
    """
    if "://" in workdir:
        yield
        return
    make_workdir(workdir)
    path = os.path.join(workdir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise WorkdirLockedError(
                f"workdir {workdir} is in use by pid {holder}; wait for that run to end or "
                "choose another --workdir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
