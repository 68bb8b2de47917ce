"""Run one experiment from its config: the config's ``experiment`` field names the module.

    python scripts/run.py --config configs/<name>.py:<preset> [--workdir runs/<name>]

e.g. ``--config configs/reproduce.py:quick`` (the outlier / W8A8 table, resumable),
``configs/phase_transition.py:cpu``, ``configs/retrieval.py:quick``; each config's docstring
says its runtime and what it should give. Model training: scripts/train.py.
"""

from outeffhop.launch.cli import experiment_main

if __name__ == "__main__":
    experiment_main()
