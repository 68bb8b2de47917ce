"""Memorization capacity: minimal prompt length vs N, L, d, next to the bounds.

    python scripts/prompt_memorization.py --config configs/prompt_memorization.py:quick \\
        --workdir runs/prompt_memorization
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "prompt_theory.experiments.memorization",
        "configs/prompt_memorization.py:quick",
        "runs/prompt_memorization",
    )
