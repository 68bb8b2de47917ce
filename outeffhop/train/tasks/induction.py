"""The ``induction`` task: a synthetic causal-LM task on which attention heads must learn to no-op.

Rows are ``[BOS, x_1, ..., x_{L-1}]`` of random content tokens; in a share
``config.data.mark_prob`` of the rows (default 0.5) one MARK token followed by a key token is
inserted. The target at position t is the token itself
(identity: every head must leave the residual stream alone) unless a MARK/key pair came
earlier, then it is the key (two heads must find and copy it). With softmax a head can only
"do nothing" by parking its attention on a token whose value is ~0 (here BOS), which the
papers tie to growing outliers; Softmax_1 lets the head put its mass on the null slot.
Model: ``models.opt`` (pre-LN, causal) from ``config.model``; ``config.data.seq_len`` tokens
per row, vocabulary ``config.model.vocab_size``. Batch ``i`` of the stream is generated
from ``(config.seed, i)``, so the stream resumes exactly and is the same on any number of
processes (process p keeps rows [p n, (p + 1) n) of each global batch).

``config.data.mode = "backcopy"`` switches to bigram-backcopy rows (after Guo et al. 2024,
"active-dormant attention heads"): next-token prediction on ``[BOS, x_1, ...]`` where
``x_{t+1} = x_{t-1}`` when ``x_t`` is one of ``data.num_triggers`` trigger tokens (a head
must copy the previous token) and otherwise a uniform draw among ``data.branch`` fixed
successors of ``x_t`` (the current token alone predicts it: the copying head must stay
dormant there, which that paper finds makes a BOS attention sink with a massive residual
norm in small softmax transformers).
"""

from __future__ import annotations

import grain
import numpy as np

from outeffhop.train.tasks import Task
from outeffhop.train.tasks._transformer import _build, _init, _loss, _rules

BOS, MARK, FIRST_CONTENT = 0, 1, 2
EVAL_STREAM = 10_000  # eval batches come from seeds (EVAL_STREAM + seed, i)


def make_batch(
    rng: np.random.Generator, batch: int, length: int, vocab: int, mark_prob: float = 0.5
) -> dict:
    """input_ids [B, L] and labels [B, L] (the target read at each position; -100 = none).

    Target = the token itself, except after a MARK/key pair, where it is the key. A row
    holds a MARK with probability ``mark_prob``.
    """
    if vocab < 4 or length < 6:
        raise ValueError(f"vocab must be >= 4 and length >= 6; got {vocab}, {length}.")
    if not 0.0 <= mark_prob <= 1.0:
        raise ValueError(f"data.mark_prob must lie in [0, 1]; got {mark_prob}.")
    ids = rng.integers(FIRST_CONTENT, vocab, size=(batch, length), dtype=np.int32)
    ids[:, 0] = BOS
    labels = ids.copy()
    labels[:, 0] = -100
    for b in np.flatnonzero(rng.random(batch) < mark_prob):
        i = int(rng.integers(1, length - 3))
        ids[b, i] = labels[b, i] = MARK
        labels[b, i + 2 :] = ids[b, i + 1]
    return {"input_ids": ids, "labels": labels}


MODES = ("mark", "backcopy")


def successors(vocab: int, branch: int) -> np.ndarray:
    """int [V, branch]: the fixed bigram successors of each token (content tokens only).

    Row a lists ``branch`` distinct content tokens drawn with seed 0, the same for every run.
    """
    content = vocab - FIRST_CONTENT
    if not 1 <= branch <= content:
        raise ValueError(f"data.branch must lie in [1, {content}]; got {branch}.")
    rng = np.random.default_rng(0)
    table = [rng.choice(content, size=branch, replace=False) + FIRST_CONTENT for _ in range(vocab)]
    return np.asarray(table, np.int32)


def make_backcopy_batch(
    rng: np.random.Generator, batch: int, length: int, vocab: int, num_triggers=3, branch=4
) -> dict:
    """Bigram-backcopy input_ids [B, L] and next-token labels [B, L] (-100 = not scored).

    x_0 = BOS, x_1 uniform content; for t >= 1: x_{t+1} = x_{t-1} if x_t < FIRST_CONTENT +
    num_triggers and t >= 2, else uniform among ``successors(vocab, branch)[x_t]``.
    labels[:, t] = x_{t+1}; BOS's position (x_1 is unpredictable) and the last are unscored.
    """
    if vocab < FIRST_CONTENT + num_triggers + 1 or length < 6 or num_triggers < 0:
        raise ValueError(
            f"vocab must exceed {FIRST_CONTENT + num_triggers} and length >= 6; "
            f"got {vocab}, {length}."
        )
    table = successors(vocab, branch)
    ids = np.empty((batch, length + 1), np.int32)
    ids[:, 0] = BOS
    ids[:, 1] = rng.integers(FIRST_CONTENT, vocab, size=batch)
    for t in range(1, length):
        draw = table[ids[:, t], rng.integers(0, branch, size=batch)]
        copy = (ids[:, t] < FIRST_CONTENT + num_triggers) & (t >= 2)
        ids[:, t + 1] = np.where(copy, ids[:, t - 1], draw)
    labels = ids[:, 1:].copy()
    labels[:, 0] = labels[:, -1] = -100
    return {"input_ids": ids[:, :length], "labels": labels}


def _stream(cfg, seed: int, process_index: int, process_count: int):
    n_local = cfg.batch_size // process_count
    lo = process_index * n_local
    length, vocab = cfg.data.seq_len, cfg.model.vocab_size
    mark_prob = float(cfg.data.get("mark_prob", 0.5))
    mode = cfg.data.get("mode", "mark")
    triggers, branch = int(cfg.data.get("num_triggers", 3)), int(cfg.data.get("branch", 4))

    def batch(i):
        rng = np.random.default_rng([seed, int(i)])
        if mode == "backcopy":
            full = make_backcopy_batch(rng, cfg.batch_size, length, vocab, triggers, branch)
        else:
            full = make_batch(rng, cfg.batch_size, length, vocab, mark_prob)
        return {k: v[lo : lo + n_local] for k, v in full.items()}

    return grain.MapDataset.range(2**62).map(batch)


def _train_iter(cfg, workdir, process_index, process_count):
    return iter(_stream(cfg, cfg.seed, process_index, process_count))


def _eval_batches(cfg, workdir, process_index, process_count):
    it = iter(_stream(cfg, EVAL_STREAM + cfg.seed, process_index, process_count))
    return [next(it) for _ in range(cfg.eval_steps)]


def _example(cfg, n):
    ids = np.zeros((n, cfg.data.seq_len), np.int32)
    return {"input_ids": ids, "labels": ids}


def _check(cfg):
    if cfg.model.model != "opt":
        raise ValueError(f"config.model.model must be opt; got {cfg.model.model!r}.")
    if cfg.data.seq_len > cfg.model.max_len:
        raise ValueError(
            f"config.data.seq_len must be <= config.model.max_len {cfg.model.max_len}; "
            f"got {cfg.data.seq_len}."
        )
    if cfg.data.get("mode", "mark") not in MODES:
        raise ValueError(f"data.mode must be one of {', '.join(MODES)}; got {cfg.data.mode!r}.")
    _stream(cfg, 0, 0, 1)[0]  # raises ValueError naming a bad data field


def task() -> Task:
    return Task(
        name="induction",
        build_model=_build,
        init=_init,
        loss=_loss,
        example_batch=_example,
        train_iter=_train_iter,
        eval_batches=_eval_batches,
        tokens_per_example=lambda cfg: cfg.data.seq_len,
        logical_rules=_rules,
        check=_check,
        positive_fields=("model.num_layers", "model.d_model", "data.seq_len"),
    )
