"""Associative-memory retrieval on 8x8 digits: softmax vs Softmax_1 (one Hopfield update).

Run:     python scripts/run.py --config configs/retrieval.py:quick --workdir runs/retrieval
Runtime: quick ~10 s, cpu ~30 s on 2 CPU cores.
Expect:  at large beta (>= 64) both normalizers recall noisy and half-occluded digits
         (accuracy near 1); unrelated queries anti-aligned with every memory ("inverted")
         retrieve ~0 with softmax1 but a cpu-norm wrong memory with softmax.
"""

import ml_collections

from outeffhop.launch.configs import parse_arg

PRESETS = ("quick", "cpu")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, presets=PRESETS, default="quick")
    preset = a.preset
    c = ml_collections.ConfigDict()
    c.experiment = "outeffhop.experiments.memory.retrieval"  # run by scripts/run.py
    c.preset = preset  # name of this preset, recorded in the report
    c.seed = 0  # seeds the pattern subset, the corruptions and the unrelated queries
    c.num_patterns = 500 if preset == "quick" else 1797  # stored digits (1797 = all)
    c.num_queries = 200 if preset == "quick" else 1797  # corrupted stored digits probed
    c.betas = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0)  # inverse temperatures swept
    c.noise_std = 0.8  # additive noise, relative to the unit pattern norm
    c.mask_fraction = 0.5  # fraction of pixels zeroed in occluded queries
    return a.apply(c)
