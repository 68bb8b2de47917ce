"""STanHop-Net normalizer study (each normalizer trained; MSE/MAE, outliers, W8A8).

    python scripts/stanhop.py --config configs/stanhop.py:quick --workdir runs/stanhop_study

Training one variant only: scripts/train.py with the same config.
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "outeffhop.experiments.stanhop.study",
        "configs/stanhop.py:quick",
        "runs/stanhop_study",
    )
