"""Storage capacity of softmax vs Softmax_1 Hopfield retrieval.

    python scripts/memory_capacity.py --config configs/memory_capacity.py:quick \\
        --workdir runs/memory_capacity
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "outeffhop.experiments.memory.storage_capacity",
        "configs/memory_capacity.py:quick",
        "runs/memory_capacity",
    )
