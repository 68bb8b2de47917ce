"""Experiments: each module exposes ``run(config, workdir) -> dict``."""
