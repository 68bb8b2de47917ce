"""Capacity vs dimension: how many random patterns one Hopfield update retrieves, d = 4 .. 16.

The setting of the capacity theorem (Ramsauer et al. 2021, Theorem 3; OutEffHop states its
capacity in the same form): M patterns uniform on the sphere of radius R = K sqrt(d - 1),
fixed beta. For every d, beta, query noise and M = 2, 4, ..., 2^max_log2_patterns, stores M
patterns (several independent sets when M is small, so that ``num_queries`` targets are
probed), queries x = xi_i + noise (||x - xi_i|| = noise R) and applies k + 1 updates with
softmax and Softmax_1. A query fails when ||T^(k+1)(x) - xi_i|| > error_tol R; M* is the
largest M before the failure rate first exceeds ``error_threshold``. Per query it also
records the target's separation Delta_i (``ops.hopfield.separation``), the one-step error
against ``ops.hopfield.retrieval_error_bound`` and the Softmax_1 / softmax one-step errors.
"""

from __future__ import annotations

import functools
import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.experiments.memory import data, dimension_report
from outeffhop.ops import hopfield as memory

NORMALIZERS = ("softmax", "softmax1")
SAMPLE = 16  # queries per (d, M, case) kept for the scatter plots


def sample(dim, num, num_queries, radius, noises, rng):
    """Pattern sets [S, M, d], targets [S, q] and queries [len(noises), S, q, d], S = ceil(nq / M)
    independent sets of M patterns with q = ceil(nq / S) <= M distinct targets each."""
    sets = max(1, math.ceil(num_queries / num))
    q = math.ceil(num_queries / sets)
    g = rng.standard_normal((sets, num, dim))
    stored = radius * g / np.linalg.norm(g, axis=-1, keepdims=True)
    target = np.stack([rng.choice(num, q, replace=False) for _ in range(sets)])
    xi_t = np.take_along_axis(stored, target[..., None], axis=1)
    u = rng.standard_normal(xi_t.shape)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    queries = np.stack([xi_t + a * radius * u for a in noises])
    return stored.astype(np.float32), target, queries.astype(np.float32)


def _nearest(s, stored):
    """Index of the stored pattern with the largest cosine to each state: [C, S, q]."""
    cos = jnp.einsum("csqd,smd->csqm", s / jnp.linalg.norm(s, axis=-1, keepdims=True), stored)
    return jnp.argmax(cos / jnp.linalg.norm(stored, axis=-1)[None, :, None], axis=-1)


@functools.partial(jax.jit, static_argnames=("record",))
def _probe(x, stored, target, beta, record: tuple[int, ...]):
    """Per query [C, S, q] for C = (beta, noise) cases: relative errors and nearest-memory hits
    after k + 1 updates (k in ``record``), both normalizers; separation, distance, one-step
    quantities of the bound and of the Softmax_1 / softmax comparison."""
    xi_t = jnp.take_along_axis(stored, target[..., None], axis=1)  # [S, q, d]
    norm = jnp.linalg.norm(xi_t, axis=-1)
    gram = jnp.einsum("sqd,smd->sqm", xi_t, stored)
    own = jnp.arange(stored.shape[1]) == target[..., None]
    out = {
        "delta": jnp.sum(xi_t * xi_t, -1) - jnp.max(jnp.where(own, -jnp.inf, gram), -1),
        "dist": jnp.linalg.norm(x - xi_t, axis=-1),
    }
    b = beta[:, None]  # one per case, broadcast over the sets
    for n in NORMALIZERS:
        s = x
        for t in range(max(record) + 1):
            s = memory.update(s, stored[None], beta=b, normalizer=n)
            if t == 0:
                out[f"{n}_t0"] = s
            if t in record:
                out[f"{n}_err{t}"] = jnp.linalg.norm(s - xi_t, axis=-1) / norm
                out[f"{n}_hit{t}"] = _nearest(s, stored) == target
    t0 = out.pop("softmax_t0")
    out.pop("softmax1_t0")
    c = memory.memory_mass(x, stored[None], beta=b)
    out["shrink_raises_error"] = 2 * jnp.sum(t0 * xi_t, -1) >= (1 + c) * jnp.sum(t0 * t0, -1)
    return out


def probe(x, stored, target, beta, record, chunk: int) -> dict:
    """``_probe`` in chunks of ``chunk`` queries when one set holds many patterns."""
    if x.shape[2] <= chunk or stored.shape[0] > 1:
        return jax.device_get(_probe(x, stored, target, beta, record))
    parts, q = [], x.shape[2]
    for i in range(0, q, chunk):
        idx = np.minimum(np.arange(i, i + chunk), q - 1)  # pad the last chunk by repeating
        parts.append(jax.device_get(_probe(x[:, :, idx], stored, target[:, idx], beta, record)))
    n = q
    return {k: np.concatenate([p[k] for p in parts], axis=-1)[..., :n] for k in parts[0]}


def first_crossing(ms, rates, threshold):
    """Largest M before the rate first exceeds ``threshold`` (None if already at the first M),
    and whether the sweep ended before any crossing (the capacity is censored)."""
    best = None
    for m, r in zip(ms, rates, strict=True):
        if r > threshold:
            return best, False
        best = m
    return best, True


def run(config, workdir: str) -> dict:
    """Runs the sweep; writes metrics.json, report.md and PNGs to ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    if min(config.dims) < 2:
        raise ValueError(f"config.dims must all be >= 2; got {list(config.dims)}.")
    if any(b <= 0 for b in config.betas):
        raise ValueError(f"config.betas must be positive; got {list(config.betas)}.")
    record = tuple(sorted(int(k) for k in config.update_steps))
    rows, samples = [], []
    for b in config.betas:
        for a in config.noises:
            for d in config.dims:
                rows += sweep_m(config, d, float(b), float(a), record, samples)
            logging.info("dimension: beta=%g noise=%g done", b, a)
    metrics = {"config": config.to_dict(), "results": rows}
    metrics["capacity"] = capacities(rows, config, record)
    metrics["bound_check"] = dimension_report.bound_summary(rows)
    data.write_json(metrics, workdir)
    dimension_report.write(metrics, samples, workdir)
    return metrics


def sweep_m(config, d, beta, noise, record, samples) -> list[dict]:
    """Rows for M = 2, 4, ... at one (d, beta, noise), until every curve has failed."""
    radius = config.radius_scale * math.sqrt(d - 1)
    rows = []
    for log2_m in range(1, config.max_log2_patterns + 1):
        m = 2**log2_m
        rng = np.random.default_rng([config.seed, d, m])  # the same patterns for every case
        stored, target, x = sample(d, m, config.num_queries, radius, (noise,), rng)
        out = probe(x, stored, target, jnp.asarray([beta], jnp.float32), record, config.chunk)
        row = summarize(out, 0, config, d=d, m=m, beta=beta, noise=noise, radius=radius)
        rows.append(row)
        samples.append(pick(out, 0, row, radius))
        worst = min(row[f"fail_rate_{n}_{k}"] for n in NORMALIZERS for k in record)
        if worst > config.error_threshold:
            break
    return rows


def summarize(out, ci, config, *, d, m, beta, noise, radius) -> dict:
    """One row of aggregates for case ``ci`` at (d, M)."""
    delta = out["delta"].ravel() / radius**2
    dist = out["dist"][ci].ravel()
    thr = float(memory.separation_threshold(beta, m, radius)) / radius**2
    row = dict(
        dim=d,
        num_patterns=m,
        beta=beta,
        noise=noise,
        radius=radius,
        delta_median=float(np.median(delta)),
        delta_min=float(delta.min()),
        separation_threshold=thr,
        separated_share=float(np.mean(delta >= thr)),
    )
    for n in NORMALIZERS:
        for k in config.update_steps:
            err = out[f"{n}_err{k}"][ci].ravel()
            row[f"fail_rate_{n}_{k}"] = float(np.mean(err > config.error_tol))
            row[f"miss_rate_{n}_{k}"] = float(np.mean(~out[f"{n}_hit{k}"][ci].ravel()))
            row[f"rel_error_{n}_{k}"] = float(np.mean(err))
        err0 = out[f"{n}_err0"][ci].ravel() * radius
        bound = np.asarray(
            memory.retrieval_error_bound(delta * radius**2, beta, m, radius, dist, normalizer=n)
        )
        row[f"bound_violations_{n}"] = int(np.sum(err0 > bound * (1 + 1e-3) + 1e-4 * radius))
        informative = (bound < radius) & (bound > 0)
        row[f"bound_informative_{n}"] = float(np.mean(informative))
        ratio = err0[informative] / bound[informative]
        row[f"bound_ratio_median_{n}"] = float(np.median(ratio)) if ratio.size else None
    e0, e1 = out["softmax_err0"][ci].ravel(), out["softmax1_err0"][ci].ravel()
    ok = e0 <= config.error_tol
    raises = out["shrink_raises_error"][ci].ravel()
    row.update(
        queries=int(e0.size),
        softmax1_smaller=int(np.sum(e1 < e0)),
        softmax1_smaller_ok=int(np.sum((e1 < e0) & ok)),
        num_ok=int(ok.sum()),
        condition_agrees=float(np.mean(raises == (e1 >= e0))),
    )
    return row


def pick(out, ci, row, radius) -> dict:
    """A few queries of case ``ci`` for the scatter plots (errors in units of R)."""
    take = slice(0, SAMPLE)
    s = {k: row[k] for k in ("dim", "num_patterns", "beta", "noise")}
    delta, dist = out["delta"].ravel()[take], out["dist"][ci].ravel()[take]
    for n in NORMALIZERS:
        s[n] = out[f"{n}_err0"][ci].ravel()[take].tolist()
        bound = memory.retrieval_error_bound(
            delta, row["beta"], row["num_patterns"], radius, dist, normalizer=n
        )
        s[f"bound_{n}"] = (np.asarray(bound) / radius).tolist()
    return s


def capacities(rows, config, record) -> list[dict]:
    """M* per (beta, noise, normalizer, updates, d) for the failure and the nearest-memory
    criteria, with the separation share and the theorem's bound at that d."""
    out = []
    keys = sorted({(r["beta"], r["noise"]) for r in rows})
    for b, a in keys:
        for d in config.dims:
            rs = [r for r in rows if (r["beta"], r["noise"], r["dim"]) == (b, a, d)]
            ms = [r["num_patterns"] for r in rs]
            log2_n, c, applies = memory.capacity_bound(
                d, b, config.radius_scale, config.failure_prob
            )
            sep, sep_open = first_crossing(
                ms, [1 - r["separated_share"] for r in rs], config.failure_prob
            )
            base = dict(
                beta=b,
                noise=a,
                dim=d,
                theorem_log2=float(log2_n),
                theorem_c=float(c),
                theorem_applies=bool(applies),
                separated_m=sep,
                separated_open=sep_open,
            )
            for n in NORMALIZERS:
                for k in record:
                    fail, fail_open = first_crossing(
                        ms, [r[f"fail_rate_{n}_{k}"] for r in rs], config.error_threshold
                    )
                    miss, miss_open = first_crossing(
                        ms, [r[f"miss_rate_{n}_{k}"] for r in rs], config.error_threshold
                    )
                    out.append(
                        dict(
                            base,
                            normalizer=n,
                            updates=k + 1,
                            capacity=fail,
                            censored=fail_open,
                            nearest_capacity=miss,
                            nearest_censored=miss_open,
                            max_m=ms[-1],
                        )
                    )
    return out
