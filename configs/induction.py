"""Outlier induction: heads that must learn to no-op (the synthetic ``induction`` task).

Command (quick):
    python scripts/run.py --config configs/induction.py:quick --workdir runs/induction
Presets: tiny (tests: 2 variants, 4 steps), quick (4 variants, 3000 steps of 2L/64), cpu
(6 variants, 6000 steps, d=128). Each variant trains with the trainer (AdamW at a constant
lr, no weight decay or clipping) into <workdir>/<variant> and resumes there.
Expected result: report.md with loss / accuracy, avg kurtosis and max inf-norm of OPT's
module set and the W8A8 numbers per variant, BOS and null-slot attention mass, and
induction.png (curves over training). At the quick size both softmax and Softmax_1 solve the
task without massive activations (measured before the task ran on the trainer).
"""

import ml_collections

from outeffhop import models
from outeffhop.launch.configs import parse_arg
from outeffhop.train import base_config


def get_config(arg: str = "quick"):
    a = parse_arg(arg, presets=("tiny", "quick", "cpu", "backcopy"), default="quick")
    c = base_config()
    c.task = "induction"  # outeffhop.train.tasks.induction
    c.experiment = "outeffhop.experiments.induction"  # run by scripts/run.py
    c.model = models.get_config(
        "opt-tiny", num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=32, max_len=32
    )  # pre-LN causal OPT; vocab = BOS, MARK and 30 content tokens
    c.data = ml_collections.ConfigDict()
    c.data.seq_len = 32  # tokens per row
    c.data.mode = "mark"  # mark (MARK/key copy, else identity) | backcopy (bigram-backcopy)
    c.data.mark_prob = 0.5  # mark: share of rows holding a MARK/key pair
    c.data.num_triggers = 3  # backcopy: trigger tokens (after them the previous token repeats)
    c.data.branch = 4  # backcopy: successors per token of the fixed bigram table
    c.batch_size = 32  # rows per step
    c.num_steps = 3000  # optimizer steps per variant (the retrieval forms after ~750-1500)
    c.optim.lr = 3e-3  # AdamW, constant after no warmup, no weight decay, no clipping
    c.optim.schedule, c.optim.warmup_steps = "constant", 0
    c.optim.weight_decay, c.optim.clip_norm = 0.0, 0.0
    c.eval_steps, c.eval_every = 4, 0  # eval batches (their own seeded stream); eval at end
    c.log_every, c.checkpoint_every = 100, 0
    c.progress_bar = False
    c.study = ml_collections.ConfigDict()
    c.study.variants = ("vanilla", "softmax1", "clipped", "gated")  # outlier_study.VARIANTS
    c.study.curve_every = 300  # outlier statistics of the layer outputs every this many steps
    if a.preset == "tiny":
        c.study.variants, c.num_steps, c.study.curve_every = ("vanilla", "softmax1"), 4, 2
        c.eval_steps = 2
    if a.preset == "backcopy":
        c.data.mode = "backcopy"
        c.study.variants = ("vanilla", "softmax1")
    if a.preset == "cpu":
        c.study.variants = tuple(
            ("vanilla", "softmax1", "clipped", "gated", "clipped+softmax1", "gated+softmax1")
        )
        c.model.d_model, c.model.d_ff = 128, 512
        c.num_steps, c.study.curve_every = 6000, 500
    return a.apply(c)
