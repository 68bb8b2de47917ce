"""OPT causal-LM pre-training (pre-LN, packed sequences) with the study's attention variants.

Command (quick: 2 min 11 s measured on a shared 2-core CPU, tokenizer training included;
loss falls from 7.6 = log(2048) to eval loss 6.40 at step 300):
    python scripts/train.py --config configs/opt.py:quick --workdir runs/opt_quick
Presets:
    quick  opt-tiny (2L/32/4H), byte-level BPE 2048, block 64, 300 steps of batch 16,
           1.5 MB corpus cap.
    cpu    4L/128/4H/512, BPE 8192, block 128, 6000 steps of batch 16 (~1 h on 2 cores).
    paper  opt-125m (12L/768/12H, ffn 3072), block 512, batch 192, 125k steps, AdamW
           lr 4e-4 linear, warmup 2k, wd 0.1, clip 1.0; bf16 compute with fp32 params and
           Adam state, FSDP; multi-GPU / TPU scale. Reads token shards written once by
           scripts/prepare_data.py (see configs/bert.py, docs/data.md).
    paper-1.3b / paper-6.7b  OPT-1.3B (24L/2048/32H) / OPT-6.7B (32L/4096/32H), block 2048,
           batch 192, bf16, remat=block, scan_layers, FSDP (6.7B: 2 microbatches of 96);
           lr 2e-4 / 1.2e-4 (OPT's table 1). Plan before a launch, no data needed:
             python scripts/train.py --config configs/opt.py:paper-6.7b --workdir DIR \
               --config.dry_run=True   (8 devices: 47.2 / 54.0 GiB per device, see
               docs/scaling.md; XLA_FLAGS=--xla_force_host_platform_device_count=8 on CPU)
Pick the attention variant with e.g. --config.model.attention.normalizer=softmax1.
"""

from outeffhop import data, models
from outeffhop.launch.configs import parse_arg
from outeffhop.train import base_config

# name: (model preset, peak lr, microbatches per step)
_LARGE = {"paper-1.3b": ("opt-1.3b", 2e-4, 1), "paper-6.7b": ("opt-6.7b", 1.2e-4, 2)}


def _large(c, arg):
    """The paper preset at OPT-1.3B / 6.7B size: block 2048, bf16, remat, scanned layers."""
    preset, lr, accum = _LARGE[arg]
    c.model = models.get_config(preset, dtype="bfloat16", remat="block", scan_layers=True)
    c.data.seq_len = 2048  # OPT's context
    c.optim.lr, c.grad_accum_steps = lr, accum


def get_config(arg: str = "quick"):
    a = parse_arg(arg, presets=("quick", "cpu", "paper", *_LARGE), default="quick")
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
    else:  # paper and the larger paper presets
        c.model = models.get_config("opt-125m")  # 12L/768/12H, ffn 3072, vocab 50272
        c.model.dtype = "bfloat16"  # compute; params (and so Adam's moments) stay float32
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
    if arg in _LARGE:
        _large(c, arg)
    c.optim.schedule = "linear"  # warmup then linear decay to 0 (OPT recipe)
    c.optim.clip_norm = 1.0  # global-norm clipping
    c.data.batch_size = c.batch_size  # the pipeline reads it; the trainer overrides it anyway
    return a.apply(c)
