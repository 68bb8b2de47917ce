"""Almost-linear poly attention: d = c log2 n, eps = 1/n, fitted time exponents.

    python scripts/almost_linear.py --config configs/almost_linear.py:quick \\
        --workdir runs/almost_linear
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main(
        "prompt_theory.experiments.almost_linear",
        "configs/almost_linear.py:quick",
        "runs/almost_linear",
    )
