"""Task registry: how the trainer finds a model, its loss and its data from ``config.task``.

The folder is the registry: ``config.task = "bert"`` imports ``outeffhop.train.tasks.bert``
and calls its ``task()``. A task bundles everything model-specific, so the loop in
``train/loop.py`` knows no model: building the Flax module from the config, initializing its
params, the loss (as sums, see ``models/losses.py``) and the train/eval data iterators of
one process. Code outside the package (tests, notebooks) adds tasks with ``register_task``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Batch = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Task:
    """What the trainer needs to know about one model family.

    build_model(cfg) -> flax.linen.Module.
    init(model, rngs, batch) -> params pytree (rngs: {'params', 'dropout'}).
    loss(model, params, batch, rng, train) -> (loss_sum, weight_sum, correct_sum): sums
        over the batch, so that devices, hosts and microbatches add up exactly.
    example_batch(cfg, n) -> batch of n examples (the shapes/dtypes of real batches).
    train_iter(cfg, workdir, process_index, process_count) -> iterator with
        get_state()/set_state() (grain) yielding this process's rows of each global batch.
    eval_batches(cfg, workdir, process_index, process_count) -> list of eval batches.
    tokens_per_example(cfg) -> int, for tokens/s.
    logical_rules(parallelism[, model_axis]) -> flax logical axis rules, when ``init``
        returns params boxed with logical axis names (``model_axis`` only for a mesh with
        config.mesh.model > 1); None = shard by shape (``sharding.fsdp_spec``).
    check(cfg) -> None: raises ValueError naming a bad task-specific field.
    positive_fields: dotted config fields that must be > 0.
    path_fields: dotted config fields naming files/folders that must exist when non-empty.
    """

    name: str
    build_model: Callable[[Any], Any]
    init: Callable[..., Any]
    loss: Callable[..., tuple]
    example_batch: Callable[[Any, int], Batch]
    train_iter: Callable[[Any, str, int, int], Iterator[Batch]]
    eval_batches: Callable[[Any, str, int, int], Iterable[Batch]]
    tokens_per_example: Callable[[Any], int]
    logical_rules: Callable[[str], Any] | None = None
    check: Callable[[Any], None] | None = None
    positive_fields: tuple[str, ...] = ()
    path_fields: tuple[str, ...] = ()


_REGISTERED: dict[str, Callable[[], Task]] = {}


def register_task(name: str, factory: Callable[[], Task]) -> None:
    """Make ``config.task = name`` resolve to ``factory()`` (for tasks outside this folder)."""
    _REGISTERED[name] = factory


def task_names() -> tuple[str, ...]:
    """Every task: the modules of this folder (not starting with _) and registered ones."""
    here = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return tuple(sorted({*here, *_REGISTERED}))


def get_task(name: str) -> Task:
    """The task ``name``; ValueError naming the known ones otherwise."""
    if name in _REGISTERED:
        return _REGISTERED[name]()
    if name not in task_names():
        raise ValueError(f"task must be one of {', '.join(task_names())}; got {name!r}.")
    return importlib.import_module(f"{__name__}.{name}").task()
