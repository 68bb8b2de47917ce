"""Convergence of softmax vs Softmax_1 Hopfield updates: energy, fixed points.

    python scripts/memory_convergence.py --config configs/memory_convergence.py:quick \\
        --workdir runs/memory_convergence
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "outeffhop.experiments.memory.convergence",
        "configs/memory_convergence.py:quick",
        "runs/memory_convergence",
    )
