"""Almost-linear inference in the theorem's regime: d = c log2 n, eps = 1/n^k, degree by the bound.

For each n = 2^p (config: configs/almost_linear.py): head width d = max(1, round(c p)), target
relative error eps = n^{-k}, max-norm B of Q and K (constant, or kappa sqrt(ln n)), Q and K
entries +-B at scale 1/d (the worst case: b = max |q.k| / d = B^2), V ~ N(0, 1). The degree is
the least g whose exact Taylor error on [-b, b] is <= eps (no tuning), the rank r = C(d+g, g).
Timed side by side: poly attention of all n rows (the theorem's object), exact attention of all
n rows (dense, or query-blocked past the dense limit) up to ``exact_max_log2_n``, and exact
attention of the last L rows (the 1-layer prompted readout, O(L n d)). The error of poly
attention is measured on the last ``err_rows`` rows against exact attention of those rows, in
float32 (the timed precision) and in float64 (the bound eps / (1 - eps) range(V) assumes exact
arithmetic; float32 rounding alone is ~1e-7 relative). Fitted log-log time exponents, the
operation-count exponents they should follow, and the local exponents between neighbours.
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
from prompt_theory.experiments.phase_transition import _slope, exact_blocked, qkv_with_max_norm
from prompt_theory.poly_attention import (
    _monomials,
    attention_error_bound,
    poly_attention,
    poly_attention_rows,
    poly_rank,
    taylor_degree,
    taylor_rel_error,
)
from prompt_theory.threshold import log_eps


def point(p: int, cfg) -> dict:
    """The theorem's parameters at n = 2^p: d, eps, B, b = B^2, degree g and rank r."""
    if cfg.bound_kind not in ("const", "sqrt_log"):
        raise ValueError(f"bound_kind must be const or sqrt_log; got {cfg.bound_kind!r}.")
    n = 2**p
    d = max(1, round(cfg.c * p))
    bound = cfg.bound * (math.sqrt(math.log(n)) if cfg.bound_kind == "sqrt_log" else 1.0)
    eps = math.exp(log_eps(cfg.eps, n))
    g = taylor_degree(bound**2, eps)
    return {"log2_n": p, "n": n, "d": d, "eps": eps, "B": bound, "b": bound**2, "degree": g}


def _fns(pt, cfg):
    s, g = 1.0 / pt["d"], pt["degree"]
    dense = 4 * pt["n"] ** 2 <= cfg.dense_max_bytes
    block = min(cfg.block, pt["n"])
    fns = {
        "poly": lambda q, k, v: poly_attention(q, k, v, degree=g, scale=s, chunk=cfg.chunk),
        "exact_rows": lambda q, k, v: pm.exact_rows(q[-cfg.rows :], k, v, s),
    }
    if pt["log2_n"] <= cfg.exact_max_log2_n:
        fns["exact"] = (
            (lambda q, k, v: pm.exact_attention(q, k, v, s))
            if dense
            else (lambda q, k, v: exact_blocked(q, k, v, s, block))
        )
    return fns


def _features64(x: np.ndarray, degree: int, scale: float) -> np.ndarray:
    """phi(x) [m, r] in float64 numpy (the same monomials as poly_attention.poly_features)."""
    x = x * math.sqrt(scale)
    raw = np.ones((x.shape[0], 1))
    feats = [raw]
    for parents, lasts, coefs in _monomials(x.shape[1], int(degree)):
        raw = raw[:, parents] * x[:, lasts]
        feats.append(raw * coefs)
    return np.concatenate(feats, 1)


def _reference64(q, k, v, degree, scale, chunk=4096):
    """(poly, exact) attention of the rows q against all keys, float64, keys in chunks."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    v1 = np.concatenate([v, np.ones((v.shape[0], 1))], 1)
    kv = sum(
        _features64(k[i : i + chunk], degree, scale).T @ v1[i : i + chunk]
        for i in range(0, k.shape[0], chunk)
    )
    poly = _features64(q, degree, scale) @ kv
    logits = scale * q @ k.T
    w = np.exp(logits - logits.max(1, keepdims=True))
    return poly[:, :-1] / poly[:, -1:], (w @ v) / w.sum(1, keepdims=True)


def measure_error(pt, q, k, v, rows: int) -> dict:
    """max |poly - exact| on the last ``rows`` rows, float32 and float64, and the bound."""
    s, g = 1.0 / pt["d"], pt["degree"]
    approx = poly_attention_rows(q[-rows:], k, v, degree=g, scale=s)
    err32 = float(jnp.max(jnp.abs(approx - pm.exact_rows(q[-rows:], k, v, s))))
    poly64, exact64 = _reference64(q[-rows:], k, v, g, s)
    v_range = float(jnp.max(v.max(0) - v.min(0)))
    rel = taylor_rel_error(pt["b"], g)
    return {
        "err_float32": err32,
        "err_float64": float(np.abs(poly64 - exact64).max()),
        "v_range": v_range,
        "kernel_rel_error": rel,
        "bound": attention_error_bound(rel, v_range),
        "target": pt["eps"] / (1 - pt["eps"]) * v_range,
    }


def best_time(fn, args, min_total: float = 0.2, max_repeats: int = 50) -> tuple[float, float]:
    """(wall, cpu) seconds of fn(*args): the best of repeated runs after a compile-and-run,
    until min_total wall seconds or max_repeats runs (one run past 2 s). cpu is the process
    time of all its threads: on a shared machine other jobs stretch the wall time, not it."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    if time.perf_counter() - t0 > 2.0:
        max_repeats = 1
    wall, cpu = [], []
    while len(wall) < max_repeats and sum(wall) < min_total:
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def run_point(p: int, cfg, key, log=print) -> dict:
    pt = point(p, cfg)
    pt["rank"] = poly_rank(pt["d"], pt["degree"])
    q, k, v = qkv_with_max_norm(key, pt["n"], pt["d"], pt["B"], "sign")
    fns = _fns(pt, cfg)
    timed = {
        m: best_time(jax.jit(f), (q, k, v), cfg.min_time_s, cfg.repeats) for m, f in fns.items()
    }
    pt["seconds"] = {m: w for m, (w, _) in timed.items()}
    pt["cpu_seconds"] = {m: c for m, (_, c) in timed.items()}
    pt.update(measure_error(pt, q, k, v, min(cfg.err_rows, pt["n"])))
    n, r, d = pt["n"], pt["rank"], pt["d"]
    pt["ops"] = {
        "poly": 2 * n * r * (d + 3),
        "exact": 2 * n * n * d,
        "exact_rows": 2 * cfg.rows * n * d,
    }
    times = ", ".join(f"{m} {t * 1e3:.3g} ms" for m, t in pt["seconds"].items())
    log(
        f"[almost_linear] n=2^{p} d={d} eps={pt['eps']:.2e} B={pt['B']:.3g} degree={pt['degree']} "
        f"rank={r}: {times}; err f32 {pt['err_float32']:.2e} f64 {pt['err_float64']:.2e} "
        f"(bound {pt['bound']:.2e})"
    )
    return pt


def fits(points: list[dict], min_log2_n: int = 0) -> dict:
    """Log-log exponents of measured time and of the operation counts, per method, over the
    points with n >= 2^min_log2_n; local exponents between neighbours over all points."""
    out = {}
    for m in ("poly", "exact", "exact_rows"):
        sel = [pt for pt in points if m in pt["seconds"]]
        big = [pt for pt in sel if pt["log2_n"] >= min_log2_n]
        ns = [pt["n"] for pt in big]
        out[m] = {
            "time_exponent": _slope(ns, [pt["seconds"][m] for pt in big]),
            "cpu_exponent": _slope(ns, [pt["cpu_seconds"][m] for pt in big]),
            "ops_exponent": _slope(ns, [pt["ops"][m] for pt in big]),
            "local": [
                math.log(b["cpu_seconds"][m] / a["cpu_seconds"][m]) / math.log(b["n"] / a["n"])
                for a, b in zip(sel, sel[1:], strict=False)
            ],
            "n_range": [min(ns), max(ns)] if ns else None,
        }
    return out


def run(config, workdir: str) -> dict:
    """All points, the fits, metrics.json, report.md and almost_linear.png."""
    os.makedirs(workdir, exist_ok=True)
    key, t0 = jax.random.key(config.seed), time.time()
    points = [run_point(p, config, jax.random.fold_in(key, p)) for p in config.log2_n]
    fit = fits(points, config.fit_min_log2_n)
    print(summary_line(fit, points, config), flush=True)
    metrics = {
        "points": points,
        "fits": fit,
        "seconds": time.time() - t0,
        "device": jax.devices()[0].device_kind,
        "config": config.to_dict(),
    }
    with open(os.path.join(workdir, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1, default=str)
    _plot(points, fit, config, workdir)
    _report(metrics, config, workdir)
    return metrics


def summary_line(fit, points, config) -> str:
    """The one line the README quotes: exponents (CPU time, wall time, operation count)."""

    def part(m):
        f = fit[m]
        return (
            f"cpu {_fmt(f['cpu_exponent'])}, wall {_fmt(f['time_exponent'])}, ops "
            f"{_fmt(f['ops_exponent'])} over n = {_range(f)}"
        )

    ranks = [pt["rank"] for pt in points]
    return (
        f"[almost_linear] poly-path time exponent: {part('poly')} (d = {config.c:g} log2 n, "
        f"eps = {config.eps}, rank {ranks[0]}..{ranks[-1]} for n = 2^{points[0]['log2_n']}.."
        f"2^{points[-1]['log2_n']}); exact attention: {part('exact')}; exact last-"
        f"{config.rows}-rows: {part('exact_rows')}"
    )


def _range(f) -> str:
    return (
        "-"
        if not f["n_range"]
        else f"2^{int(math.log2(f['n_range'][0]))}..2^" + str(int(math.log2(f["n_range"][1])))
    )


def _fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def _plot(points, fit, config, workdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m, style in (("poly", "o-"), ("exact", "s-"), ("exact_rows", "^-")):
        sel = [pt for pt in points if m in pt["seconds"]]
        if sel:
            label = f"{m} (cpu exponent {_fmt(fit[m]['cpu_exponent'])})"
            ys = [pt["cpu_seconds"][m] for pt in sel]
            a1.loglog([pt["n"] for pt in sel], ys, style, label=label)
    a1.set(xlabel="n", ylabel="CPU seconds", title=f"d = {config.c:g} log2 n, eps = {config.eps}")
    a1.legend(fontsize=7)
    ns = [pt["n"] for pt in points]
    a2.loglog(ns, [pt["rank"] for pt in points], "o-", label="rank C(d+g, g)")
    a2.loglog(ns, ns, "k:", label="n")
    a2.loglog(ns, [pt["err_float64"] for pt in points], "x-", label="error, float64")
    a2.loglog(ns, [pt["err_float32"] for pt in points], "+-", label="error, float32")
    a2.loglog(ns, [pt["bound"] for pt in points], "--", label="bound eps_g/(1-eps_g) range(V)")
    a2.set(xlabel="n", title="rank and error of the poly path")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "almost_linear.png"), dpi=120)
    plt.close(fig)


def _report(metrics, config, workdir):
    fit, pts = metrics["fits"], metrics["points"]
    lines = [
        "# Almost-linear poly attention in the theorem's regime",
        "",
        f"d = max(1, round({config.c:g} log2 n)), eps = {config.eps}, B = {config.bound:g}"
        + (" sqrt(ln n)" if config.bound_kind == "sqrt_log" else " (constant)")
        + ", Q/K entries +-B at scale 1/d (b = B^2), degree = the least g with Taylor error"
        f" <= eps on [-b, b]. Device {metrics['device']}; {metrics['seconds']:.0f} s.",
        "",
        "| n | d | eps | degree | rank | poly ms (cpu ms) | exact ms (cpu ms) |"
        " exact last-L ms (cpu ms) | err f32 | err f64 | bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pt in pts:
        sec, cpu = pt["seconds"], pt["cpu_seconds"]
        cells = [
            f"{sec[m] * 1e3:.3g} ({cpu[m] * 1e3:.3g})" if m in sec else "-"
            for m in ("poly", "exact", "exact_rows")
        ]
        lines.append(
            f"| 2^{pt['log2_n']} | {pt['d']} | {pt['eps']:.1e} | {pt['degree']} | {pt['rank']} | "
            + " | ".join(cells)
            + f" | {pt['err_float32']:.1e} | {pt['err_float64']:.1e} | {pt['bound']:.1e} |"
        )
    lines += [
        "",
        f"L = {config.rows}. Times: best of repeated runs; cpu = process time of all threads"
        " (other jobs stretch wall time, not it). Fitted log-log exponents over n >="
        f" 2^{config.fit_min_log2_n} (CPU time, wall time, the operation count they should"
        " follow); local CPU-time exponents between neighbouring n over all points:",
        "",
        "| method | n range | cpu exponent | wall exponent | ops exponent | local (cpu) |",
        "|---|---|---|---|---|---|",
    ]
    for m, f in fit.items():
        rng = _range(f)
        local = ", ".join(f"{x:.2f}" for x in f["local"])
        lines.append(
            f"| {m} | {rng} | {_fmt(f['cpu_exponent'])} | {_fmt(f['time_exponent'])} | "
            f"{_fmt(f['ops_exponent'])} | {local} |"
        )
    lines += ["", summary_line(fit, pts, config).replace("[almost_linear] ", ""), ""]
    lines += ["![almost linear](almost_linear.png)", ""]
    with open(os.path.join(workdir, "report.md"), "w") as fh:
        fh.write("\n".join(lines))
