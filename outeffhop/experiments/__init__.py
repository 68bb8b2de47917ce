"""The experiments: outlier study, associative-memory studies, STanHop, induction, main job.

Each exposes ``run(config, workdir)`` for a ``configs/<name>.py`` config and writes
``report.md``, ``metrics.json`` and plots into ``workdir``.
"""
