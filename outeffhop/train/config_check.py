"""Config validation: every bad field fails before any device work or checkpoint access."""

from __future__ import annotations

import os
from numbers import Number

from absl import logging

from outeffhop.nn.attention import uniform_clipped_from
from outeffhop.train import init_from, optim, sharding

POSITIVE = ("batch_size", "grad_accum_steps", "num_steps", "log_every")
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg", "philox4x32")
NON_NEGATIVE = (
    "eval_every",
    "eval_steps",
    "checkpoint_every",
    "optim.warmup_steps",
    "optim.weight_decay",
)


def get_field(cfg, dotted: str):
    """``cfg.a.b`` for ``dotted='a.b'``; ValueError naming the field when it is missing."""
    node = cfg
    for part in dotted.split("."):
        if part not in node:
            raise ValueError(f"config.{dotted} is missing; add it to the config.")
        node = node[part]
    return node


def _number(cfg, field):
    value = get_field(cfg, field)
    if isinstance(value, bool) or not isinstance(value, Number):
        raise ValueError(f"config.{field} must be a number; got {value!r}.")
    return value


def validate(cfg, task, *, num_devices: int, process_count: int = 1) -> None:
    """Raise ValueError naming the first bad field of ``cfg`` for ``task`` on this topology."""
    for field in POSITIVE + tuple(task.positive_fields) + ("max_to_keep",):
        if _number(cfg, field) <= 0:
            raise ValueError(f"config.{field} must be > 0; got {get_field(cfg, field)!r}.")
    for field in NON_NEGATIVE + ("optim.clip_norm",):
        if _number(cfg, field) < 0:
            raise ValueError(f"config.{field} must be >= 0; got {get_field(cfg, field)!r}.")
    if _number(cfg, "optim.lr") <= 0:
        raise ValueError(f"config.optim.lr must be > 0; got {cfg.optim.lr!r}.")
    if cfg.optim.name not in optim.OPTIMIZERS:
        raise ValueError(
            f"config.optim.name must be one of {', '.join(optim.OPTIMIZERS)}; "
            f"got {cfg.optim.name!r}."
        )
    if cfg.optim.schedule not in optim.SCHEDULES:
        raise ValueError(
            f"config.optim.schedule must be one of {', '.join(optim.SCHEDULES)}; "
            f"got {cfg.optim.schedule!r}."
        )
    if cfg.get("rng_impl", "threefry2x32") not in RNG_IMPLS:
        raise ValueError(
            f"config.rng_impl must be one of {', '.join(RNG_IMPLS)}; got {cfg.rng_impl!r}."
        )
    if cfg.parallelism not in sharding.PARALLELISM:
        raise ValueError(f"config.parallelism must be dp or fsdp; got {cfg.parallelism!r}.")
    per_step = cfg.grad_accum_steps * num_devices
    if cfg.batch_size % per_step:
        raise ValueError(
            f"config.batch_size must be divisible by grad_accum_steps x device count = "
            f"{cfg.grad_accum_steps} x {num_devices}; got {cfg.batch_size}."
        )
    if cfg.batch_size % process_count:
        raise ValueError(
            f"config.batch_size must be divisible by the process count {process_count}; "
            f"got {cfg.batch_size}."
        )
    for field in ("data.path",) + tuple(task.path_fields):
        path = get_field(cfg, field) if field != "data.path" or "path" in cfg.data else ""
        if path and not os.path.exists(os.path.expanduser(path)):
            raise ValueError(f"config.{field} {path!r} does not exist; give an existing path.")
    init_from.check(cfg.get("init_from", ""))
    _warn_dead_clipping(cfg)


def _warn_dead_clipping(cfg) -> None:
    """Log when clipped softmax zeroes uniform attention at the configured sequence length."""
    attn = cfg.get("model", {}).get("attention")
    length = cfg.get("data", {}).get("seq_len")
    if attn is None or not length or cfg.model.get("model") == "vit":
        return
    dead = uniform_clipped_from(attn, int(length))
    if dead is not None and length >= dead:
        logging.warning(
            "attention.gamma=%s clips uniform attention to exactly 0 on rows with >= %d keys "
            "(seq_len %d): at init those rows output 0 and pass no gradient (see "
            "outeffhop.nn.attention.uniform_clipped_from).",
            attn.gamma if attn.get("alpha") is None else f"-{attn.alpha}/L",
            dead,
            length,
        )
