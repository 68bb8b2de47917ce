"""Experiment configs, one file per experiment: ``get_config(arg)``, presets quick | cpu | paper.

Load one with ``outeffhop.launch.configs.load_config("bert:quick")`` or pass the file to a
script: ``--config configs/bert.py:quick``. Each file's docstring gives the command, the
expected runtime and the expected result.
"""
