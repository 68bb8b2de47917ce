"""Loads experiment configs from ``configs/<name>.py:<preset>`` files by path."""

from __future__ import annotations

import importlib.util
import pathlib

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"


def load_config(spec: str):
    """``"retrieval:quick"`` or ``"configs/retrieval.py:quick"`` -> ``get_config("quick")``."""
    path, _, arg = spec.partition(":")
    p = pathlib.Path(path)
    if p.suffix != ".py":
        p = CONFIG_DIR / f"{path}.py"
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist (from spec {spec!r}).")
    module_spec = importlib.util.spec_from_file_location(f"_config_{p.stem}", p)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
