"""Task registry: how the trainer finds a model, its loss and its data from ``config.task``.

A task bundles everything model-specific, so the loop in ``loop.py`` knows no model:
building the Flax module from the config, initializing its params, the loss (as sums, see
``losses.py``) and the train/eval data iterators of one process.
"""

from __future__ import annotations

import dataclasses
import importlib
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
    logical_rules(parallelism) -> flax logical axis rules, when ``init`` returns params
        boxed with logical axis names; None = shard by shape (``sharding.fsdp_spec``).
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


# name -> "module:function" returning a Task; imported on first use.
_TASKS: dict[str, str | Callable[[], Task]] = {
    "toy": "outeffhop.train.toy:task",
    "bert": "outeffhop.train.task_adapters:bert_task",
    "opt": "outeffhop.train.task_adapters:opt_task",
    "vit": "outeffhop.train.task_adapters:vit_task",
    "stanhop": "outeffhop.train.stanhop_task:task",
}


def register_task(name: str, factory: Callable[[], Task]) -> None:
    """Make ``config.task = name`` resolve to ``factory()``."""
    _TASKS[name] = factory


def task_names() -> tuple[str, ...]:
    return tuple(sorted(_TASKS))


def get_task(name: str) -> Task:
    """The registered task ``name``; ValueError naming the known ones otherwise."""
    if name not in _TASKS:
        raise ValueError(f"task must be one of {', '.join(task_names())}; got {name!r}.")
    factory = _TASKS[name]
    if isinstance(factory, str):
        module, fn = factory.split(":")
        factory = getattr(importlib.import_module(module), fn)
    return factory()
