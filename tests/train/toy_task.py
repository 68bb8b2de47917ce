"""A tiny next-token task (seconds on CPU) for the trainer's tests and smoke runs.

Data: sequences from a fixed random Markov chain over ``vocab_size`` tokens, so the loss
can fall from log(V) toward the chain's entropy. Model: embedding -> Dense + GELU ->
dropout -> LayerNorm -> Dense, position-wise (hence causal).
"""

from __future__ import annotations

import flax.linen as nn
import grain
import numpy as np

from outeffhop.models import losses
from outeffhop.train import defaults, tasks


class ToyLM(nn.Module):
    vocab_size: int
    hidden_size: int
    dropout: float = 0.0
    dtype: str = "float32"

    @nn.compact
    def __call__(self, tokens_BL, *, train: bool):
        h = nn.Embed(self.vocab_size, self.hidden_size, dtype=self.dtype)(tokens_BL)
        h = nn.gelu(nn.Dense(self.hidden_size, dtype=self.dtype)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.LayerNorm(dtype=self.dtype)(h)
        return nn.Dense(self.vocab_size, dtype=self.dtype)(h)


def markov_sequences(num, length, vocab, seed):
    """[num, length] int32 sequences of a sparse random Markov chain fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    chain = np.random.default_rng(1234).dirichlet(np.full(vocab, 0.1), size=vocab)
    out = np.empty((num, length), np.int32)
    out[:, 0] = rng.integers(0, vocab, num)
    for t in range(1, length):
        u = rng.random(num)[:, None]
        out[:, t] = (np.cumsum(chain[out[:, t - 1]], axis=1) < u).sum(1).clip(0, vocab - 1)
    return out


def _dataset(cfg, split_seed, n_local, process_index, process_count):
    d = cfg.data
    seqs = markov_sequences(d.num_examples, d.seq_len, cfg.model.vocab_size, split_seed)
    ds = grain.MapDataset.source(seqs).shuffle(seed=cfg.seed).repeat(None)
    # Process p takes rows [p * n_local, (p + 1) * n_local) of each global batch, so the
    # global batch (and each row's dropout mask) is the same on any number of processes.
    lo = process_index * n_local
    return ds.batch(n_local * process_count).map(lambda b: {"tokens": b[lo : lo + n_local]})


def _train_iter(cfg, workdir, process_index, process_count):
    n_local = cfg.batch_size // process_count
    return iter(_dataset(cfg, cfg.data.seed, n_local, process_index, process_count))


def _eval_batches(cfg, workdir, process_index, process_count):
    n_local = cfg.batch_size // process_count
    it = iter(_dataset(cfg, cfg.data.seed + 1, n_local, process_index, process_count))
    return [next(it) for _ in range(cfg.eval_steps)]


def _loss(model, params, batch, rng, train):
    logits = model.apply({"params": params}, batch["tokens"], train=train, rngs={"dropout": rng})
    mean, m = losses.causal_lm_loss(logits, {"input_ids": batch["tokens"]})
    n = m["num_tokens"]
    return mean * n, n, m["accuracy"] * n


def task() -> tasks.Task:
    return tasks.Task(
        name="toy",
        build_model=lambda cfg: ToyLM(**cfg.model.to_dict()),
        init=lambda model, rngs, batch: model.init(rngs, batch["tokens"], train=False)["params"],
        loss=_loss,
        example_batch=lambda cfg, n: {"tokens": np.zeros((n, cfg.data.seq_len), np.int32)},
        train_iter=_train_iter,
        eval_batches=_eval_batches,
        tokens_per_example=lambda cfg: cfg.data.seq_len,
        positive_fields=("model.vocab_size", "model.hidden_size", "data.seq_len"),
    )


def get_config():
    """Trainer config for the toy task: 16-token vocabulary, 40 steps, seconds on CPU."""
    c = defaults.base_config()
    c.task = "toy"
    c.model.vocab_size = 16  # tokens
    c.model.hidden_size = 32  # width of the one hidden layer
    c.model.dropout = 0.1  # exercises the per-step dropout RNG
    c.model.dtype = "float32"  # compute dtype (bfloat16 for mixed precision)
    c.data.seq_len = 16  # tokens per example
    c.data.num_examples = 256  # training sequences (eval uses another 256)
    c.data.seed = 0  # which Markov sample
    c.batch_size = 16
    c.num_steps = 40
    c.log_every = 5
    c.eval_every = 20
    c.eval_steps = 2
    c.checkpoint_every = 10
    c.optim.lr = 1e-2
    c.optim.warmup_steps = 5
    c.progress_bar = False
    return c


tasks.register_task("toy", task)
