"""Times attention forward+backward: softmax_1 vs softmax, and fused vs reference paths.

Command (about 1-2 min on 2 CPU cores):
  .venv/bin/python benchmarks/bench_attention.py            # B=8 L=512 H=8 D=64 f32
  .venv/bin/python benchmarks/bench_attention.py --repeats 5 --batch 2   # quicker

Every variant is compiled first, then timed in interleaved rounds, so load changes on a
shared machine hit all variants alike. It prints median and min ms per variant, and each
ratio as the median over rounds of the within-round ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.ops.attention import default_implementation, dot_product_attention


def make_step(normalizer: str, implementation: str | None, is_causal: bool):
    """jit(value_and_grad) of sum(attention(q, k, v)**2) w.r.t. q, k and v."""

    def loss(q, k, v):
        out = dot_product_attention(
            q, k, v, normalizer=normalizer, is_causal=is_causal, implementation=implementation
        )
        return jnp.sum(jnp.square(out))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def time_variants(variants: dict, args: tuple, repeats: int) -> dict[str, list[float]]:
    """Wall times in ms per variant, measured in interleaved rounds after compiling."""
    for fn in variants.values():
        jax.block_until_ready(fn(*args))  # compile + warm-up
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(1e3 * (time.perf_counter() - t0))
    return times


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of t_a / t_b within the same round (robust to load drifting)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--causal", action="store_true", help="also time causal masking")
    flags = parser.parse_args()

    shape = (flags.batch, flags.length, flags.heads, flags.dim)
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(3))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; [B, L, H, D] = {list(shape)}")
    print(f"fwd+bwd of sum(out**2) w.r.t. q, k, v; f32; {flags.repeats} interleaved rounds")
    print(f"default path on this backend: {default_implementation('softmax1')}")

    for causal in (False, True) if flags.causal else (False,):
        variants = {
            f"{n}/{impl}": make_step(n, None if impl == "default" else impl, causal)
            for n in ("softmax", "softmax1")
            for impl in ("default", "fused", "reference")
        }
        times = time_variants(variants, (q, k, v), flags.repeats)
        print(f"\nis_causal={causal}")
        print(f"  {'variant':<22} {'median ms':>10} {'min ms':>9}")
        for name, ts in times.items():
            print(f"  {name:<22} {statistics.median(ts):10.1f} {min(ts):9.1f}")
        print("  ratios (median over rounds of the per-round ratio):")
        ratio = paired_ratio(times, "softmax1/default", "softmax/default")
        print(f"  softmax1 / softmax, default path: {ratio:.3f}  (target <= 1.10)")
        for n in ("softmax", "softmax1"):
            r = paired_ratio(times, f"{n}/fused", f"{n}/reference")
            print(f"  {n}: fused / reference: {r:.3f}")


if __name__ == "__main__":
    main()
