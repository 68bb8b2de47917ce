"""Text pipelines of both formats: `cache` (tokenize on the fly into data_cache) and `shards`."""

import os

import grain
from etils import epath

from outeffhop.data import corpus, shard_batches, shards, text, tokenizer

FORMATS = ("cache", "shards")


def check_text_config(dcfg) -> None:
    if dcfg.objective not in ("mlm", "clm"):
        raise ValueError(
            f"data.objective must be mlm or clm for text data {dcfg.name!r}, "
            f"got {dcfg.objective!r}."
        )
    if dcfg.seq_len < 4:
        raise ValueError(f"data.seq_len must be >= 4, got {dcfg.seq_len}.")
    if not 0 <= dcfg.get("max_predictions", 0) <= dcfg.seq_len - 2:
        raise ValueError(
            f"data.max_predictions must be in [0, seq_len - 2 = {dcfg.seq_len - 2}], "
            f"got {dcfg.max_predictions}."
        )
    if dcfg.get("format", "cache") not in FORMATS:
        raise ValueError(f"data.format must be one of {FORMATS}, got {dcfg.format!r}.")


def _check_vocab(dcfg, vocab: int, where: str) -> None:
    if vocab > dcfg.vocab_size:  # the model's table is sized from data.vocab_size
        raise ValueError(
            f"data.vocab_size is {dcfg.vocab_size} but {where} has {vocab} tokens; set "
            f"data.vocab_size (and model.vocab_size) to at least {vocab}."
        )


def _info(dcfg, vocab, ids, tok_path) -> dict:
    cls_id, sep_id = (
        (ids["cls"], ids["sep"]) if dcfg.objective == "mlm" else (ids["bos"], ids["eos"])
    )
    return dict(
        seq_len=dcfg.seq_len,
        vocab_size=vocab,
        pad_id=ids["pad"],
        mask_id=ids.get("mask"),
        cls_id=cls_id,
        sep_id=sep_id,
        eos_id=ids["eos"],
        tokenizer_path=tok_path,
    )


def _roles(dcfg) -> tuple[str, ...]:
    return ("cls", "sep", "pad", "mask") if dcfg.objective == "mlm" else ("bos", "eos", "pad")


def cache_examples(dcfg, train: bool, cache_dir: str):
    """(per-record examples, info) of the `cache` format: the corpus in memory, tokenized
    once into `cache_dir` (small corpora: stdlib, text files, wikitext)."""
    kind = dcfg.tokenizer
    if kind == "auto":
        kind = "wordpiece" if dcfg.objective == "mlm" else "bytelevel_bpe"
    train_docs, val_docs = corpus.load_split_documents(dcfg, cache_dir)
    if dcfg.get("tokenizer_path"):
        tok = tokenizer.load_tokenizer(dcfg.tokenizer_path)
        tok_path = os.path.join(cache_dir, f"tokenizer-loaded-{tokenizer.tokenizer_key(tok)}.json")
        tokenizer.write_atomic(epath.Path(tok_path), tok.to_str().encode())  # a JSON for readers
        where, num_special = "data.tokenizer_path", 0
        extra = tuple(int(i) for i in tokenizer.all_special_ids(tok))
    else:
        tok, tok_path = tokenizer.cached_tokenizer(
            kind, train_docs, dcfg.vocab_size, corpus.docs_hash(train_docs), cache_dir
        )
        where, num_special, extra = "data.tokenizer", len(tokenizer.SPECIAL_TOKENS[kind]), ()
    ids = tokenizer.require_roles(tok, _roles(dcfg), where)
    _check_vocab(dcfg, tok.get_vocab_size(), where)
    info = _info(dcfg, tok.get_vocab_size(), ids, tok_path)
    docs = train_docs if train else val_docs
    stream = tokenizer.cached_token_stream(
        tok, tok_path, docs, corpus.docs_hash(docs), info["sep_id"], cache_dir
    )
    if dcfg.objective == "mlm":
        examples = text.MlmExamples(
            stream,
            dcfg.seq_len,
            info["cls_id"],
            info["sep_id"],
            ids["pad"],
            ids["mask"],
            info["vocab_size"],
            dcfg.mask_prob,
            dcfg.mask_token_frac,
            dcfg.random_token_frac,
            num_special,
            dcfg.get("max_predictions", 0),
            extra,
        )
    else:
        examples = text.ClmExamples(stream, dcfg.seq_len, info["sep_id"], ids["pad"])
    return examples, info


def shard_dataset(dcfg, train: bool, *, global_batch, seed, process_index, process_count):
    """(MapDataset of this process's batches, num_examples, info) from `data.shards_dir`."""
    root = dcfg.get("shards_dir", "")
    if not root:
        raise ValueError(
            "data.shards_dir must name the folder written by scripts/prepare_data.py "
            "when data.format='shards'."
        )
    rows = shards.ShardSet(root, "train" if train else "val")
    m = rows.manifest
    for field in ("objective", "seq_len"):
        if m[field] != dcfg[field]:
            raise ValueError(
                f"data.{field} is {dcfg[field]!r} but data.shards_dir {root} was "
                f"prepared for {m[field]!r}; prepare it again or match it."
            )
    _check_vocab(dcfg, int(m["vocab_size"]), f"the tokenizer of data.shards_dir {root}")
    ids = {k: int(v) for k, v in m["special_ids"].items()}
    info = _info(dcfg, int(m["vocab_size"]), ids, os.path.join(root, m["tokenizer"]))
    is_special = text.special_table(int(m["vocab_size"]), 0, m["all_special_ids"])
    src = shard_batches.ShardBatches(
        rows=rows,
        objective=dcfg.objective,
        global_batch=global_batch,
        process_index=process_index,
        process_count=process_count,
        seed=seed,
        train=train,
        num_epochs=dcfg.num_epochs,
        pad_id=ids["pad"],
        mask_id=ids.get("mask", -1),
        bos_id=info["sep_id"],
        is_special=is_special,
        mask_prob=dcfg.mask_prob,
        mask_token_frac=dcfg.mask_token_frac,
        random_token_frac=dcfg.random_token_frac,
        max_predictions=dcfg.get("max_predictions", 0),
    )
    return grain.MapDataset.source(src), len(rows), info
