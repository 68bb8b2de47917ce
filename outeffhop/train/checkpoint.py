"""orbax checkpoints of the train state plus the data-iterator state, checked before use.

Layout: ``workdir/checkpoints/<step>/{state,data_iter}`` (``ocp.args.Composite``). A
checkpoint is read only after its params shapes are compared with the config's; a
mismatch or an unreadable checkpoint raises ValueError and nothing on disk is changed.
"""

from __future__ import annotations

import os

import grain.checkpoint as gcp
import jax
import orbax.checkpoint as ocp

ITEMS = ("state", "data_iter")


def _handlers():
    return {"state": ocp.StandardCheckpointHandler(), "data_iter": gcp.CheckpointHandler()}


def checkpoint_dir(workdir: str) -> str:
    """``workdir/checkpoints``; local paths made absolute, URLs (gs://...) kept."""
    base = workdir if "://" in workdir else os.path.abspath(workdir)
    return os.path.join(base, "checkpoints")


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
    if "://" not in workdir and not os.path.isdir(checkpoint_dir(workdir)):
        return None
    mngr = make_manager(workdir, 1, read_only=True)
    step = mngr.latest_step()
    if step is None:
        return None
    where = os.path.join(checkpoint_dir(workdir), str(step))
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
    where = os.path.join(str(mngr.directory), str(step))
    try:
        out = mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data_iter=gcp.CheckpointRestore(data_iter),
            ),
        )
    except Exception as e:
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
            state=ocp.args.StandardSave(state), data_iter=gcp.CheckpointSave(data_iter)
        ),
    )
