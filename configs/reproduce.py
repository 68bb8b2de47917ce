"""The outlier / W8A8 study (OutEffHop's table): every variant of BERT, OPT and ViT.

Command (quick; the README's main job; about 10 min on 2 CPU cores):
    python scripts/run.py --config configs/reproduce.py:quick --workdir results
Presets:
    tiny   3 steps per run, 2 variants, BERT only: the end-to-end test (~1 min).
    quick  tiny models (2L/32), 150 steps per run, 6 variants x 3 families, one seed. Shows
           the table's layout and the FFN-output trend; no outliers or W8A8 gap can form at
           this size (docs/results.md): the report says so.
    cpu    OPT (pre-LN causal LM) and BERT (post-LN MLM), 4L/128, vanilla vs softmax1, 5000
           steps, lr 2e-3 constant, no dropout / weight decay, one seed, 2 rounds of 2 pinned
           runs on 2 cores (69 min before the CPU speed changes, with other jobs alongside;
           a BERT round took 17 min after them). --config.families='("bert",)'
           --config.num_seeds=3 gives the README's three-seed BERT table. Expect
           FFN-output outliers (max inf-norm in the 100s) and a W8A8 perplexity cost of
           5-20% for vanilla BERT; Softmax_1 capped BERT's max inf-norm near 200 and its
           cost at 4-7% in 3 seeds; its kurtosis varied more across seeds than between
           variants.
    paper  the papers' models and hyperparameters (configs/{bert,opt,vit}.py:paper), 3 seeds;
           GPU / TPU scale, needs the corpora locally.
Expected result: writes <workdir>/report.md (table, relative change of Softmax_1 vs each
baseline, per-layer plots, histograms, ablations), metrics.json and PNGs.
"""

import ml_collections

from outeffhop.experiments.outlier_study.jobs import VARIANTS
from outeffhop.launch.configs import parse_arg

PRESETS = ("tiny", "quick", "cpu", "paper")


def get_config(arg: str = "quick"):
    a = parse_arg(arg, presets=PRESETS, default="quick")
    arg = a.preset
    c = ml_collections.ConfigDict()
    c.experiment = "outeffhop.experiments.outlier_study"  # run by scripts/run.py
    c.preset = {"tiny": "quick"}.get(arg, arg)  # preset of configs/<family>.py per job
    c.families = ("bert", "opt", "vit")  # model families trained
    c.variants = tuple(
        VARIANTS
    )  # attention variants (outeffhop.experiments.outlier_study.jobs.VARIANTS)
    c.num_seeds = 3  # seeds 0..n-1 per (family, variant); table shows mean ± std
    c.workers = 0  # parallel training processes, one pinned per core; 0 = cpu count
    c.num_calib = 16  # held-out calibration batches (the papers use 16 for BERT)
    c.ablations = ("bert", "opt", "vit")  # families with per-channel, W8A16, W4A8, estimators
    c.int8 = ("bert", "opt", "vit")  # families also run as real int8 PTQ with qwix
    c.overrides = ml_collections.ConfigDict()  # per family: trainer fields to override
    c.notes = (  # lines appended to the report
        "Quick preset: the models are too small and too briefly trained to grow the papers' "
        "outliers; the quantization gap needs the cpu / paper presets.",
    )
    if arg in ("tiny", "quick"):
        c.num_seeds = 1
        steps = 3 if arg == "tiny" else 150
        for fam in c.families:
            o = ml_collections.ConfigDict()
            o.num_steps = steps  # optimizer steps per run
            o.eval_steps = 1 if arg == "tiny" else 4  # eval batches
            o.eval_every = 0  # eval only at the end
            o.checkpoint_every = 0  # checkpoint only at the end
            o.log_every = max(1, steps // 5)  # metric lines per run
            if fam != "vit":
                o.data = ml_collections.ConfigDict({"max_chars": 300_000})  # fast tokenizer
            c.overrides[fam] = o
        c.num_calib = 2 if arg == "tiny" else 4
        c.ablations = ("bert",)  # each recipe compiles anew: the slowest part of a quick job
        c.int8 = ("bert",)  # qwix int8 for BERT only: two more compiles per job
    if arg == "tiny":
        c.families = ("bert",)
        c.variants = ("vanilla", "softmax1")
        c.ablations = ()
    if arg == "cpu":
        # The search for outliers at CPU scale (docs/results.md): the pre-LN causal LM
        # and the post-LN MLM, 4L/128, lr 2e-3 constant, no dropout, no weight decay; the
        # two variants the papers' claim is about, one seed (2 rounds of 2 pinned jobs).
        c.families = ("opt", "bert")
        c.variants = ("vanilla", "softmax1")
        c.num_seeds = 1
        c.ablations = ("opt", "bert")
        c.int8 = ("opt", "bert")
        c.notes = (
            "cpu preset: 4L/128 models, 5000 steps of batch 16 x 128 tokens, lr 2e-3 constant "
            "after warmup, no dropout or weight decay, one seed. The stdlib corpus is small "
            "(about 0.5M tokens: 19 epochs in 5000 steps). OPT's eval loss bottoms out at "
            "step 2000 (4.26) and rises after that, so its FP perplexities are of overfit "
            "models; BERT's eval loss still falls at step 5000.",
            "",
            "What was tried before this preset showed outliers (this machine, one seed each): "
            "the quick preset (2L/32, 150 steps): no separation, W8A8 free; BERT 4L/64, lr "
            "2e-3, 5000 steps: FFN-output inf-norm 44.6 vanilla vs 34.2 "
            "Softmax_1, layer outputs Gaussian, W8A8 free; BERT 4L/128 with dropout 0.1, "
            "weight decay 0.01, lr 1e-3, 1400 steps: variants indistinguishable; the outlier "
            "induction task (2L/64 OPT, 3000 steps): no massive activations. What made the "
            "difference here: width 128, no dropout / weight decay, a constant 2e-3 rate and "
            "5000 steps.",
        )
        for fam in c.families:
            o = ml_collections.ConfigDict()
            o.num_steps = 5000  # optimizer steps per run
            o.optim = ml_collections.ConfigDict()
            o.optim.lr = 2e-3  # the rate at which FFN outliers grew at d=64
            o.optim.weight_decay = 0.0  # no weight decay
            o.optim.schedule = "constant"  # constant after warmup
            o.model = ml_collections.ConfigDict()
            o.model.hidden_dropout = 0.0  # no dropout
            o.model.attention_dropout = 0.0
            c.overrides[fam] = o
    return a.apply(c)
