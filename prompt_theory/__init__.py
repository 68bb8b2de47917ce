"""Prompt-tuning limits made executable: universality, capacity and efficiency.

Math (plain JAX): ``model`` (the frozen 1-layer 1-head transformer on [P, X]), ``tuning``
(prompt-only training), ``poly_attention`` (polynomial low-rank attention), ``threshold``
(B_crit and its limit), ``efficiency`` (the norm criterion, the attention paths and their
costs), ``bounds`` (capacity lower bounds), ``memorization`` (the measured minimal prompt),
``universality`` (the explicit construction, one function per step).
Experiments: ``prompt_theory.experiments.*.run(config, workdir)``. docs/prompt_theory.md states
each theorem with its regime and the experiment that tests it.
"""

from prompt_theory.bounds import (
    construction_tokens,
    entry_tokens,
    lipschitz_tokens,
    memorization_tokens,
)
from prompt_theory.efficiency import (
    attention_costs,
    norm_criterion,
    project_prompt,
    prompted_inference,
)
from prompt_theory.poly_attention import (
    attention_error_bound,
    poly_attention,
    poly_attention_fn,
    poly_attention_rows,
    poly_features,
    poly_rank,
    taylor_degree,
    taylor_rel_error,
)
from prompt_theory.threshold import b_crit, b_crit_limit_ratio
from prompt_theory.tuning import init_prompt, make_optimizer, prompt_loss, tune_prompt
from prompt_theory.universality import Construction
from prompt_theory.universality import build as universal_construction
from prompt_theory.universality import make_prompt as universal_prompt

__all__ = [
    "Construction",
    "attention_costs",
    "attention_error_bound",
    "b_crit",
    "b_crit_limit_ratio",
    "entry_tokens",
    "init_prompt",
    "make_optimizer",
    "norm_criterion",
    "poly_attention",
    "poly_attention_fn",
    "poly_attention_rows",
    "poly_features",
    "poly_rank",
    "project_prompt",
    "prompt_loss",
    "prompted_inference",
    "taylor_degree",
    "taylor_rel_error",
    "tune_prompt",
    "construction_tokens",
    "lipschitz_tokens",
    "memorization_tokens",
    "universal_construction",
    "universal_prompt",
]
