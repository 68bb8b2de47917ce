"""BERT masked-LM pre-training (post-LN, MLM 15% 80/10/10) with the study's attention variants.

Command (quick: 2 min 21 s measured on a shared 2-core CPU, tokenizer training included;
MLM loss falls from 7.6 = log(2048) to eval loss 5.80 at step 300):
    python scripts/train.py --config configs/bert.py:quick --workdir runs/bert_quick
Presets:
    quick  bert-tiny (2L/32/4H), vocab 2048, seq 64, 300 steps of batch 16, 1.5 MB corpus cap.
    cpu    4L/128/4H/512, WordPiece 8192, seq 128, 6000 steps of batch 16 (~1 h on 2 cores;
           an earlier d=64 run reached MLM loss ~5.3 after 5000 steps).
    paper  bert-base (12L/768/12H), seq 128, batch 256, 200k steps, AdamW lr 1e-4 linear,
           warmup 10k, wd 0.01, clip 1.0; TPU pod / multi-GPU scale. Reads token shards:
           prepare them once from BookCorpus + Wikipedia parquet files (or any text or
           parquet folder; `pip install outeffhop[data]`), then train (docs/data.md):
        python scripts/prepare_data.py --config configs/bert.py:paper \
            --config.data.name=parquet --config.data.path=/data/corpus \
            --config.data.shards_dir=/data/shards/bert128
        python scripts/train.py --config configs/bert.py:paper \
            --config.data.shards_dir=/data/shards/bert128 --workdir gs://bucket/bert
Pick the attention variant with e.g. --config.model.attention.normalizer=softmax1.
"""

from outeffhop import data, models
from outeffhop.launch.configs import parse_arg
from outeffhop.train import base_config


def get_config(arg: str = "quick"):
    a = parse_arg(arg, presets=("quick", "cpu", "paper"), default="quick")
    arg = a.preset
    c = base_config()
    c.task = "bert"
    c.data = data.get_data_config("mlm")  # stdlib English corpus, WordPiece, MLM masking
    if arg == "quick":
        c.model = models.get_config("bert-tiny", vocab_size=2048, max_len=64)
        c.data.vocab_size = 2048  # WordPiece vocabulary trained locally
        c.data.seq_len = 64  # tokens per row
        c.data.max_chars = 1_500_000  # corpus cap: fast tokenizer training
        c.batch_size, c.num_steps = 16, 300
        c.optim.lr, c.optim.warmup_steps = 1e-3, 30
        c.log_every, c.eval_every, c.checkpoint_every = 10, 100, 100
    elif arg == "cpu":
        c.model = models.get_config(
            "bert-tiny", num_layers=4, d_model=128, num_heads=4, d_ff=512, vocab_size=8192
        )
        c.model.max_len = 128  # position table
        c.data.vocab_size, c.data.seq_len = 8192, 128
        c.batch_size, c.num_steps = 16, 6000
        c.optim.lr, c.optim.warmup_steps = 1e-3, 500
        c.log_every, c.eval_every, c.checkpoint_every = 50, 500, 500
        c.eval_steps = 16
    else:
        c.model = models.get_config("bert-base")  # 12L/768/12H, vocab 30522, dropout 0.1
        c.data.name = "bookcorpus_wikipedia"  # prepare: HF parquet forms, or name=parquet
        c.data.format = "shards"  # memory-mapped token shards from scripts/prepare_data.py
        c.data.shards_dir = ""  # required: the folder prepare_data.py wrote
        c.data.vocab_size, c.data.seq_len = 30522, 128
        c.data.tokenizer_max_chars = 200_000_000  # prepare: WordPiece from a 200 MB sample
        c.batch_size, c.num_steps = 256, 200_000
        c.optim.lr, c.optim.warmup_steps = 1e-4, 10_000
        c.optim.weight_decay = 0.01
        c.log_every, c.eval_every, c.checkpoint_every = 100, 10_000, 5_000
        c.eval_steps = 50
        c.parallelism = "fsdp"
        c.rng_impl = "rbg"  # fast dropout bits on TPU/GPU (layout-dependent, still seeded)
        c.progress_bar = True
    c.optim.schedule = "linear"  # warmup then linear decay to 0 (BERT recipe)
    c.optim.clip_norm = 1.0  # global-norm clipping
    c.data.batch_size = c.batch_size  # the pipeline reads it; the trainer overrides it anyway
    return a.apply(c)
