"""The trainer: one sharded optax loop with orbax checkpoints for every model of the study."""

from outeffhop.train.defaults import base_config
from outeffhop.train.loop import NonFiniteLossError, train_and_evaluate, train_step
from outeffhop.train.tasks import Task, get_task, register_task

__all__ = [
    "NonFiniteLossError",
    "Task",
    "base_config",
    "get_task",
    "register_task",
    "train_and_evaluate",
    "train_step",
]
