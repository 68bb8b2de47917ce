"""The ``vit`` task: image classification with ``models.vit``."""

from outeffhop.train.tasks._transformer import vit_task as task

__all__ = ["task"]
