"""The efficiency phase transition of prompt-tuning inference, measured (docs/prompt_theory.md).

Command:
  .venv/bin/python scripts/run.py --config configs/phase_transition.py:quick \
      --workdir runs/phase_transition
Presets: quick (n = 2^10..2^13, ~30-60 s on a 2-core CPU), cpu (n = 2^10..2^16, ~5 min).
Expected: at fixed degree the error grows steeply with B past ~sqrt(log n); the degree (and
rank C(d+g, g)) needed for eps grows like B^2 and passes n near B ~ 1.5-2.5 for n ~ 1e3-1e5;
with d = log2 n, B_crit / sqrt(ln n) rises 0.196 -> 0.320 -> 0.344 (n = 2^8, 2^64, 2^4096) at
eps = 1e-4 and falls 0.300 -> 0.150 -> 0.120 at eps = 1/n (limits 0.344 and 0.119); poly
attention time grows ~linearly in n (slope <= 1.15) while exact grows ~quadratically,
crossing at n <= 4096 for d = 8; exact attention of the last L = 8 rows is faster than every
poly path (its cost L n d is below the poly cost n r d for r > L). Writes metrics.json,
report.md, error_vs_B.png, degree_rank_vs_B.png, B_crit_vs_n.png, time_vs_n.png.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, presets=("quick", "cpu"), default="cpu")
    quick = a.preset == "quick"
    c = ml_collections.ConfigDict()
    c.experiment = "prompt_theory.experiments.phase_transition"  # run by scripts/run.py
    c.seed = 0  # PRNG seed of the random Q, K, V
    c.d = 8  # head width d (score scale 1/d, as in Alman-Song)
    c.inputs = "sign"  # Q, K entries: sign (+-B, worst case) or uniform (U(-B, B), mild)

    c.error = ml_collections.ConfigDict()
    c.error.n = 512 if quick else 2048  # sequence length for the error measurement
    c.error.degrees = (2, 4, 6)  # fixed degrees (ranks C(d+g, g)) whose error is traced
    c.error.bounds = tuple(float(b) for b in (0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0))  # B grid

    c.degree = ml_collections.ConfigDict()
    c.degree.n = 256 if quick else 1024  # sequence length for the measured degree
    c.degree.eps = (1e-2, 1e-4)  # target errors (relative to the range of V)
    c.degree.bounds = tuple(float(b) for b in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5))  # B grid
    c.degree.max_degree = 6 if quick else 8  # measured search stops here (rank C(d+g, g))
    c.degree.crit_eps = (1e-2, 1e-4, "1/n", "1/n^2")  # B_crit's eps: fixed, or n^-k at each n
    c.degree.log2_n_crit = tuple(range(8, 65, 8)) + (128, 256, 1024, 4096)  # d = log2 n (formula)
    c.degree.log2_n_crit_fixed = tuple(range(8, 65, 8))  # n = 2^p for B_crit at the fixed d

    c.time = ml_collections.ConfigDict()
    c.time.log2_n_min = 10  # smallest n = 2^10
    c.time.log2_n_max = 13 if quick else 16  # largest n
    c.time.degrees = (2, 3)  # poly degrees timed (ranks 45 and 165 at d = 8)
    c.time.bound = 0.5  # B of the timed inputs (time does not depend on it; error does)
    c.time.repeats = 5 if quick else 9  # timed runs per point after a warm-up
    c.time.stat = "min"  # min or median wall time, or cpu (process CPU time: robust to load)
    c.time.dense_max_bytes = 2**31  # dense n x n logits only below this size (4 n^2 bytes)
    c.time.always_blocked = not quick  # also time the query-blocked exact loop where dense fits
    c.time.block = 1024  # queries per block in the blocked exact loop
    c.time.chunk = 128  # chunk of the causal poly prefix scan
    c.time.rows = (8, 128)  # L: exact attention of the last L rows (the 1-layer readout)
    return a.apply(c)
