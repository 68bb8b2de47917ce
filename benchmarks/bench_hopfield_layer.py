"""Times the Hopfield layer forward+backward: softmax_1 vs softmax at hflayers-like shapes.

Command (about 1-3 min on 2 CPU cores):
  .venv/bin/python benchmarks/bench_hopfield_layer.py              # B=32 L=256 D=64 H=8 f32
  .venv/bin/python benchmarks/bench_hopfield_layer.py --repeats 5 --batch 8   # quicker

hflayers' ``Hopfield(64, num_heads=8)`` on (32, 256, 64) is the reference shape (an earlier
measurement of hflayers itself: ~285 ms fwd+bwd in PyTorch on this machine). Every variant is
compiled first, then timed in interleaved rounds (load changes on a shared machine hit all
variants alike); the table gives median wall ms, state patterns per second (B * L / wall
time), median process CPU ms, and ratios of medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop import Hopfield


def make_step(model: Hopfield):
    """jit(value_and_grad) of sum(Hopfield(x)**2) w.r.t. the params and the input."""

    def loss(params, x):
        return jnp.sum(jnp.square(model.apply({"params": params}, x)))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def time_variants(variants: dict, args_of: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall ms, process CPU ms) per variant, in interleaved rounds after compiling.

    CPU time (all threads of this process) is far less sensitive than wall time to other
    processes sharing the cores, so its ratios are the ones to trust on a busy machine. The
    order rotates every round, so no variant always runs right after a heavier one.
    """
    for name, fn in variants.items():
        jax.block_until_ready(fn(*args_of[name]))  # compile + warm-up
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no slot bias
            fn = variants[name]
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn(*args_of[name]))
            times[name].append((1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)))
    return {
        name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
        for name, ts in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    flags = parser.parse_args()

    shape = (flags.batch, flags.length, flags.input_size)
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    configs = {
        "softmax": dict(normalizer="softmax"),
        "softmax1": dict(normalizer="softmax1"),
        "softmax+zero_assoc": dict(normalizer="softmax", add_zero_association=True),
        "softmax/3 updates": dict(normalizer="softmax", update_steps_max=3, update_steps_eps=1e-9),
        "softmax1/3 updates": dict(
            normalizer="softmax1", update_steps_max=3, update_steps_eps=1e-9
        ),
    }
    variants, args_of = {}, {}
    for name, kw in configs.items():
        model = Hopfield(input_size=flags.input_size, num_heads=flags.heads, **kw)
        params = jax.jit(model.init)(jax.random.key(0), x)["params"]
        variants[name], args_of[name] = make_step(model), (params, x)

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; [B, L, D] = {list(shape)}, ")
    print(f"heads={flags.heads}; fwd+bwd of sum(out**2) w.r.t. params and input; f32; ")
    print(f"median of {flags.repeats} interleaved rounds")
    med = time_variants(variants, args_of, flags.repeats)
    n = flags.batch * flags.length
    print(f"\n  {'variant':<22} {'wall ms':>9} {'patterns/s':>12} {'cpu ms':>9}")
    for name, (ms, cpu) in med.items():
        print(f"  {name:<22} {ms:9.1f} {n / ms * 1e3:12.0f} {cpu:9.1f}")
    for a, b in (("softmax1", "softmax"), ("softmax1/3 updates", "softmax/3 updates")):
        wall, cpu = med[a][0] / med[b][0], med[a][1] / med[b][1]
        print(f"  {a} / {b}: wall {wall:.3f}, cpu {cpu:.3f}")


if __name__ == "__main__":
    main()
