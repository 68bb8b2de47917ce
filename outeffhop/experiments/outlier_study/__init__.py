"""The outlier / W8A8 study (the papers' table): one job per (model, variant, seed), a scheduler."""

from outeffhop.experiments.outlier_study.jobs import VARIANTS, evaluate, evaluate_checkpoint
from outeffhop.experiments.outlier_study.scheduler import run

__all__ = ["VARIANTS", "evaluate", "evaluate_checkpoint", "run"]
