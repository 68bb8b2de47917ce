"""Times the Hopfield layers' forward+backward against hflayers (PyTorch, eager), one thread each.

Command (about 2-4 min on one core; give the folder that holds the ``hflayers`` package;
PyTorch must be importable, it is no dependency of this project):
  python benchmarks/bench_hopfield_layer.py --hflayers_path /path/to/hopfield-layers
  python benchmarks/bench_hopfield_layer.py --repeats 5 --batch 8   # ours only, quicker
  python benchmarks/bench_hopfield_layer.py --implicit   # fixed point vs unrolled (~25 min)

Layers (hflayers' defaults otherwise): Hopfield(64, num_heads=8) on x [B, L, 64] as
stored, state and projection; HopfieldPooling(64, quantity=16) and
HopfieldLayer(64, quantity=256), one head (``--heads``, ``--lookup-heads``). Each step
is fwd+bwd of sum(out**2) w.r.t. the parameters and the input: ours
``jit(value_and_grad)``, hflayers ``loss.backward()``. Both normalizers of ours are
timed: "softmax" is the same computation as hflayers. The process runs one thread for both
(the process pins itself to one core before jax is imported, XLA's Eigen runs
single-threaded, ``torch.set_num_threads(1)``).
Every variant is compiled / warmed up first, then timed in interleaved rounds whose order
rotates (load changes on a shared machine hit all variants alike); the table gives median
wall and process CPU ms and the speedups hflayers / ours (CPU time is the steadier on a
loaded machine). Without ``--hflayers_path`` (or with an unimportable one) only ours is
timed and it says so: the benchmark fetches nothing.

``--implicit`` times update_steps_max=None (the fixed point, implicit backward) against
update_steps_max=n unrolled with n = the fixed point's step count, at a few values of the
scaling beta (larger beta: more steps to converge here); unrolled runs whose stored steps
would exceed 3 GiB are not run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def _parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hflayers_path", default=None, help="folder that holds the hflayers package")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--heads", type=int, default=8, help="heads of Hopfield")
    p.add_argument("--lookup-heads", type=int, default=1, help="heads of the pooling/lookup layers")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--layers", default="hopfield,pooling,lookup")
    p.add_argument("--implicit", action="store_true", help="time the implicit backward instead")
    p.add_argument("--threads", type=int, default=1, help="1: single-threaded XLA and torch")
    return p.parse_args()


def _layer_kwargs(flags):
    d = flags.input_size
    return {
        "hopfield": ("Hopfield", dict(input_size=d, num_heads=flags.heads)),
        "pooling": (
            "HopfieldPooling",
            dict(input_size=d, quantity=16, num_heads=flags.lookup_heads),
        ),
        "lookup": ("HopfieldLayer", dict(input_size=d, quantity=256, num_heads=flags.lookup_heads)),
    }


def ours_step(cls_name: str, kwargs: dict, x):
    """jit(value_and_grad) of sum(layer(x)**2) w.r.t. the params and the input, and its args."""
    import jax
    import jax.numpy as jnp

    import outeffhop

    model = getattr(outeffhop, cls_name)(**kwargs)
    params = jax.jit(model.init)(jax.random.key(0), x)["params"]

    def loss(params, x):
        return jnp.sum(jnp.square(model.apply({"params": params}, x)))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (params, x)


def hflayers_step(hflayers, cls_name: str, kwargs: dict, x_np):
    """An eager PyTorch step: forward, sum(out**2), backward (grads zeroed), and its args."""
    import torch

    torch.manual_seed(0)
    model = getattr(hflayers, cls_name)(**kwargs)
    x = torch.tensor(x_np, requires_grad=True)

    def step(model, x):
        model.zero_grad(set_to_none=True)
        x.grad = None
        loss = model(x).square().sum()
        loss.backward()
        return loss

    return step, (model, x)


def _block(out):
    import jax

    if hasattr(out, "block_until_ready") or isinstance(out, tuple | list | dict):
        jax.block_until_ready(out)
    return out


def time_variants(variants: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall ms, process CPU ms) per variant {name: (fn, args)}, interleaved rounds.

    CPU time (this process's threads) is far less sensitive than wall time to other
    processes sharing the cores; with one thread the two agree on an idle machine.
    """
    for fn, args in variants.values():
        _block(fn(*args))
        _block(fn(*args))
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no slot bias
            fn, args = variants[name]
            t0, c0 = time.perf_counter(), time.process_time()
            _block(fn(*args))
            times[name].append((1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)))
    return {
        name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
        for name, ts in times.items()
    }


def _import_hflayers(path):
    if path is None:
        print("hflayers: not timed (no --hflayers_path given; this benchmark fetches nothing)")
        return None
    sys.path.insert(0, os.path.abspath(path))
    try:
        import hflayers
        import torch
    except ImportError as e:
        print(f"hflayers: not timed ({path!r} gave ImportError: {e})")
        return None
    torch.set_num_threads(FLAGS.threads)
    where = os.path.dirname(hflayers.__file__)
    print(f"hflayers from {where}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    return hflayers


def compare(flags) -> None:
    import jax
    import numpy as np

    shape = (flags.batch, flags.length, flags.input_size)
    x_np = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    x = jax.numpy.asarray(x_np)
    hflayers = _import_hflayers(flags.hflayers_path)
    variants, layers = {}, [s for s in flags.layers.split(",") if s]
    for key in layers:
        cls_name, kw = _layer_kwargs(flags)[key]
        for norm in ("softmax", "softmax1"):
            variants[f"{key}/ours {norm}"] = ours_step(cls_name, dict(kw, normalizer=norm), x)
        if hflayers is not None:
            variants[f"{key}/hflayers"] = hflayers_step(hflayers, cls_name, kw, x_np)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; [B, L, D] = {list(shape)}; ")
    print(f"fwd+bwd of sum(out**2) w.r.t. params and input; f32; median of {flags.repeats}")
    print(f"interleaved rounds; load average {os.getloadavg()[0]:.2f} at start")
    med = time_variants(variants, flags.repeats)
    n = flags.batch * flags.length
    print(f"\n  {'variant':<28} {'wall ms':>9} {'cpu ms':>9} {'patterns/s':>12}")
    for name, (ms, cpu) in med.items():
        print(f"  {name:<28} {ms:9.1f} {cpu:9.1f} {n / ms * 1e3:12.0f}")
    if hflayers is not None:
        print("\n  speedup, hflayers / ours (wall; cpu):")
        for key in layers:
            hf, cells = med[f"{key}/hflayers"], []
            for norm in ("softmax", "softmax1"):
                ours = med[f"{key}/ours {norm}"]
                cells.append(f"{norm} {hf[0] / ours[0]:.2f}x; {hf[1] / ours[1]:.2f}x")
            print(f"  {key:<10} " + ", ".join(cells))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def implicit(flags) -> None:
    """Fixed point with implicit backward vs unrolled with as many steps, per scaling.

    The unrolled backward keeps every step's [B, H, L, S] association: runs needing more
    than ``UNROLL_BYTES`` for them are not timed (their memory is printed instead).
    """
    import jax
    import numpy as np

    import outeffhop

    shape = (flags.batch, flags.length, flags.input_size)
    x = jax.numpy.asarray(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    print(f"Hopfield({flags.input_size}, num_heads={flags.heads}) on {list(shape)}, softmax1, ")
    print(f"eps 1e-4; fwd+bwd median of {flags.repeats}; load {os.getloadavg()[0]:.2f} at start")
    head = ("scaling", "steps", "implicit cpu ms", "unrolled cpu ms", "ratio")
    print("\n  " + " ".join(f"{h:>{w}}" for h, w in zip(head, (8, 6, 16, 16, 6), strict=True)))
    for scaling in (0.5, 2.0, 4.0, 8.0, 16.0):
        kw = dict(input_size=flags.input_size, num_heads=flags.heads, scaling=scaling)
        model = outeffhop.Hopfield(**kw, update_steps_max=None)
        params = jax.jit(model.init)(jax.random.key(0), x)["params"]
        steps = _fixed_point_steps(model, params, x)
        per_step = 4 * flags.batch * flags.heads * flags.length**2
        variants = {"implicit": ours_step("Hopfield", dict(kw, update_steps_max=None), x)}
        if steps * per_step <= UNROLL_BYTES:
            unrolled = dict(kw, update_steps_max=steps, update_steps_eps=1e-4)
            variants["unrolled"] = ours_step("Hopfield", unrolled, x)
        med = {k: v[1] for k, v in time_variants(variants, flags.repeats).items()}  # cpu ms
        if "unrolled" in med:
            cells = f"{med['unrolled']:16.1f} {med['implicit'] / med['unrolled']:6.2f}"
        else:
            cells = f"{'not run':>16} ({steps * per_step / 2**30:.1f} GiB of steps)"
        print(f"  {scaling:8.2f} {steps:6d} {med['implicit']:16.1f} {cells}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


UNROLL_BYTES = 3 * 2**30


def _fixed_point_steps(model, params, x) -> int:
    """The most updates any head takes to reach the fixed point on ``x``."""
    from outeffhop.ops import hopfield as memory

    bound = model.bind({"params": params})
    q, k, _ = bound._project(x, x, x, bound.head_dim, bound.pattern_dim)
    beta = bound._beta(bound.head_dim, q.dtype)
    _, steps = memory.associate(
        q, k, beta=beta, normalizer=model.normalizer, update_steps_max=None,
        update_steps_eps=model.update_steps_eps, stop_axes=(0,),
    )  # fmt: skip
    return int(steps.max())


FLAGS = None

if __name__ == "__main__":
    FLAGS = _parse()
    if FLAGS.threads == 1:  # one core for the whole process, both frameworks' threads included
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + SINGLE_THREAD).strip()
        print(f"pinned to core {max(os.sched_getaffinity(0))}")
    implicit(FLAGS) if FLAGS.implicit else compare(FLAGS)
