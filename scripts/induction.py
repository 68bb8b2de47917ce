"""Outlier induction: every variant on the synthetic task whose heads must no-op.
python scripts/induction.py --config configs/induction.py:quick --workdir runs/induction
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "outeffhop.experiments.induction",
        "configs/induction.py:quick",
        "runs/induction",
    )
