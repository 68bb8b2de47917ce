"""Prompt-tuning limits made executable: universality, capacity and efficiency."""

from prompt_theory.capacity import construction_tokens, lipschitz_tokens, memorization_tokens
from prompt_theory.universality import Construction
from prompt_theory.universality import build as universal_construction
from prompt_theory.universality import make_prompt as universal_prompt

__all__ = [
    "Construction",
    "construction_tokens",
    "lipschitz_tokens",
    "memorization_tokens",
    "universal_construction",
    "universal_prompt",
]
