"""The outlier / W8A8 study (the papers' table): every variant, one pinned process per core.

    python scripts/reproduce.py --config configs/reproduce.py:quick --workdir runs/reproduce

Finished runs are not redone: rerun the same command to continue a stopped study.
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "outeffhop.experiments.outlier_study",
        "configs/reproduce.py:quick",
        "runs/reproduce",
    )
