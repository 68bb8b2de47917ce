"""Prompt-only training of the frozen transformer: grad w.r.t. P, params closed over.

  loss(P) = mean_{(X, Y)} || tau([P, X])[L_p:] - Y ||^2 / (L D)  (+ w relu(B_prompt - B*)^2)

Presets: Lester et al. 2021 (Adafactor, lr 0.3, beta2 decay 0.8, no parameter scaling,
init uniform +-0.5) and HF PEFT inits (RANDOM normal, from data samples, from vocabulary rows).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax

from prompt_theory import efficiency as ef
from prompt_theory import model as pm
from prompt_theory.poly_attention import poly_attention_fn

INITS = ("uniform", "normal", "sample", "vocab")
OPTIMIZERS = ("adafactor", "adam", "sgd")


def init_prompt(key, length: int, d_model: int, method: str = "uniform", *, source=None, std=0.5):
    """A prompt [L_p, D].

    uniform: U(-0.5, 0.5) (Lester); normal: N(0, std^2) (PEFT RANDOM); sample: random tokens
    of ``source`` [..., D] data (PEFT TEXT-like); vocab: random rows of an embedding table
    ``source`` [V, D] (PEFT SAMPLE_VOCAB).
    """
    if length < 1 or d_model < 1:
        raise ValueError(f"length and d_model must be positive; got {length} and {d_model}.")
    if method == "uniform":
        return jax.random.uniform(key, (length, d_model), minval=-0.5, maxval=0.5)
    if method == "normal":
        return std * jax.random.normal(key, (length, d_model))
    if method in ("sample", "vocab"):
        if source is None or source.shape[-1] != d_model:
            raise ValueError(f"init {method!r} needs source [..., {d_model}]; got {source!r}.")
        rows = source.reshape(-1, d_model)
        return rows[
            jax.random.choice(key, rows.shape[0], (length,), replace=length > rows.shape[0])
        ]
    raise ValueError(f"method must be one of {', '.join(INITS)}; got {method!r}.")


def make_optimizer(name: str = "adafactor", learning_rate: float = 0.3):
    """adafactor: Lester et al.'s preset; adam; sgd."""
    if name == "adafactor":
        return optax.adafactor(
            learning_rate=learning_rate,
            decay_rate=0.8,
            multiply_by_parameter_scale=False,
            clipping_threshold=1.0,
            weight_decay_rate=1e-5,
        )
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}.")


def attention_fn_for(degree: int | None):
    """None (exact attention) for degree None, else the poly attention hook of that degree."""
    return None if degree is None else poly_attention_fn(int(degree))


def prompt_loss(prompt, params, x, y, *, scale="1/sqrt(d)", causal=False, attention_fn=None):
    """Mean squared error of tau([P, X])[L_p:] against y [..., L, D]."""
    if prompt.ndim != 2 or prompt.shape[-1] != x.shape[-1]:
        raise ValueError(f"prompt must be [L_p, {x.shape[-1]}] (x's width); got {prompt.shape}.")
    out = pm.prompted(params, prompt, x, scale=scale, causal=causal, attention_fn=attention_fn)
    return jnp.mean((out - y) ** 2)


def make_train_step(
    params, tx, *, scale="1/sqrt(d)", causal=False, degree=None, penalty=(0.0, 1.0)
):
    """A jitted pure step (prompt, opt_state, x, y) -> (prompt, opt_state, metrics).

    Only the prompt is differentiated; params are closed over (constants of the step).
    penalty = (weight, target) adds weight * relu(B_prompt - target)^2.
    """
    fn = attention_fn_for(degree)
    weight, target = penalty

    def loss_fn(prompt, x, y):
        loss = prompt_loss(prompt, params, x, y, scale=scale, causal=causal, attention_fn=fn)
        total = loss + weight * ef.norm_penalty(params, prompt, target) if weight else loss
        return total, loss

    @jax.jit
    def step(prompt, opt_state, x, y):
        (_, loss), grad = jax.value_and_grad(loss_fn, has_aux=True)(prompt, x, y)
        updates, opt_state = tx.update(grad, opt_state, prompt)
        prompt = optax.apply_updates(prompt, updates)
        return prompt, opt_state, {"loss": loss, "grad_norm": optax.global_norm(grad)}

    return step


def tune_prompt(params, x, y, cfg, *, key, log=print) -> tuple[jax.Array, dict]:
    """Tune a prompt on (x [N, L, D], y [N, L, D]) per cfg; returns (prompt, history).

    cfg fields: prompt_len, init, optimizer, learning_rate, steps, batch_size, scale, causal,
    degree (None = exact attention), penalty_weight, norm_target (B*; None = unconstrained),
    project (rescale prompt rows to B* after each step), log_every, eps.
    History: per-step loss, every log_every steps the norm criterion (B, b, regime), and
    the initial prompt (after projection, if any).
    """
    if x.ndim != 3 or y.shape != x.shape:
        raise ValueError(f"x and y must both be [N, L, D]; got {x.shape} and {y.shape}.")
    k_init, k_data = jax.random.split(key)
    prompt = init_prompt(k_init, cfg.prompt_len, x.shape[-1], cfg.init, source=x)
    tx = make_optimizer(cfg.optimizer, cfg.learning_rate)
    target = cfg.norm_target
    weight = cfg.penalty_weight if target is not None else 0.0
    step = make_train_step(
        params,
        tx,
        scale=cfg.scale,
        causal=cfg.causal,
        degree=cfg.degree,
        penalty=(weight, target if target is not None else 1.0),
    )
    project = jax.jit(functools.partial(ef.project_prompt, params, target=target))
    if cfg.project and target is not None:
        prompt = project(prompt)
    opt_state = tx.init(prompt)
    n, bs = x.shape[0], min(cfg.batch_size, x.shape[0])
    hist = {"loss": [], "criterion": [], "initial_prompt": prompt}
    pending = None
    for i in range(cfg.steps):
        idx = jax.random.choice(jax.random.fold_in(k_data, i), n, (bs,), replace=False)
        prompt, opt_state, metrics = step(prompt, opt_state, x[idx], y[idx])
        if cfg.project and target is not None:
            prompt = project(prompt)
        if pending is not None:  # read step i-1's metrics after step i is dispatched
            hist["loss"].append(float(pending["loss"]))
        pending = metrics
        if i % cfg.log_every == 0 or i == cfg.steps - 1:
            crit = ef.norm_criterion(params, prompt, x[:64], scale=cfg.scale, eps=cfg.eps)
            crit["step"] = i
            hist["criterion"].append(crit)
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {i}.")
            log(
                f"step {i:5d} loss {loss:.5f} B_prompt {crit['B_prompt']:.3f} "
                f"B_eff/sqrt(log n) {crit['ratio']:.3f} (B_crit {crit['B_crit_ratio']:.3f}) "
                f"b {crit['max_qk_scaled']:.3f} "
                f"b_out {crit['max_qk_scaled_out']:.3f} "
                f"{crit['regime']} (degree {crit['degree']}, rank {crit['rank']})"
            )
    hist["loss"].append(float(pending["loss"]))
    return prompt, hist


def lipschitz_task(key, num: int, length: int, d_model: int):
    """x ~ U[0,1]^{L x D}; y_i = sin(pi x_i A) / 2 + (mean_j x_j) C: a Lipschitz seq-to-seq map."""
    kx, ka, kc = jax.random.split(key, 3)
    a = jax.random.normal(ka, (d_model, d_model)) / math.sqrt(d_model)
    c = jax.random.normal(kc, (d_model, d_model)) / math.sqrt(d_model)
    x = jax.random.uniform(kx, (num, length, d_model))
    return x, 0.5 * jnp.sin(jnp.pi * x @ a) + jnp.mean(x, -2, keepdims=True) @ c


def memorization_task(key, num: int, length: int, d_model: int):
    """num arbitrary pairs: x ~ U[0,1]^{L x D}, y ~ N(0, 1/4) independent of x."""
    kx, ky = jax.random.split(key)
    x = jax.random.uniform(kx, (num, length, d_model))
    return x, 0.5 * jax.random.normal(ky, (num, length, d_model))


PROBLEMS = {"lipschitz": lipschitz_task, "memorization": memorization_task}  # data per name
