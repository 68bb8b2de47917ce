"""Prompt-tuning limits made executable: universality, capacity and efficiency."""
