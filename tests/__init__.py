"""The test suite; it mirrors the package (tests/ops, tests/nn, ... tests/prompt_theory)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
