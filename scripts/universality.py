"""Universality by explicit construction: error vs delta, prompt length vs 1/delta.

    python scripts/universality.py --config configs/universality.py:quick \\
        --workdir runs/universality
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "prompt_theory.experiments.universality",
        "configs/universality.py:quick",
        "runs/universality",
    )
