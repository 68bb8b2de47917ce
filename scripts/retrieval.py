"""Associative-memory retrieval on 8x8 digits: softmax vs Softmax_1.
python scripts/retrieval.py --config configs/retrieval.py:quick --workdir runs/retrieval
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "outeffhop.experiments.memory.retrieval",
        "configs/retrieval.py:quick",
        "runs/retrieval",
    )
