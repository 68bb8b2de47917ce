"""`prepare(config)`: corpus -> tokenizer -> fixed-length token shards + manifest, in parallel.

Run once before training (scripts/prepare_data.py); training then reads the shards memory-
mapped (`data.format='shards'`). Documents are streamed in batches of about 1 MB to
`data.num_workers` processes, at most two batches per worker in flight, so memory stays
bounded for corpora of any size.
"""

import collections
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import tqdm
from tokenizers import Tokenizer

from outeffhop.data import corpus, shards, tokenizer

_BATCH_CHARS = 1 << 20
_SHARD_BYTES = 256 << 20
_TOKENIZER = {}  # the worker's tokenizer, set by _init_encoder


def _batches(docs: Iterable[str]) -> Iterator[list[str]]:
    batch, size = [], 0
    for d in docs:
        batch.append(d)
        size += len(d)
        if size >= _BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _count(docs: list[str]) -> collections.Counter:
    return tokenizer.word_counts(docs)


def _init_encoder(tok_json: str, sep_id: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _TOKENIZER["tok"], _TOKENIZER["sep"] = Tokenizer.from_str(tok_json), sep_id


def _encode(docs: list[str]) -> tuple[np.ndarray, int]:
    """(`sep d1 sep d2 ...` int32, number of documents) for one batch."""
    tok, sep = _TOKENIZER["tok"], _TOKENIZER["sep"]
    parts = []
    for e in tok.encode_batch(docs, add_special_tokens=False):
        parts += [np.asarray([sep], np.int32), np.asarray(e.ids, np.int32)]
    return np.concatenate(parts), len(docs)


class _Pool:
    """Ordered, bounded parallel map: at most 2 * workers tasks in flight (1 worker: inline)."""

    def __init__(self, workers: int, initializer=None, initargs=()):
        self.workers = workers
        self.init = (initializer, initargs)
        self.pool = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")  # no fork after tokenizers' threads
            self.pool = ctx.Pool(workers, initializer=initializer, initargs=initargs)
        elif initializer is not None:
            initializer(*initargs)

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        if self.pool is None:
            yield from map(fn, items)
            return
        pending = collections.deque()
        for item in items:
            pending.append(self.pool.apply_async(fn, (item,)))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


class RowPacker:
    """Cuts a token stream, fed in pieces, into the rows of `MlmExamples` / `ClmExamples`.

    mlm: row i = `[CLS] s[i(L-2):(i+1)(L-2)] [SEP]` (L tokens); clm: row i = s[iL : iL+L+1]
    (L + 1 tokens, the last one shared with row i + 1). A tail too short for a row is dropped.
    """

    def __init__(self, objective: str, seq_len: int, cls_id: int = -1, sep_id: int = -1):
        self.objective, self.L, self.cls, self.sep = objective, seq_len, cls_id, sep_id
        self.buf = np.zeros((0,), np.int32)
        self.row_len = seq_len if objective == "mlm" else seq_len + 1

    def push(self, piece: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self.buf, piece])
        if self.objective == "mlm":
            c = self.L - 2
            n = len(buf) // c
            body = buf[: n * c].reshape(n, c)
            rows = np.concatenate(
                [np.full((n, 1), self.cls), body, np.full((n, 1), self.sep)], axis=1
            )
            self.buf = buf[n * c :]
        else:
            n = max(len(buf) - 1, 0) // self.L
            view = np.lib.stride_tricks.sliding_window_view(buf, self.L + 1)
            rows = view[: n * self.L : self.L] if n else np.zeros((0, self.L + 1), np.int32)
            self.buf = buf[n * self.L :]
        return rows


def _tokenizer_for(dcfg, kind: str, workers: int) -> Tokenizer:
    if dcfg.get("tokenizer_path"):
        return tokenizer.load_tokenizer(dcfg.tokenizer_path)
    train_docs = corpus.iter_split_documents(dcfg, "train")
    cap = dcfg.get("tokenizer_max_chars", 0)
    if cap:
        train_docs = corpus.capped(train_docs, cap)
    if kind == "bytelevel_bpe":
        return tokenizer.train_tokenizer(kind, train_docs, dcfg.vocab_size)
    tokenizer.check_kind(kind, dcfg.vocab_size)
    counts = collections.Counter()
    with _Pool(workers) as pool:
        for c in tqdm.tqdm(
            pool.map(_count, _batches(train_docs)),
            desc="count words",
            unit="MB",
            disable=not _progress(),
        ):
            counts.update(c)
    return tokenizer.wordpiece_from_counts(counts, dcfg.vocab_size)


def _progress() -> bool:
    return os.environ.get("OUTEFFHOP_PROGRESS", "1") != "0"


def kind_of(dcfg) -> str:
    kind = dcfg.get("tokenizer", "auto")
    return ("wordpiece" if dcfg.objective == "mlm" else "bytelevel_bpe") if kind == "auto" else kind


def prepare(config) -> dict:
    """Writes `data.shards_dir` (see `outeffhop.data.shards`) and returns its manifest.

    The tokenizer is `data.tokenizer_path` when given, else trained on the train split
    (capped at `data.tokenizer_max_chars`; WordPiece deterministically). Raises ValueError
    naming the field for a bad config or an existing shards folder.
    """
    dcfg = config.data if "data" in config else config
    if dcfg.objective not in ("mlm", "clm"):
        raise ValueError(
            f"data.objective must be mlm or clm to prepare shards, got {dcfg.objective!r}."
        )
    if dcfg.seq_len < 4:
        raise ValueError(f"data.seq_len must be >= 4, got {dcfg.seq_len}.")
    root = os.path.expanduser(dcfg.get("shards_dir", ""))
    if not root or "://" in root:
        raise ValueError(f"data.shards_dir must name a local folder to write, got {root!r}.")
    if os.path.exists(os.path.join(root, shards.MANIFEST)):
        raise ValueError(
            f"data.shards_dir: {root} already holds shards; remove it or choose another folder."
        )
    workers = dcfg.get("num_workers", 0) or os.cpu_count() or 1
    tok = _tokenizer_for(dcfg, kind_of(dcfg), workers)
    roles = ("cls", "sep", "pad", "mask") if dcfg.objective == "mlm" else ("eos", "pad")
    where = "data.tokenizer_path" if dcfg.get("tokenizer_path") else "data.tokenizer"
    ids = tokenizer.require_roles(tok, roles, where)
    os.makedirs(root, exist_ok=True)
    tok_json = tok.to_str()
    with open(os.path.join(root, "tokenizer.json"), "w") as f:
        f.write(tok_json)
    vocab = tok.get_vocab_size()
    packer_ids = (ids["cls"], ids["sep"]) if dcfg.objective == "mlm" else ()
    sep = ids["sep"] if dcfg.objective == "mlm" else ids["eos"]
    dtype = shards.row_dtype(vocab)
    splits = {}
    with _Pool(workers, _init_encoder, (tok_json, sep)) as pool:
        for split in ("train", "val"):
            packer = RowPacker(dcfg.objective, dcfg.seq_len, *packer_ids)
            per_shard = dcfg.get("shard_rows", 0) or _SHARD_BYTES // (
                packer.row_len * dtype.itemsize
            )
            writer = shards.ShardWriter(root, split, packer.row_len, dtype, per_shard)
            tokens = docs = 0
            docs_iter = _batches(corpus.iter_split_documents(dcfg, split))
            bar = tqdm.tqdm(desc=f"tokenize {split}", unit="doc", disable=not _progress())
            for stream, n in pool.map(_encode, docs_iter):
                writer.add(packer.push(stream))
                tokens, docs = tokens + len(stream), docs + n
                bar.update(n)
            bar.close()
            splits[split] = {"documents": docs, "tokens": tokens, **writer.close()}
            if splits[split]["rows"] == 0:
                raise ValueError(
                    f"data: the {split} split has no row of seq_len "
                    f"{dcfg.seq_len}; use a larger corpus or a smaller seq_len."
                )
    manifest = {
        "format": shards.FORMAT,
        "objective": dcfg.objective,
        "seq_len": dcfg.seq_len,
        "row_len": packer.row_len,
        "dtype": dtype.name,
        "vocab_size": vocab,
        "tokenizer": "tokenizer.json",
        "tokenizer_sha256": shards.sha256_file(os.path.join(root, "tokenizer.json")),
        "special_ids": ids,
        "all_special_ids": tokenizer.all_special_ids(tok).tolist(),
        "corpus": {
            k: dcfg.get(k)
            for k in ("name", "path", "text_column", "max_chars", "val_fraction", "split_seed")
        },
        "splits": splits,
    }
    tmp = os.path.join(root, shards.MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(root, shards.MANIFEST))  # written last: marks a complete set
    return manifest
