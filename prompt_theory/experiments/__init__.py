"""The prompt-theory experiments: each exposes ``run(config, workdir)`` for a configs/ file."""
