"""The ``opt`` task: causal-LM pre-training of ``models.opt``."""

from outeffhop.train.tasks._transformer import text_task


def task():
    return text_task("opt")
