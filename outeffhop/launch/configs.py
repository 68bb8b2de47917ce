"""Experiment configs: ``configs/<name>.py:<arg>`` files, and the one preset parser they share.

A config file defines ``get_config(arg)``; ``arg`` is a preset name optionally followed by
overrides, ``"quick"`` or ``"quick,seed=3,optim.lr=1e-3"`` (big_vision's convention), parsed
by ``parse_arg``. Every config speaks the same preset vocabulary: ``quick`` (minutes on a
laptop CPU; the README's main job), ``cpu`` (the measured CPU-scale runs, up to hours),
``paper`` (the papers' sizes, accelerators), plus a few named extras a file documents.
The ``configs`` folder is installed as the ``configs`` package, so ``load_config("bert:quick")``
works from a wheel as from a checkout.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.resources
import importlib.util
import pathlib

STANDARD_PRESETS = ("quick", "cpu", "paper")


@dataclasses.dataclass(frozen=True)
class PresetArg:
    """A parsed config argument: the preset and ``key=value`` overrides (dotted keys)."""

    preset: str
    overrides: tuple[tuple[str, object], ...] = ()

    def apply(self, cfg):
        """``cfg`` with every override set; ValueError naming an unknown field."""
        for dotted, value in self.overrides:
            node = cfg
            *parents, leaf = dotted.split(".")
            for part in parents:
                if part not in node:
                    raise ValueError(f"config has no field {dotted!r} (no {part!r}).")
                node = node[part]
            if leaf not in node:
                raise ValueError(f"config has no field {dotted!r}.")
            node[leaf] = value
        return cfg


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string


def parse_arg(arg: str | None, *, presets: tuple[str, ...], default: str) -> PresetArg:
    """``"quick,seed=3"`` -> PresetArg("quick", (("seed", 3),)); None or "" -> ``default``.

    Values are Python literals (numbers, tuples, True) or bare strings. ValueError names the
    accepted presets when the first item is not one of them.
    """
    items = [s.strip() for s in (arg or "").split(",") if s.strip()]
    preset = default
    if items and "=" not in items[0]:
        preset = items.pop(0)
    if preset not in presets:
        raise ValueError(f"preset must be one of {', '.join(presets)}; got {preset!r}.")
    overrides = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"config overrides must be key=value; got {item!r} in {arg!r}.")
        overrides.append((key.strip(), _literal(value.strip())))
    return PresetArg(preset, tuple(overrides))


def config_path(name: str) -> pathlib.Path:
    """The file of config ``name`` (``bert`` or a path ``configs/bert.py``)."""
    p = pathlib.Path(name)
    if p.suffix == ".py":
        return p
    return pathlib.Path(str(importlib.resources.files("configs").joinpath(f"{name}.py")))


def load_config(spec: str):
    """``"retrieval:quick"`` or ``"configs/retrieval.py:quick"`` -> ``get_config("quick")``."""
    path, _, arg = spec.partition(":")
    p = config_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist (from spec {spec!r}).")
    module_spec = importlib.util.spec_from_file_location(f"_config_{p.stem}", p)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
