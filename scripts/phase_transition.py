"""The efficiency phase transition: poly-attention error, degree/rank and time vs B, n.

    python scripts/phase_transition.py --config configs/phase_transition.py:quick \\
        --workdir runs/phase_transition
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "prompt_theory.experiments.phase_transition",
        "configs/phase_transition.py:quick",
        "runs/phase_transition",
    )
