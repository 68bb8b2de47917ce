"""The capacity calculator: lower bounds on prompt tokens beside the construction, vs 1/eps and dL.

For sup error eps on C-Lipschitz seq-to-seq maps (prompt_theory.bounds): the entry bound
L floor(C / (4 eps))^{dL} (one table entry per token: the paper's form), the counting bound at
float32 tokens of the construction's own width D (kappa = 32 D), the construction's length
L ceil(C / (2 eps))^{dL}, and built constructions: their real prompt length, their error bound
C delta / 2 + leak + rounding (the eps they reach) and their measured sup error on a target.
"""

from __future__ import annotations

import jax

from prompt_theory import bounds
from prompt_theory import universality as U
from prompt_theory.experiments.universality import TARGETS, measure


def curve_point(d: int, L: int, eps: float, lipschitz: float = 1.0) -> dict:
    """The three counts at one (d, L, eps); D is the construction's width at delta = 2 eps / C."""
    width = U.plan(d, L, min(1.0, 2 * eps / lipschitz))["width"]
    return {
        "d": d,
        "L": L,
        "dL": d * L,
        "eps": eps,
        "inv_eps": 1.0 / eps,
        "width": width,
        "entry": bounds.entry_tokens(d, L, eps, lipschitz=lipschitz),
        "counting_32D": bounds.lipschitz_tokens(d, L, eps, 32 * width, lipschitz=lipschitz),
        "construction": bounds.construction_tokens(d, L, eps, lipschitz=lipschitz),
    }


def built_point(d: int, L: int, G: int, key, n_eval: int = 256) -> dict:
    """Build the construction at delta = 1/G, prompt it with random_cos (C = 1), measure."""
    con = U.build(d, L, 1.0 / G)
    f, C = TARGETS["random_cos"](d, L, key, scale=1.0)
    x = jax.random.uniform(jax.random.fold_in(key, 1), (n_eval, L, d))
    m = measure(con, U.make_prompt(con, f), f, C, x, 2.0)
    return {
        "d": d,
        "L": L,
        "dL": d * L,
        "G": G,
        "prompt_len": con.prompt_len,
        "width": con.width,
        "eps_reached": m["bound_sup"],
        "inv_eps": 1.0 / m["bound_sup"],
        "sup_err": m["sup_err"],
        "formula": bounds.construction_tokens(d, L, m["bound_sup"], lipschitz=C),
    }


def calculator(config) -> dict:
    """Curves against 1/eps (per shape) and against dL (fixed eps), and the built points."""
    key = jax.random.key(config.seed)
    vs_eps = [
        curve_point(d, L, 1.0 / inv) for d, L in config.calc_shapes for inv in config.calc_inv_eps
    ]
    vs_dl = [curve_point(1, dl, config.calc_eps_fixed) for dl in config.calc_dL]
    built = [built_point(d, L, G, jax.random.fold_in(key, G)) for d, L, G in config.calc_built]
    return {"vs_eps": vs_eps, "vs_dL": vs_dl, "built": built}


def plot(calc, config, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = (("entry", "-", "entry bound L n^dL"), ("counting_32D", ":", "counting, 32 D bits"))
    styles += (("construction", "--", "construction L G^dL"),)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.3))
    for d, L in config.calc_shapes:
        sel = [r for r in calc["vs_eps"] if (r["d"], r["L"]) == (d, L)]
        xs = [r["inv_eps"] for r in sel]
        color = None
        for key, ls, label in styles:
            ys = [max(r[key], 1e-6) for r in sel]
            (line,) = a1.loglog(xs, ys, ls, color=color, label=f"{label} (d={d}, L={L})")
            color = line.get_color()
        pts = [b for b in calc["built"] if (b["d"], b["L"]) == (d, L)]
        if pts:
            a1.loglog([b["inv_eps"] for b in pts], [b["prompt_len"] for b in pts], "o", color=color)
    a1.set(xlabel="1/eps", ylabel="prompt tokens", title="vs 1/eps (dots: built constructions)")
    a1.legend(fontsize=5.5)
    xs = [r["dL"] for r in calc["vs_dL"]]
    for key, ls, label in styles:
        a2.semilogy(xs, [max(r[key], 1e-6) for r in calc["vs_dL"]], "o" + ls, label=label)
    a2.set(xlabel="dL", title=f"vs dL (eps = {config.calc_eps_fixed:g}, C = 1)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_lines(calc, config) -> list[str]:
    lines = [
        "## Lower bounds on prompt tokens, the construction's length and built prompts",
        "",
        "C = 1, sup error eps. entry: L floor(C/(4 eps))^dL (a token carries one table entry:",
        "the paper's form); counting: the same packing at 32 D bits per token, D the",
        "construction's width; construction: L ceil(C/(2 eps))^dL.",
        "",
        "| d | L | dL | 1/eps | entry bound | counting (32 D bits) | construction | D |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in calc["vs_eps"] + calc["vs_dL"]:
        lines.append(
            f"| {r['d']} | {r['L']} | {r['dL']} | {r['inv_eps']:g} | {r['entry']:.4g} | "
            f"{r['counting_32D']:.3g} | {r['construction']:.4g} | {r['width']} |"
        )
    lines += [
        "",
        "Built constructions (random_cos target, C = 1): real prompt length, the eps they reach",
        "(their bound C delta/2 + leak + rounding) and the measured sup error:",
        "",
        "| d | L | G | prompt tokens | formula at that eps | eps reached | measured sup err | D |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in calc["built"]:
        lines.append(
            f"| {b['d']} | {b['L']} | {b['G']} | {b['prompt_len']} | {b['formula']} | "
            f"{b['eps_reached']:.4f} | {b['sup_err']:.4f} | {b['width']} |"
        )
    ratio = [r["construction"] / r["entry"] for r in calc["vs_eps"] if r["entry"] > 0]
    low = [r["construction"] / r["counting_32D"] for r in calc["vs_eps"] if r["counting_32D"] > 0]
    lines += [
        "",
        f"construction / entry bound: {min(ratio):.3g}..{max(ratio):.3g}; construction / counting"
        f" bound: {min(low):.3g}..{max(low):.3g} over the 1/eps table.",
        "",
        "![bounds](capacity_bounds.png)",
        "",
    ]
    return lines
