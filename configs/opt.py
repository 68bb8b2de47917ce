"""OPT causal-LM pre-training (pre-LN, packed sequences) with the study's attention variants.

Command (quick: 2 min 11 s measured on a shared 2-core CPU, tokenizer training included;
loss falls from 7.6 = log(2048) to eval loss 6.40 at step 300):
    python scripts/train.py --config configs/opt.py:quick --workdir runs/opt_quick
Presets:
    quick  opt-tiny (2L/32/4H), byte-level BPE 2048, block 64, 300 steps of batch 16,
           1.5 MB corpus cap.
    cpu    4L/128/4H/512, BPE 8192, block 128, 6000 steps of batch 16 (~1 h on 2 cores).
    paper  opt-125m (12L/768/12H, ffn 3072), block 512, batch 192, 125k steps, AdamW
           lr 4e-4 linear, warmup 2k, wd 0.1, clip 1.0; multi-GPU / TPU scale. Reads token
           shards written once by scripts/prepare_data.py (see configs/bert.py, docs/data.md).
Pick the attention variant with e.g. --config.model.attention.normalizer=softmax1.
"""

from outeffhop import data, models
from outeffhop.launch.configs import parse_arg
from outeffhop.train import base_config


def get_config(arg: str = "quick"):
    a = parse_arg(arg, presets=("quick", "cpu", "paper"), default="quick")
    arg = a.preset
    c = base_config()
    c.task = "opt"
    c.data = data.get_data_config("clm")  # stdlib English corpus, byte-level BPE, packing
    if arg == "quick":
        c.model = models.get_config("opt-tiny", vocab_size=2048, max_len=64)
        c.data.vocab_size = 2048  # BPE vocabulary trained locally
        c.data.seq_len = 64  # block size (packed)
        c.data.max_chars = 1_500_000  # corpus cap: fast tokenizer training
        c.batch_size, c.num_steps = 16, 300
        c.optim.lr, c.optim.warmup_steps = 1e-3, 30
        c.log_every, c.eval_every, c.checkpoint_every = 10, 100, 100
    elif arg == "cpu":
        c.model = models.get_config(
            "opt-tiny", num_layers=4, d_model=128, num_heads=4, d_ff=512, vocab_size=8192
        )
        c.model.max_len = 128  # position table
        c.data.vocab_size, c.data.seq_len = 8192, 128
        c.batch_size, c.num_steps = 16, 6000
        c.optim.lr, c.optim.warmup_steps = 1e-3, 500
        c.log_every, c.eval_every, c.checkpoint_every = 50, 500, 500
        c.eval_steps = 16
    else:
        c.model = models.get_config("opt-125m")  # 12L/768/12H, ffn 3072, vocab 50272
        c.data.name = "bookcorpus_wikipedia"  # prepare: HF parquet forms, or name=parquet
        c.data.format = "shards"  # memory-mapped token shards from scripts/prepare_data.py
        c.data.shards_dir = ""  # required: the folder prepare_data.py wrote
        c.data.vocab_size, c.data.seq_len = 50272, 512
        c.data.tokenizer_max_chars = 2_000_000_000  # prepare: BPE from a 2 GB sample
        c.batch_size, c.num_steps = 192, 125_000
        c.optim.lr, c.optim.warmup_steps = 4e-4, 2_000
        c.optim.weight_decay = 0.1
        c.log_every, c.eval_every, c.checkpoint_every = 100, 5_000, 5_000
        c.eval_steps = 50
        c.parallelism = "fsdp"
        c.rng_impl = "rbg"  # fast dropout bits on TPU/GPU (layout-dependent, still seeded)
    c.optim.schedule = "linear"  # warmup then linear decay to 0 (OPT recipe)
    c.optim.clip_norm = 1.0  # global-norm clipping
    c.data.batch_size = c.batch_size  # the pipeline reads it; the trainer overrides it anyway
    return a.apply(c)
