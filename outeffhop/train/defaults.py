"""The trainer's config fields and their defaults; ``configs/*.py`` start from these."""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Every field the loop reads. Tasks add ``model`` and ``data`` fields of their own."""
    c = ml_collections.ConfigDict()
    c.task = "toy"  # registered task: toy | bert | opt | vit (outeffhop.train.tasks)
    c.seed = 0  # params, dropout and data order all derive from it
    # start from given params: "hf:<save_pretrained folder>" or another run's workdir
    # (outeffhop.train.init_from); "" = random init from the seed
    c.init_from = ""
    # PRNG for init and dropout: threefry2x32 (JAX default; the same bits on any device
    # count) | rbg (XLA RngBitGenerator: dropout ~2x cheaper on CPU, bits depend on layout)
    c.rng_impl = "threefry2x32"
    c.model = ml_collections.ConfigDict()  # task-specific model fields
    c.data = ml_collections.ConfigDict()  # task-specific data fields
    c.data.path = ""  # local corpus / image folder; "" = the task's offline default

    c.batch_size = 8  # global batch (all devices, all processes, all microbatches)
    c.grad_accum_steps = 1  # microbatches per step, summed by a scan inside train_step
    c.num_steps = 100  # optimizer steps
    c.log_every = 10  # metrics to JSONL / TensorBoard every this many steps
    c.eval_every = 50  # eval every this many steps (and at the end); 0 = only at the end
    c.eval_steps = 4  # eval batches per eval; 0 = no eval
    c.checkpoint_every = 50  # save every this many steps (and at the end); 0 = only at end
    c.max_to_keep = 3  # checkpoints kept in workdir/checkpoints
    c.parallelism = "dp"  # dp: replicated state | fsdp: state sharded over the data axis
    c.fsdp_min_size = 2**14  # FSDP leaves arrays with fewer elements replicated
    c.progress_bar = True  # tqdm bar on process 0
    c.sync_every_step = False  # block on every step (always on for CPU multi-process runs)

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"  # adamw | adam | sgd
    c.optim.lr = 1e-3  # peak learning rate
    c.optim.schedule = "linear"  # linear | cosine | constant (after linear warmup)
    c.optim.warmup_steps = 10  # linear warmup from 0 to lr
    c.optim.end_lr_ratio = 0.0  # final lr as a fraction of lr
    c.optim.weight_decay = 0.01  # decoupled; not on biases or LayerNorm (optim.decay_mask)
    c.optim.b1 = 0.9  # Adam beta1 (SGD momentum)
    c.optim.b2 = 0.999  # Adam beta2
    c.optim.eps = 1e-8  # Adam epsilon
    c.optim.clip_norm = 1.0  # global-norm gradient clipping; 0 = off

    c.distributed = ml_collections.ConfigDict()
    c.distributed.enabled = False  # call jax.distributed.initialize (or $OUTEFFHOP_DISTRIBUTED=1)
    c.distributed.coordinator_address = ""  # host:port; "" = auto-detect (TPU pod, SLURM)
    c.distributed.num_processes = -1  # -1 = auto-detect
    c.distributed.process_id = -1  # -1 = auto-detect
    c.distributed.num_cpu_devices = 0  # CPU devices per process (tests); 0 = leave as is
    return c
