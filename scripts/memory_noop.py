"""No-op retrieval of softmax vs Softmax_1 for queries unrelated to every memory.
python scripts/memory_noop.py --config configs/memory_noop.py:quick --workdir runs/memory_noop
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "outeffhop.experiments.memory.noop",
        "configs/memory_noop.py:quick",
        "runs/memory_noop",
    )
