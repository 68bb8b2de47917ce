"""The ``bert`` task: masked-LM pre-training of ``models.bert`` (head at scored positions)."""

from outeffhop.train.tasks._transformer import text_task


def task():
    return text_task("bert")
