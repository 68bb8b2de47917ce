"""The efficiency phase transition, measured: poly-attention error, degree/rank and time vs B, n.

Three parts (config: configs/phase_transition.py):
  error:  max |poly - exact| at fixed degrees (fixed rank) as the max-norm B of Q, K grows;
  degree: the degree g and rank C(d+g, g) that reach error eps, by the exact Taylor formula
          (worst case b = s d B^2) and measured, against B; B_crit(n) where rank reaches n, at
          fixed eps and at eps = 1/n, 1/n^2 (prompt_theory.threshold), with its n -> inf limit;
  time:   wall time and compiled temp memory against n for exact attention (best of XLA dense,
          jax.nn.dot_product_attention and a query-blocked loop), exact attention of the last L
          rows only (all a 1-layer prompted readout needs: O(L n d)) and poly attention (all
          rows, and the last L rows); log-log slopes, the crossover n and the speed-ups.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from prompt_theory import model as pm
from prompt_theory.poly_attention import (
    attention_error_bound,
    poly_attention,
    poly_attention_rows,
    poly_rank,
    taylor_degree,
    taylor_rel_error,
)
from prompt_theory.threshold import b_crit, b_crit_limit_ratio

__all__ = ["b_crit", "degree_vs_bound", "error_vs_bound", "run", "time_vs_n"]


def qkv_with_max_norm(key, n: int, d: int, bound: float, inputs: str = "sign"):
    """q, k [n, d] with max-norm B, v [n, d] ~ N(0, 1).

    sign: entries +-B (vertices of the max-norm ball, so s q.k reaches +-B^2 at scale 1/d:
    the worst case); uniform: entries U(-B, B) (q.k concentrates near 0: a mild case).
    """
    kq, kk, kv = jax.random.split(key, 3)
    if inputs == "sign":
        q = bound * jax.random.rademacher(kq, (n, d), jnp.float32)
        k = bound * jax.random.rademacher(kk, (n, d), jnp.float32)
    elif inputs == "uniform":
        q = jax.random.uniform(kq, (n, d), jnp.float32, -bound, bound)
        k = jax.random.uniform(kk, (n, d), jnp.float32, -bound, bound)
    else:
        raise ValueError(f"inputs must be sign or uniform; got {inputs!r}.")
    return q, k, jax.random.normal(kv, (n, d), jnp.float32)


def exact_blocked(q, k, v, scale, block: int = 1024):
    """softmax(scale q k^T) v one block of queries at a time: memory O(block n), for large n."""
    n = q.shape[-2]
    block = min(block, n)
    if n % block:
        raise ValueError(f"block must divide n = {n}; got {block}.")
    qb = q.reshape(n // block, block, q.shape[-1])
    out = jax.lax.map(lambda qi: pm.exact_attention(qi, k, v, scale), qb)
    return out.reshape(n, v.shape[-1])


def _dpa(q, k, v, scale):
    return jax.nn.dot_product_attention(
        q[None, :, None], k[None, :, None], v[None, :, None], scale=scale
    )[0, :, 0]


def time_fn(fn, args, repeats: int, slow_s: float = 2.0, stat: str = "median") -> float:
    """Seconds of fn(*args) after a compile-and-run (1 repeat if that took > slow_s): the
    median or the min of the wall times, or ("cpu") the min of the process CPU times of all
    threads. min and cpu suit a shared machine: other jobs only ever add wall time."""
    if stat not in ("median", "min", "cpu"):
        raise ValueError(f"stat must be median, min or cpu; got {stat!r}.")
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    if time.perf_counter() - t0 > slow_s:
        repeats = 1
    clock = time.process_time if stat == "cpu" else time.perf_counter
    times = []
    for _ in range(repeats):
        t0 = clock()
        jax.block_until_ready(fn(*args))
        times.append(clock() - t0)
    return float(np.median(times) if stat == "median" else np.min(times))


def temp_bytes(fn, args) -> int | None:
    """XLA's compiled temp-buffer size for fn(*args): the peak scratch memory beyond in/outputs."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return None if stats is None else int(stats.temp_size_in_bytes)


def error_vs_bound(cfg, key, log=print) -> dict:
    """Measured max |poly - exact| (and the a-priori bound) per degree over a grid of B."""
    e, s = cfg.error, 1.0 / cfg.d
    out = {"B": list(e.bounds), "degrees": {}}
    for g in e.degrees:
        rows = {"rank": poly_rank(cfg.d, g), "max_err": [], "bound": [], "b": []}
        poly = jax.jit(lambda q, k, v, g=g: poly_attention(q, k, v, degree=g, scale=s))
        for bound in e.bounds:
            q, k, v = qkv_with_max_norm(key, e.n, cfg.d, bound, cfg.inputs)
            exact = pm.exact_attention(q, k, v, s)
            err = float(jnp.max(jnp.abs(poly(q, k, v) - exact)))
            b = s * float(jnp.max(jnp.abs(q @ k.T)))
            v_range = float(jnp.max(v.max(0) - v.min(0)))
            rows["max_err"].append(err)
            rows["b"].append(b)
            rows["bound"].append(attention_error_bound(taylor_rel_error(b, g), v_range))
        out["degrees"][str(g)] = rows
        errs = ", ".join(f"{x:.1e}" for x in rows["max_err"])
        log(f"error: degree {g} (rank {rows['rank']}): max err {errs}")
    return out


def degree_vs_bound(cfg, key, log=print) -> dict:
    """Degree and rank needed for eps against B: worst-case formula, measured, and B_crit(n)."""
    dg, d = cfg.degree, cfg.d
    out = {"B": list(dg.bounds), "eps": {}}
    for eps in dg.eps:
        formula = [taylor_degree(bound**2, eps) for bound in dg.bounds]  # b = (1/d) d B^2
        measured = []
        for bound in dg.bounds:
            q, k, v = qkv_with_max_norm(key, dg.n, d, bound, cfg.inputs)
            exact = pm.exact_attention(q, k, v, 1.0 / d)
            v_range = float(jnp.max(v.max(0) - v.min(0)))
            found = None
            for g in range(dg.max_degree + 1):
                approx = poly_attention(q, k, v, degree=g, scale=1.0 / d)
                if float(jnp.max(jnp.abs(approx - exact))) <= eps * v_range:
                    found = g
                    break
            measured.append(found)
        out["eps"][f"{eps:g}"] = {
            "degree_formula": formula,
            "rank_formula": [poly_rank(d, g) for g in formula],
            "degree_measured": measured,
            "rank_measured": [None if g is None else poly_rank(d, g) for g in measured],
        }
        log(f"degree: eps {eps:g}: formula {formula}, measured {measured}")
    out["B_crit"] = crit_vs_n(dg, d)
    return out


def eps_power(eps) -> float:
    """k of eps = n^{-k} ("1/n" -> 1, "1/n^2" -> 2); 0 for a fixed number."""
    if isinstance(eps, str):
        return 1.0 if eps.replace(" ", "") == "1/n" else float(eps.replace(" ", "")[4:])
    return 0.0


def crit_vs_n(dg, d: int) -> dict:
    """B_crit(n) = the largest B whose worst-case rank stays below n, per eps (fixed or
    1/n^k): at the fixed d for n = 2^p, p in log2_n_crit_fixed, and at d = log2 n (the
    theorem's d = O(log n)) for p in log2_n_crit; the n -> inf limit of B_crit / sqrt(ln n)."""
    eps = list(dg.get("crit_eps", dg.eps))
    ps, fixed = list(dg.log2_n_crit), list(dg.get("log2_n_crit_fixed", dg.log2_n_crit))
    return {
        "log2_n": ps,
        "log2_n_fixed": fixed,
        "eps": [str(e) if isinstance(e, str) else f"{e:g}" for e in eps],
        "fixed_d": {_eps_key(e): [b_crit(2**p, d, e) for p in fixed] for e in eps},
        "d_log2_n": {_eps_key(e): [b_crit(2**p, p, e) for p in ps] for e in eps},
        "limit_ratio": {_eps_key(e): b_crit_limit_ratio(eps_power(e)) for e in eps},
    }


def _eps_key(e) -> str:
    return e if isinstance(e, str) else f"{e:g}"


def _rows_fns(t, s) -> dict:
    """rows_exact_L{L} (exact attention of the last L rows, O(L n d)) for each L in t.rows, and
    rows_poly_g{g}_L{L} (poly attention of the last L rows) at the largest L."""
    fns = {}
    for L in t.get("rows", ()):
        fns[f"rows_exact_L{L}"] = lambda q, k, v, L=L: pm.exact_rows(q[-L:], k, v, s)
    for g in t.degrees if t.get("rows", ()) else ():
        L = max(t.rows)
        fns[f"rows_poly_g{g}_L{L}"] = lambda q, k, v, g=g, L=L: poly_attention_rows(
            q[-L:], k, v, degree=g, scale=s
        )
    return fns


def time_vs_n(cfg, key, log=print) -> dict:
    """Wall time and temp memory of exact and poly attention for n = 2^p; slopes, crossover.

    Full attention (all n rows): exact_* and poly_g*; the 1-layer readout (last L rows):
    rows_exact_L* and rows_poly_g*; speed-ups at the largest n in ``speedup``.
    """
    t, d, s = cfg.time, cfg.d, 1.0 / cfg.d
    fns = {
        "exact_dense": lambda q, k, v: pm.exact_attention(q, k, v, s),
        "exact_dpa": lambda q, k, v: _dpa(q, k, v, s),
        "exact_blocked": lambda q, k, v: exact_blocked(q, k, v, s, t.block),
    }
    for g in t.degrees:
        fns[f"poly_g{g}"] = lambda q, k, v, g=g: poly_attention(q, k, v, degree=g, scale=s)
        fns[f"poly_g{g}_causal"] = lambda q, k, v, g=g: poly_attention(
            q, k, v, degree=g, scale=s, causal=True, chunk=t.chunk
        )
    fns.update(_rows_fns(t, s))
    jitted = {name: jax.jit(f) for name, f in fns.items()}
    ns = [2**p for p in range(t.log2_n_min, t.log2_n_max + 1)]
    res = {"n": ns, "seconds": {m: [] for m in fns}, "temp_bytes": {m: [] for m in fns}}
    for n in ns:
        args = qkv_with_max_norm(key, n, d, t.bound, cfg.inputs)
        dense_ok = 4 * n * n <= t.dense_max_bytes
        for name, f in jitted.items():
            skip = (name in ("exact_dense", "exact_dpa") and not dense_ok) or (
                name == "exact_blocked" and dense_ok and not t.always_blocked
            )
            sec = None if skip else time_fn(f, args, t.repeats, stat=t.get("stat", "median"))
            res["seconds"][name].append(sec)
            res["temp_bytes"][name].append(None if skip else temp_bytes(fns[name], args))
        row = {m: v[-1] for m, v in res["seconds"].items() if v[-1] is not None}
        log(f"time: n {n}: " + ", ".join(f"{m} {sec * 1e3:.2f} ms" for m, sec in row.items()))
    exact = [
        min(x for x in (res["seconds"][m][i] for m in fns if m.startswith("exact")) if x)
        for i in range(len(ns))
    ]
    res["seconds"]["exact_best"] = exact
    res["slopes"] = {m: _slope(ns, v) for m, v in res["seconds"].items()}
    res["memory_slopes"] = {m: _slope(ns, v) for m, v in res["temp_bytes"].items()}
    res["crossover_n"] = {
        m: next((n for n, a, b in zip(ns, v, exact, strict=True) if a < b), None)
        for m, v in res["seconds"].items()
        if m.startswith("poly")
    }
    res["bytes_per_nr"] = {
        f"poly_g{g}": [
            None if b is None else b / (n * poly_rank(d, g))
            for n, b in zip(ns, res["temp_bytes"][f"poly_g{g}"], strict=True)
        ]
        for g in t.degrees
    }
    res["speedup"] = _speedups(res["seconds"])
    return res


def _speedups(sec) -> dict:
    """Ratios of wall times at the largest n: baseline / method, for each pair that ran."""
    last = {m: v[-1] for m, v in sec.items() if v and v[-1]}
    out = {}
    for m, v in last.items():
        if m.startswith("poly") and "exact_best" in last:
            out[f"exact_best / {m}"] = last["exact_best"] / v
        if m.startswith("rows_exact") and "exact_best" in last:
            out[f"exact_best / {m}"] = last["exact_best"] / v
        if m.startswith("rows_exact"):
            for p in (p for p in last if p.startswith("rows_poly") or p.startswith("poly_g")):
                if not p.endswith("causal"):
                    out[f"{m} / {p}"] = last[m] / last[p]
    return out


def _slope(ns, values):
    """Least-squares slope of log(value) on log(n) over the points present (None: skipped)."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(ns, values, strict=True) if v]
    return float(np.polyfit(*zip(*pts, strict=True), 1)[0]) if len(pts) >= 2 else None


def run(config, workdir: str) -> dict:
    """Run the three parts; write metrics.json, report.md and PNGs to workdir; return metrics."""
    from prompt_theory.experiments import phase_report

    os.makedirs(workdir, exist_ok=True)
    key = jax.random.PRNGKey(config.seed)
    t0 = time.perf_counter()
    metrics = {"d": config.d, "device": jax.devices()[0].device_kind}
    metrics["error"] = error_vs_bound(config, jax.random.fold_in(key, 1))
    metrics["degree"] = degree_vs_bound(config, jax.random.fold_in(key, 2))
    metrics["time"] = time_vs_n(config, jax.random.fold_in(key, 3))
    metrics["seconds"] = time.perf_counter() - t0
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump({"config": config.to_dict(), **metrics}, f, indent=1)
    phase_report.write(metrics, config, workdir)
    return metrics
