"""Tokenizers trained locally with HF `tokenizers` (WordPiece for BERT, byte-level BPE for OPT)."""

import hashlib
import os
import pathlib

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

TOKENIZERS = ("wordpiece", "bytelevel_bpe")
# Special tokens take the first ids in this order: [PAD]=0 ... / <s>=0 <pad>=1 </s>=2 (OPT order).
SPECIAL_TOKENS = {
    "wordpiece": ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    "bytelevel_bpe": ("<s>", "<pad>", "</s>", "<unk>", "<mask>"),
}
_ROLES = {
    "wordpiece": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "bytelevel_bpe": {
        "pad": "<pad>",
        "unk": "<unk>",
        "bos": "<s>",
        "eos": "</s>",
        "mask": "<mask>",
    },
}


def _new_tokenizer(kind: str, vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    special = list(SPECIAL_TOKENS[kind])
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=special, show_progress=False
        )
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    return tok, trainer


def train_tokenizer(kind: str, docs: list[str], vocab_size: int) -> Tokenizer:
    """Trains a `kind` tokenizer (see TOKENIZERS) on `docs`; special tokens get ids 0..4."""
    if kind not in TOKENIZERS:
        raise ValueError(f"data.tokenizer must be one of {TOKENIZERS} or 'auto', got {kind!r}.")
    if vocab_size < 300:
        raise ValueError(
            f"data.vocab_size must be >= 300 (byte alphabet + specials), got {vocab_size}."
        )
    tok, trainer = _new_tokenizer(kind, vocab_size)
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return tok


def cached_tokenizer(
    kind: str, docs: list[str], vocab_size: int, corpus_key: str, cache_dir: str
) -> tuple[Tokenizer, str]:
    """Loads `<cache_dir>/tokenizer-<kind>-v<vocab>-<corpus_key>.json`, training it if absent."""
    path = pathlib.Path(cache_dir) / f"tokenizer-{kind}-v{vocab_size}-{corpus_key}.json"
    if path.exists():
        return Tokenizer.from_file(str(path)), str(path)
    tok = train_tokenizer(kind, docs, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tok.save(str(tmp))
    tmp.replace(path)  # atomic: concurrent processes never read a half-written file
    return tok, str(path)


def special_ids(tok: Tokenizer, kind: str) -> dict[str, int]:
    """Special-token ids by role: pad, unk, mask, and cls/sep (wordpiece) or bos/eos (bpe)."""
    return {role: tok.token_to_id(t) for role, t in _ROLES[kind].items()}


def encode_documents(tok: Tokenizer, docs: list[str]) -> list[np.ndarray]:
    """Token ids of each document (no special tokens added), int32."""
    encs = tok.encode_batch(docs, add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in encs]


def cached_token_stream(
    tok: Tokenizer, tok_path: str, docs: list[str], corpus_key: str, sep_id: int, cache_dir: str
) -> np.ndarray:
    """The documents' ids joined as `sep d1 sep d2 ...` (int32), cached by tokenizer + corpus."""
    tok_key = hashlib.sha256(pathlib.Path(tok_path).read_bytes()).hexdigest()[:12]
    path = pathlib.Path(cache_dir) / f"tokens-{tok_key}-{corpus_key}.npy"
    if path.exists():
        return np.load(path)
    parts = []
    for ids in encode_documents(tok, docs):
        parts += [np.asarray([sep_id], np.int32), ids]
    stream = np.concatenate(parts) if parts else np.zeros((0,), np.int32)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npy")
    np.save(tmp, stream)
    tmp.replace(path)
    return stream
