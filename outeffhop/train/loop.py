"""The training loop: sharded state creation, a pure jitted step, eval, checkpoints, logs."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from outeffhop.nn import constraints
from outeffhop.train import (
    checkpoint,
    config_check,
    init_from,
    metrics_log,
    optim,
    run_guard,
    sharding,
    tasks,
)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or inf loss, gradient or parameter."""


def _keys(cfg):
    key = jax.random.key(cfg.seed, impl=cfg.get("rng_impl", None) or None)
    init_key, train_key = jax.random.split(key)
    return init_key, train_key


def init_fn(rng, *, cfg, task, model, tx):
    """The train state ``{step, params, opt_state}`` from an RNG key (run under jit)."""
    batch = task.example_batch(cfg, 1)
    params = nn.meta.unbox(task.init(model, {"params": rng, "dropout": rng}, batch))
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}


def _model_axis(mesh):
    """The mesh axis tensor parallelism uses, or None when it has one device."""
    return sharding.MODEL_AXIS if mesh.shape[sharding.MODEL_AXIS] > 1 else None


def _rules(task, parallelism, model_axis=None):
    """The task's logical axis rules (params and activations), or None."""
    if task.logical_rules is None:
        return None
    if model_axis is None:
        return task.logical_rules(parallelism)
    return task.logical_rules(parallelism, model_axis)


def _param_specs(cfg, task, model, mesh):
    """PartitionSpecs of the params from the model's logical axis names, or None."""
    return _param_specs_for(cfg, task, model, cfg.parallelism, _model_axis(mesh))


def _param_specs_for(cfg, task, model, parallelism, model_axis=None):
    if task.logical_rules is None:
        return None
    batch = jax.eval_shape(lambda: task.example_batch(cfg, 1))
    rngs = lambda r: {"params": r, "dropout": r}  # noqa: E731
    boxed = jax.eval_shape(lambda r, b: task.init(model, rngs(r), b), _keys(cfg)[0], batch)
    return nn.logical_to_mesh(nn.get_partition_spec(boxed), _rules(task, parallelism, model_axis))


def _accumulate(loss_fn, params, batch, rng, num_micro):
    """Sum of (loss_sum, weight, correct) and grads of loss_sum over ``num_micro`` microbatches.

    Microbatch i holds rows i, i + A, i + 2A, ... (A = num_micro), so every device keeps
    its own rows and no data moves.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def split(x):
        x = x.reshape(x.shape[0] // num_micro, num_micro, *x.shape[1:])
        return jnp.swapaxes(x, 0, 1)

    micro = jax.tree.map(split, batch)

    def body(carry, xs):
        mb, i = xs
        (s, (w, c)), g = grad_fn(params, mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (s, w, c, g)), None

    zeros = (0.0, 0.0, 0.0, jax.tree.map(jnp.zeros_like, params))
    zeros = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), zeros)
    (s, w, c, g), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(num_micro)))
    return s, w, c, g


def train_step(state, batch, *, cfg, task, model, tx, schedule):
    """One optimizer step on the global batch: pure, ``(state, batch) -> (state, metrics)``.

    grads = grad(sum of per-token losses) / (number of weighted tokens), so the step is the
    same for any split of the batch over devices, hosts and microbatches.
    """
    rng = jax.random.fold_in(_keys(cfg)[1], state["step"])

    def loss_fn(params, mb, r):
        s, w, c = task.loss(model, params, mb, r, True)
        return s, (w, c)

    if cfg.grad_accum_steps == 1:
        # One pass: differentiate the mean directly, so the 1/w scaling happens once on the
        # loss instead of once per parameter (w counts labels; it does not depend on params).
        def mean_loss(params, mb, r):
            s, w, c = task.loss(model, params, mb, r, True)
            w = jnp.maximum(jax.lax.stop_gradient(w), 1.0)
            return s / w, (s, w, c)

        (_, (s, w, c)), grads = jax.value_and_grad(mean_loss, has_aux=True)(
            state["params"], batch, rng
        )
    else:
        s, w, c, g = _accumulate(loss_fn, state["params"], batch, rng, cfg.grad_accum_steps)
        w = jnp.maximum(w, 1.0)
        grads = jax.tree.map(lambda x: x / w, g)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {
        "loss": s / w,
        "accuracy": c / w,
        "grad_norm": optax.global_norm(grads),
        "param_norm": optax.global_norm(params),
        "lr": schedule(state["step"]),
    }
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics


def eval_step(params, batch, *, task, model):
    """Sums (loss, weight, correct) of one eval batch, no dropout."""
    return task.loss(model, params, batch, jax.random.key(0), False)  # rng unused


def _check_finite(step, values, last_saved):
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        kept = f"step {last_saved}" if last_saved is not None else "none"
        raise NonFiniteLossError(
            f"non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step {step}; "
            f"training stopped, last good checkpoint kept: {kept}."
        )


@dataclasses.dataclass
class _Run:
    """Everything a training run sets up before its first step (``_setup``)."""

    cfg: object
    task: object
    mesh: object
    model: object
    tx: object
    schedule: object
    init: object
    abstract: dict
    shardings: dict
    resume_step: int | None
    rules: tuple | None = None  # logical axis rules of the activation constraints


def _setup(cfg, workdir: str, devices) -> _Run:
    """Checks the config and the checkpoint; builds model, optimizer and state shardings."""
    sharding.maybe_initialize_distributed(cfg.distributed)
    task = tasks.get_task(cfg.task)
    mesh_cfg = cfg.get("mesh", {})
    mesh = sharding.make_mesh(devices, mesh_cfg.get("data", -1), mesh_cfg.get("model", 1))
    init_from.configure(cfg)  # init_from=hf:...: config.model's architecture from config.json
    config_check.validate(
        cfg,
        task,
        num_devices=len(mesh.devices.flat),
        process_count=jax.process_count(),
        mesh_shape=tuple(mesh.shape.values()),
    )
    if task.check is not None:
        task.check(cfg)
    model = task.build_model(cfg)
    schedule = optim.learning_rate_schedule(cfg.optim, cfg.num_steps)
    tx = optim.make_optimizer(cfg.optim, cfg.num_steps)
    init = functools.partial(init_fn, cfg=cfg, task=task, model=model, tx=tx)
    abstract = jax.eval_shape(init, _keys(cfg)[0])
    shardings = sharding.state_shardings(
        abstract, mesh, cfg.parallelism, cfg.fsdp_min_size, _param_specs(cfg, task, model, mesh)
    )
    rules = _rules(task, cfg.parallelism, _model_axis(mesh))
    resume_step = checkpoint.latest_compatible_step(workdir, abstract["params"])
    if jax.process_count() > 1:  # every process inspects before any creates the directory
        multihost_utils.sync_global_devices("outeffhop.train: checkpoints inspected")
    return _Run(cfg, task, mesh, model, tx, schedule, init, abstract, shardings, resume_step, rules)


def _initial_state(run: _Run, mngr, data_iter):
    """A fresh sharded state (from ``init_from``'s params if set), or the newest checkpoint."""
    if run.resume_step is None and run.cfg.get("init_from"):
        params = init_from.load_params(run.cfg, run.abstract["params"], _keys(run.cfg)[0])
        fresh = functools.partial(init_from.fresh_state, tx=run.tx)
        return jax.jit(fresh, out_shardings=run.shardings)(params)
    if run.resume_step is None:
        return jax.jit(run.init, out_shardings=run.shardings)(_keys(run.cfg)[0])
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        run.abstract,
        run.shardings,
    )
    state = checkpoint.restore(mngr, run.resume_step, target, data_iter)
    logging.warning("resumed from %s step %d", mngr.directory, run.resume_step)
    return state


def _constrained(run: _Run, fn):
    """``fn`` traced with the model's activation constraints on ``run.mesh`` (batch over
    ``data``, heads / FFN / vocab over ``model``), when the task has logical axis rules."""
    if run.rules is None:
        return fn

    def traced(*args):
        with constraints.activation_sharding(run.mesh, run.rules):
            return fn(*args)

    return traced


def _compiled_steps(run: _Run):
    """The jitted train step (state donated) and eval step, with in/out shardings."""
    replicated = NamedSharding(run.mesh, P())
    batch_sh = sharding.batch_sharding(run.mesh)
    step = functools.partial(
        train_step, cfg=run.cfg, task=run.task, model=run.model, tx=run.tx, schedule=run.schedule
    )
    step_fn = jax.jit(
        _constrained(run, step),
        in_shardings=(run.shardings, batch_sh),
        out_shardings=(run.shardings, replicated),
        donate_argnums=0,
    )
    eval_fn = jax.jit(
        _constrained(run, functools.partial(eval_step, task=run.task, model=run.model)),
        in_shardings=(run.shardings["params"], batch_sh),
        out_shardings=replicated,
    )
    return step_fn, eval_fn


def train_and_evaluate(config, workdir: str, *, devices=None) -> dict:
    """Train ``config`` in ``workdir`` (resuming from its newest checkpoint); return the state.

    ``devices`` (default: all of every process) span the mesh.
    Writes ``workdir/metrics.jsonl``, ``workdir/tb`` and ``workdir/checkpoints``. Raises
    ValueError for a bad config or checkpoint before anything on disk changes, and
    NonFiniteLossError (naming the step) when the loss goes NaN/inf.
    """
    cfg = config
    run = _setup(cfg, workdir, devices)
    pidx = jax.process_index()
    lock = run_guard.workdir_lock(workdir) if pidx == 0 else contextlib.nullcontext()
    with lock:
        if pidx == 0:
            run_guard.check_config(workdir, cfg, has_checkpoint=run.resume_step is not None)
        note = run_guard.check_budget(run.resume_step, cfg.num_steps)
        if note:
            logging.warning(note)
        return _train(run, workdir)


def _train(run: _Run, workdir: str) -> dict:
    cfg = run.cfg
    pidx, pcount = jax.process_index(), jax.process_count()
    say = _progress(cfg.progress_bar and pidx == 0)
    say("preparing the data (text: the first run trains and caches a tokenizer) ...")
    data_iter = run.task.train_iter(cfg, workdir, pidx, pcount)
    mngr = checkpoint.make_manager(workdir, cfg.max_to_keep)
    state = _initial_state(run, mngr, data_iter)
    step_fn, eval_fn = _compiled_steps(run)
    eval_batches = [
        sharding.global_batch(b, run.mesh)
        for b in run.task.eval_batches(cfg, workdir, pidx, pcount)
    ]
    start = int(jax.device_get(state["step"]))
    say("data ready; compiling the train step (the progress bar starts after it) ...")
    log = metrics_log.MetricsLog(
        workdir,
        enabled=pidx == 0,
        start_step=start,
        num_steps=cfg.num_steps,
        progress_bar=cfg.progress_bar,
    )
    try:
        state = _loop(run, state, data_iter, eval_batches, step_fn, eval_fn, mngr, log, start)
    finally:
        with contextlib.suppress(Exception):  # a failed save was already reported
            mngr.wait_until_finished()
            mngr.close()
        log.close()
    return state


def _progress(enabled: bool):
    """``say(msg)``: one stderr line with the seconds since the first message (or nothing)."""
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if enabled:
            print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    return say


def _loop(run, state, data_iter, eval_batches, step_fn, eval_fn, mngr, log, start):
    """Steps start + 1 .. num_steps: metrics read one step late, eval and checkpoints."""
    cfg = run.cfg
    tokens_per_step = cfg.batch_size * run.task.tokens_per_example(cfg)
    # CPU collectives (gloo) deadlock when several steps are in flight across processes.
    multi_cpu = jax.process_count() > 1 and jax.default_backend() == "cpu"
    sync_every_step = cfg.sync_every_step or multi_cpu
    saves = _Saves(mngr, run.resume_step)
    last_saved = run.resume_step
    pending = None
    clock = {"t": time.perf_counter(), "step": start}

    def settle(item):
        """Fetch a finished step's metrics (one step late), check them, log them."""
        step, dev_metrics = item
        values = {k: float(v) for k, v in jax.device_get(dev_metrics).items()}
        _check_finite(step, values, last_saved)
        log.advance(step)
        if step % cfg.log_every == 0 or step == cfg.num_steps:
            now = time.perf_counter()
            dt = max(now - clock["t"], 1e-9)
            values["tokens_per_s"] = tokens_per_step * (step - clock["step"]) / dt
            clock.update(t=now, step=step)
            log.write(step, values)

    for step in range(start + 1, cfg.num_steps + 1):
        batch = sharding.global_batch(next(data_iter), run.mesh)
        state, dev_metrics = step_fn(state, batch)
        if sync_every_step:
            jax.block_until_ready(dev_metrics)
        if pending is not None:
            settle(pending)
        pending = (step, dev_metrics)
        is_last = step == cfg.num_steps
        do_eval = bool(eval_batches) and (
            is_last or (cfg.eval_every and step % cfg.eval_every == 0)
        )
        do_save = is_last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
        if do_eval or do_save:
            settle(pending)  # a checkpoint is written only after its step checked finite
            pending = None
        if do_eval:
            sums = [eval_fn(state["params"], b) for b in eval_batches]
            s, w, c = (float(sum(x[i] for x in jax.device_get(sums))) for i in range(3))
            log.write(step, {"eval_loss": s / max(w, 1.0), "eval_accuracy": c / max(w, 1.0)})
        if do_save:
            saves.save(step, state, data_iter)
            last_saved = step
        elif step % cfg.log_every == 0:
            saves.check()
    if pending is not None:
        settle(pending)
    saves.check(wait=True)
    return state


class _Saves:
    """Asynchronous checkpoint saves whose failure stops the run at the next check.

    ``issued`` is the newest save started, ``good`` the newest one known to have finished.
    """

    def __init__(self, mngr, resume_step):
        self.mngr, self.issued, self.good = mngr, resume_step, resume_step

    def check(self, *, wait: bool = False) -> None:
        """Raise CheckpointSaveError (one sentence) if a started save has failed."""
        try:
            if wait:
                self.mngr.wait_until_finished()
            self.mngr.check_for_errors()
        except Exception as e:  # orbax re-raises what the filesystem raised (OSError, ...)
            raise run_guard.save_failed(e, self.issued, self.mngr.directory, self.good) from e
        if wait:
            self.good = self.issued

    def save(self, step, state, data_iter) -> None:
        self.check(wait=True)  # the previous save finished well: it is the last good one
        self.issued = step
        try:
            checkpoint.save(self.mngr, step, state, data_iter)
        except Exception as e:
            raise run_guard.save_failed(e, step, self.mngr.directory, self.good) from e
