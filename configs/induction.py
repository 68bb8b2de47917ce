"""Outlier induction: heads that must learn to no-op (synthetic; see outeffhop/induction.py).

Command (quick; 150-260 s of training per variant per 1500 steps, measured on a shared 2-core
box at load ~20, so roughly 15 min for the preset there and less on an idle core):
    python scripts/induction.py --config configs/induction.py:quick --workdir results/induction
Presets: tiny (test), quick (4 variants, 3000 steps), cpu (6 variants, 6000 steps, d=128).
Expected result: report.md with loss / accuracy, avg kurtosis and max inf-norm of the layer
outputs and the W8A8 numbers per variant, plus induction.png (curves over training).
"""

import ml_collections


def get_config(arg: str = "quick"):
    if arg not in ("tiny", "quick", "cpu"):
        raise ValueError(f"preset must be one of tiny, quick, cpu; got {arg!r}.")
    c = ml_collections.ConfigDict()
    c.variants = ("vanilla", "softmax1", "clipped", "gated")  # outeffhop.study.VARIANTS
    c.num_layers = 2  # OPT layers (pre-LN)
    c.d_model = 64  # residual width
    c.num_heads = 4  # attention heads
    c.vocab = 32  # BOS, MARK and 30 content tokens
    c.length = 32  # tokens per row
    c.batch_size = 32  # rows per step
    c.lr = 3e-3  # Adam learning rate, constant, no weight decay
    c.num_steps = 3000  # optimizer steps per variant (the retrieval forms after ~750-1500)
    c.eval_every = 300  # outlier statistics every this many steps
    c.seed = 0  # data and init seed
    if arg == "tiny":
        c.variants, c.num_steps, c.eval_every = ("vanilla", "softmax1"), 4, 2
    if arg == "cpu":
        c.variants = (
            "vanilla",
            "softmax1",
            "clipped",
            "gated",
            "clipped+softmax1",
            "gated+softmax1",
        )
        c.d_model, c.num_steps, c.eval_every = 128, 6000, 500
    return c
