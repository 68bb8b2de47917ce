"""orbax checkpoints of the train state plus the data-iterator state, checked before use.

Layout: ``workdir/checkpoints/<step>/{state,data_iter}`` (``ocp.args.Composite``); the
workdir may be local or any ``etils.epath`` URL (gs://...). A checkpoint is read only after
its params shapes are compared with the config's; a mismatch or an unreadable checkpoint
raises ValueError and nothing on disk is changed. The data-iterator state restores on any
process count (``DataIterHandler``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import grain
import grain.checkpoint as gcp
import jax
import orbax.checkpoint as ocp
from etils import epath

ITEMS = ("state", "data_iter")
_STATE_FILE = re.compile(r"process_(\d+)-of-(\d+)\.json")


class ResumeMismatch(ValueError):
    """The checkpoint cannot resume this run; the message says what differs."""


class DataIterHandler(gcp.CheckpointHandler):
    """grain's iterator handler, restoring on any process count.

    grain writes ``process_{i}-of-{n}.json`` per process and reads back the file of the
    same (i, n). Our pipelines' states are process-count invariant (each process takes its
    rows of every global batch, so the state is the next global batch), so when this run's
    file is absent the saved files are compared and, if they agree, any one is used; if they
    differ, ResumeMismatch names the saved and the current process counts.
    """

    def restore(self, directory: epath.Path, item=None, args=None):
        item = item or args.item
        pi, pc = jax.process_index(), jax.process_count()
        own = directory / f"process_{pi}-of-{pc}.json"
        if own.exists():
            text = own.read_text()
        else:
            saved = sorted(f for f in directory.iterdir() if _STATE_FILE.fullmatch(f.name))
            if not saved:
                raise ResumeMismatch(f"{directory} holds no data-iterator state")
            counts = sorted({int(_STATE_FILE.fullmatch(f.name).group(2)) for f in saved})
            states = {f.name: f.read_text() for f in saved}
            if len({json.dumps(json.loads(t), sort_keys=True) for t in states.values()}) > 1:
                raise ResumeMismatch(
                    f"the data-iterator states were saved by {counts} processes and differ "
                    f"between processes, so they cannot be resumed by {pc} processes; resume "
                    f"with {counts[0]} processes"
                )
            text = next(iter(states.values()))
        state = json.loads(text) if isinstance(item, grain.DatasetIterator) else text.encode()
        try:
            item.set_state(state)
        except Exception as e:  # grain raises KeyError/ValueError/TypeError for a foreign state
            raise ResumeMismatch(
                f"the saved data-iterator state ({text[:200]!r}) does not fit this run's data "
                f"pipeline ({type(e).__name__}: {e}); the data config (e.g. data.num_workers, "
                "data.name, data.format) differs from the run that wrote it"
            ) from e
        item.start_prefetch()
        return item


@ocp.args.register_with_handler(DataIterHandler, for_save=True)
@dataclasses.dataclass
class DataIterSave(ocp.args.CheckpointArgs):
    item: Any


@ocp.args.register_with_handler(DataIterHandler, for_restore=True)
@dataclasses.dataclass
class DataIterRestore(ocp.args.CheckpointArgs):
    item: Any


def _handlers():
    return {"state": ocp.StandardCheckpointHandler(), "data_iter": DataIterHandler()}


def check_workdir(workdir: str) -> None:
    """ValueError for a URL missing its '//' (``gs:/b`` would become a local folder ``gs:``)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:(?!//)", str(workdir)):
        raise ValueError(
            f"workdir {workdir!r} looks like a URL without '//'; write e.g. gs://bucket/run "
            "(or ./name for a local folder)."
        )


def checkpoint_dir(workdir: str) -> str:
    """``workdir/checkpoints``; local paths made absolute, URLs (gs://...) kept."""
    check_workdir(workdir)
    base = workdir if "://" in workdir else os.path.abspath(workdir)
    return os.fspath(epath.Path(base) / "checkpoints")


def make_manager(workdir: str, max_to_keep: int, *, read_only: bool = False):
    """A CheckpointManager on ``workdir/checkpoints`` keeping ``max_to_keep`` steps."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, read_only=read_only
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir), options=options, item_handlers=_handlers()
    )


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def latest_compatible_step(workdir: str, abstract_params) -> int | None:
    """Newest committed step in ``workdir``, after checking its params match the config.

    Raises ValueError when the checkpoint holds another model shape, or when its metadata
    cannot be read (corrupt or partial). Opens the directory read-only.
    """
    if not epath.Path(checkpoint_dir(workdir)).is_dir():
        return None
    mngr = make_manager(workdir, 1, read_only=True)
    step = mngr.latest_step()
    if step is None:
        return None
    where = os.fspath(epath.Path(checkpoint_dir(workdir)) / str(step))
    try:
        saved = mngr.item_metadata(step)["state"]
        if saved is None:
            raise FileNotFoundError("no readable state metadata")
        saved = {
            _path_str(p): tuple(m.shape)
            for p, m in jax.tree_util.tree_flatten_with_path(saved)[0]
            if p and _path_str(p[:1]) == "params"
        }
        if not saved:
            raise FileNotFoundError("no params in the state metadata")
    except Exception as e:  # orbax raises many types for missing or garbled files
        raise ValueError(
            f"checkpoint {where} is corrupt or partial ({type(e).__name__}: {e}); "
            "move it away or choose another --workdir."
        ) from e
    want = {
        "params/" + _path_str(p): tuple(x.shape)
        for p, x in jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    }
    if saved != want:
        key = next(k for k in sorted(set(saved) | set(want)) if saved.get(k) != want.get(k))
        raise ValueError(
            f"checkpoint {where} holds a model of another shape than config.model ({key}: "
            f"saved {saved.get(key, 'absent')}, configured {want.get(key, 'absent')}); "
            "use the matching config or another --workdir."
        )
    return step


def restore(mngr, step: int, abstract_state, data_iter):
    """Restore ``step`` into shardings given by ``abstract_state`` and set ``data_iter``."""
    where = os.fspath(epath.Path(mngr.directory) / str(step))
    try:
        out = mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data_iter=DataIterRestore(data_iter),
            ),
        )
    except Exception as e:
        cause = e
        while cause is not None and not isinstance(cause, ResumeMismatch):
            cause = cause.__cause__ or cause.__context__  # orbax may wrap handler errors
        if cause is not None:
            raise ResumeMismatch(
                f"checkpoint {where} cannot resume this run: {cause}; or choose another --workdir."
            ) from e
        raise ValueError(
            f"checkpoint {where} is corrupt or partial ({type(e).__name__}: {e}); "
            "move it away or choose another --workdir."
        ) from e
    return out["state"]


def save(mngr, step: int, state, data_iter) -> None:
    """Save asynchronously; ``mngr.wait_until_finished()`` before exiting."""
    mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data_iter=DataIterSave(data_iter)
        ),
    )
