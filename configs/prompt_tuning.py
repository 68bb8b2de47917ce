"""Prompt tuning of the frozen 1-layer 1-head transformer, exact vs polynomial attention.

Command:
  .venv/bin/python scripts/run.py --config configs/prompt_tuning.py:quick \
      --workdir runs/prompt_tuning
Presets: quick (~30 s on a 2-core CPU), cpu (~3 min).
Expected: the loss falls on both tasks for every variant (P is the only trained tensor);
the Lipschitz task reaches a lower loss than the memorization task; a prompt trained
through degree-3 poly attention at scale 1/d keeps B well under sqrt(log n), and its loss
evaluated with exact attention is within a few percent of the exact-trained prompt's;
projecting P to B <= 0.5 costs some loss. Writes metrics.json, report.md, loss_curves.png.
"""

import ml_collections
from ml_collections import config_dict

from outeffhop.launch.configs import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, presets=("quick", "cpu"), default="cpu")
    quick = a.preset == "quick"
    c = ml_collections.ConfigDict()
    c.experiment = "prompt_theory.experiments.prompt_tuning"  # run by scripts/run.py
    c.seed = 0  # PRNG seed for weights, data, prompt init and minibatches
    c.seq_len = 8  # L: input tokens per example
    c.eval_degree = 3  # degree of poly attention in the report's "poly" loss column

    c.model = ml_collections.ConfigDict()
    c.model.d_model = 8  # D: token width (prompt rows have this width)
    c.model.d_head = 8  # d: query/key width of the single head
    c.model.d_ff = 32  # hidden width of the FFN block
    c.model.ffn_layers = 2  # FFN layers after attention (ReLU between them)
    c.model.pre_ffn_layers = 0  # FFN layers before attention (0: identity F_pre)

    # task name -> number of training examples (as many again are held out for the test loss)
    c.tasks = ml_collections.ConfigDict({"lipschitz": 256, "memorization": 32})

    c.tune = ml_collections.ConfigDict()
    c.tune.prompt_len = 16  # L_p: soft-prompt tokens
    c.tune.init = "uniform"  # uniform (Lester +-0.5) | normal | sample (data tokens) | vocab
    c.tune.optimizer = "adafactor"  # adafactor (Lester preset) | adam | sgd
    c.tune.learning_rate = 0.3  # Lester et al.'s prompt-tuning learning rate
    c.tune.steps = 150 if quick else 800  # optimizer steps
    c.tune.batch_size = 32  # examples per step (sampled without replacement)
    c.tune.scale = "1/d"  # score scale: 1/d (Alman-Song), 1/sqrt(d) or 1
    c.tune.causal = False  # causal mask on [P, X]
    c.tune.degree = config_dict.placeholder(int)  # None: exact attention; g: poly attention
    c.tune.norm_target = config_dict.placeholder(float)  # B*: bound on prompt q/k max-norm
    c.tune.penalty_weight = 0.0  # weight of relu(B_prompt - B*)^2 in the loss
    c.tune.project = False  # rescale prompt rows to B_prompt <= B* after each step
    c.tune.log_every = 25 if quick else 100  # steps between norm-criterion log lines
    c.tune.eps = 1e-3  # relative kernel error the criterion's degree/rank targets

    # variant name -> overrides of c.tune
    c.variants = ml_collections.ConfigDict(
        {
            "exact": {},
            "poly_g3": {"degree": 3},
            "exact_proj_B_half": {"norm_target": 0.5, "project": True},
            "poly_g3_proj_B_half": {"degree": 3, "norm_target": 0.5, "project": True},
            "exact_init_normal": {"init": "normal"},
            "exact_init_sample": {"init": "sample"},
        }
    )
    if quick:
        del c.variants["exact_init_normal"]
        del c.variants["exact_init_sample"]
        del c.variants["poly_g3_proj_B_half"]
    return a.apply(c)
