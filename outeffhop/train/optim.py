"""Optimizers and learning-rate schedules of the papers, built from a config."""

from __future__ import annotations

import jax
import optax

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("linear", "cosine", "constant")


def learning_rate_schedule(optim_cfg, num_steps: int):
    """lr(step): linear warmup from 0 to ``lr``, then the named decay until ``num_steps``.

    ``linear``: lr * (num_steps - step) / (num_steps - warmup) after warmup (BERT/OPT papers);
    ``cosine``: lr * 0.5 * (1 + cos(pi * (step - warmup) / (num_steps - warmup)));
    ``constant``: lr after warmup. All decays end at ``lr * end_lr_ratio``.
    """
    lr, warmup = float(optim_cfg.lr), int(optim_cfg.warmup_steps)
    end = lr * float(optim_cfg.get("end_lr_ratio", 0.0))
    name = optim_cfg.schedule
    if name not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {', '.join(SCHEDULES)}; got {name!r}.")
    decay_steps = max(num_steps - warmup, 1)
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, warmup + decay_steps, end)
    tail = (
        optax.linear_schedule(lr, end, decay_steps)
        if name == "linear"
        else optax.constant_schedule(lr)
    )
    if warmup == 0:
        return tail
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), tail], [warmup])


def decay_mask(params):
    """True for weights that get weight decay: not biases, not LayerNorm/RMSNorm scales.

    A leaf is exempt when it is 1-D (biases, norm scales, gate logits), or its path names a
    ``bias`` or a norm (``LayerNorm``, ``ln``, ``norm``). Embedding tables decay, as in BERT.
    """

    def keep(path, leaf):
        names = [str(getattr(k, "key", getattr(k, "name", k))).lower() for k in path]
        is_norm = any("norm" in n or n.startswith("ln") for n in names)
        return leaf.ndim > 1 and not is_norm and names[-1] != "bias"

    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(optim_cfg, num_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW (masked decay) / Adam / SGD with the schedule."""
    name = optim_cfg.name
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {', '.join(OPTIMIZERS)}; got {name!r}.")
    schedule = learning_rate_schedule(optim_cfg, num_steps)
    if name == "adamw":
        core = optax.adamw(
            schedule,
            b1=optim_cfg.b1,
            b2=optim_cfg.b2,
            eps=optim_cfg.eps,
            weight_decay=optim_cfg.weight_decay,
            mask=decay_mask,
        )
    elif name == "adam":
        core = optax.adam(schedule, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps)
    else:
        core = optax.sgd(schedule, momentum=optim_cfg.b1 or None)
    chain = [optax.clip_by_global_norm(optim_cfg.clip_norm)] if optim_cfg.clip_norm > 0 else []
    return optax.chain(*chain, core)
