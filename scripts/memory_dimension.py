"""Capacity vs dimension of softmax vs Softmax_1 Hopfield retrieval, with the bounds' checks.

    python scripts/memory_dimension.py --config configs/memory_dimension.py:quick \\
        --workdir runs/memory_dimension
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "outeffhop.experiments.memory.dimension",
        "configs/memory_dimension.py:quick",
        "runs/memory_dimension",
    )
