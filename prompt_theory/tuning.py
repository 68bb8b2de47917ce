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
                f"B_eff/sqrt(log n) {crit['ratio']:.3f} b {crit['max_qk_scaled']:.3f} "
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


TASKS = {"lipschitz": lipschitz_task, "memorization": memorization_task}


def _eval(params, prompt, x, y, cfg, degree):
    fn = attention_fn_for(degree)
    loss = prompt_loss(prompt, params, x, y, scale=cfg.scale, causal=cfg.causal, attention_fn=fn)
    return float(loss)


def run(config, workdir: str) -> dict:
    """Tune prompts on each task for each variant; write metrics.json, report.md, PNG curves.

    A variant overrides fields of config.tune (e.g. degree for poly attention, init,
    norm_target + project). Final losses are evaluated with exact attention (and with the
    variant's poly attention), so poly-trained prompts are judged on the true model.
    """
    import os
    import time

    os.makedirs(workdir, exist_ok=True)
    key = jax.random.PRNGKey(config.seed)
    m = config.model
    params = pm.init_params(
        jax.random.fold_in(key, 0),
        m.d_model,
        d_head=m.d_head,
        d_ff=m.d_ff,
        ffn_layers=m.ffn_layers,
        pre_ffn_layers=m.pre_ffn_layers,
    )
    lines = []

    def log(msg):
        lines.append(msg)
        print(msg, flush=True)

    results = {}
    for t, (task, num) in enumerate(config.tasks.items()):
        data = TASKS[task](jax.random.fold_in(key, 100 + t), 2 * num, config.seq_len, m.d_model)
        (x, y), (x_te, y_te) = ((a[:num] for a in data), (a[num:] for a in data))
        results[task] = {}
        for name, overrides in config.variants.items():
            cfg = config.tune.copy_and_resolve_references()
            cfg.update(overrides)
            log(f"== {task} / {name}: {dict(overrides)}")
            t0 = time.perf_counter()
            prompt, hist = tune_prompt(params, x, y, cfg, key=jax.random.fold_in(key, 7), log=log)
            results[task][name] = {
                "overrides": dict(overrides),
                "seconds": time.perf_counter() - t0,
                "loss_curve": hist["loss"],
                "criterion": hist["criterion"],
                "init_loss_exact": _eval(params, hist["initial_prompt"], x, y, cfg, None),
                "train_loss_exact": _eval(params, prompt, x, y, cfg, None),
                "test_loss_exact": _eval(params, prompt, x_te, y_te, cfg, None),
                "train_loss_poly": _eval(params, prompt, x, y, cfg, config.eval_degree),
                "final_B_prompt": hist["criterion"][-1]["B_prompt"],
                "final_regime": hist["criterion"][-1]["regime"],
            }
    _write(results, config, workdir)
    return results


def _write(results, config, workdir):
    import json
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(6 * len(results), 8), squeeze=False)
    for j, (task, res) in enumerate(results.items()):
        for name, r in res.items():
            axes[0, j].plot(r["loss_curve"], label=name)
            crit = r["criterion"]
            axes[1, j].plot([c["step"] for c in crit], [c["B_prompt"] for c in crit], label=name)
        axes[0, j].set(title=f"{task}: training loss", xlabel="step", ylabel="MSE", yscale="log")
        axes[1, j].set(title=f"{task}: B_prompt (max |q|,|k| of prompt rows)", xlabel="step")
        axes[0, j].legend()
        axes[1, j].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "loss_curves.png"), dpi=110)
    plt.close(fig)
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump({"config": config.to_dict(), "results": results}, f, indent=1, default=str)
    rows = [
        "| task | variant | init loss | train loss (exact) | train loss (poly g="
        f"{config.eval_degree}) | test loss (exact) | final B_prompt | regime | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, res in results.items():
        for name, r in res.items():
            rows.append(
                f"| {task} | {name} | {r['init_loss_exact']:.4f} | {r['train_loss_exact']:.4f} | "
                f"{r['train_loss_poly']:.4f} | {r['test_loss_exact']:.4f} | "
                f"{r['final_B_prompt']:.3f} | {r['final_regime']} | {r['seconds']:.1f} |"
            )
    text = "\n".join(
        [
            "# Prompt tuning the frozen 1-layer transformer",
            "",
            "Only P is trained. Losses are MSE; `exact` columns use exact softmax attention, the",
            "`poly` column evaluates the same prompt with degree-g polynomial attention.",
            "",
            *rows,
            "",
            "![loss curves](loss_curves.png)",
            "",
        ]
    )
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(text)
