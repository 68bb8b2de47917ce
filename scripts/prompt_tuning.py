"""Prompt tuning of the frozen 1-layer transformer, exact vs polynomial attention.

    python scripts/prompt_tuning.py --config configs/prompt_tuning.py:quick \\
        --workdir runs/prompt_tuning
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "prompt_theory.experiments.prompt_tuning",
        "configs/prompt_tuning.py:quick",
        "runs/prompt_tuning",
    )
