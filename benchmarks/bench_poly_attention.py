"""Poly vs exact attention: wall time and XLA temp memory against n, slopes, crossover.

  .venv/bin/python benchmarks/bench_poly_attention.py                 # n = 2^10..2^16, d = 8
  .venv/bin/python benchmarks/bench_poly_attention.py --log2_n_max=13 --repeats=3

Exact is the best of XLA dense, jax.nn.dot_product_attention and (where the n x n logits
pass --dense_max_gib) a query-blocked loop. Targets (issue 7/8): poly time slope <= 1.15 for
degree 2-3, crossover n <= 4096 at d = 8 and B <= 0.5, temp memory O(n r) (slope ~ 1).
Prints one line per n (times side by side, same process) and a JSON summary.
"""

import json

import jax
import ml_collections
from absl import app, flags

from prompt_theory.experiments import phase_transition as pt
from prompt_theory.poly_attention import poly_rank

_D = flags.DEFINE_integer("d", 8, "Head width.")
_MIN = flags.DEFINE_integer("log2_n_min", 10, "Smallest n = 2^this.")
_MAX = flags.DEFINE_integer("log2_n_max", 16, "Largest n = 2^this.")
_DEGREES = flags.DEFINE_list("degrees", ["2", "3"], "Poly degrees.")
_BOUND = flags.DEFINE_float("bound", 0.5, "Max-norm B of q, k.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per point (median).")
_DENSE = flags.DEFINE_float("dense_max_gib", 2.0, "Largest n x n logits for the dense paths.")


def main(argv):
    del argv
    cfg = ml_collections.ConfigDict(
        {
            "d": _D.value,
            "inputs": "sign",
            "time": {
                "log2_n_min": _MIN.value,
                "log2_n_max": _MAX.value,
                "degrees": tuple(int(g) for g in _DEGREES.value),
                "bound": _BOUND.value,
                "repeats": _REPEATS.value,
                "dense_max_bytes": int(_DENSE.value * 2**30),
                "always_blocked": True,
                "block": 1024,
                "chunk": 256,
            },
        }
    )
    res = pt.time_vs_n(cfg, jax.random.PRNGKey(0))
    ranks = {f"poly_g{g}": poly_rank(cfg.d, g) for g in cfg.time.degrees}
    summary = {
        "device": jax.devices()[0].device_kind,
        "d": cfg.d,
        "ranks": ranks,
        "slopes": res["slopes"],
        "memory_slopes": res["memory_slopes"],
        "crossover_n": res["crossover_n"],
        "speedup_at_max_n": {
            m: res["seconds"]["exact_best"][-1] / res["seconds"][m][-1] for m in ranks
        },
        "bytes_per_nr_at_max_n": {m: v[-1] for m, v in res["bytes_per_nr"].items()},
        "seconds": res["seconds"],
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    app.run(main)
