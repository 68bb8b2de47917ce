"""Tokenizers: deterministic local WordPiece (BERT) and byte-level BPE (OPT), or a user's own.

Encoding always goes through HF `tokenizers`. `load_tokenizer(path)` reads an existing
`tokenizer.json` or a local HF tokenizer folder (`tokenizer.json`, or BERT's `vocab.txt`);
`special_ids(tok)` gives the ids of its special tokens by role, which masking and packing use.
"""

import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterable

import numpy as np
from etils import epath
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from outeffhop.data import wordpiece

TOKENIZERS = ("wordpiece", "bytelevel_bpe")
# Special tokens take the first ids in this order: [PAD]=0 ... / <s>=0 <pad>=1 </s>=2 (OPT order).
SPECIAL_TOKENS = {
    "wordpiece": ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    "bytelevel_bpe": ("<s>", "<pad>", "</s>", "<unk>", "<mask>"),
}
# role -> token strings tried in order (BERT's names, then RoBERTa/OPT's).
ROLES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "mask": ("[MASK]", "<mask>"),
    "bos": ("<s>", "[CLS]"),
    "eos": ("</s>", "[SEP]"),
}


def _wordpiece_pipeline(tok: Tokenizer, lowercase: bool = True) -> Tokenizer:
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def word_counts(docs: Iterable[str]) -> Counter:
    """Counts of the pre-tokenized words of `docs` (BERT normalizer + pre-tokenizer)."""
    tok = _wordpiece_pipeline(Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]")))
    counts: Counter = Counter()
    for d in docs:
        norm = tok.normalizer.normalize_str(d)
        counts.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(norm))
    return counts


def wordpiece_from_counts(counts: Counter, vocab_size: int) -> Tokenizer:
    """A WordPiece tokenizer whose vocabulary `wordpiece.learn_vocab` builds from `counts`."""
    special = SPECIAL_TOKENS["wordpiece"]
    vocab = wordpiece.learn_vocab(counts, vocab_size, special)
    model = models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    tok = _wordpiece_pipeline(Tokenizer(model))
    tok.add_special_tokens(list(special))
    return tok


def check_kind(kind: str, vocab_size: int) -> None:
    if kind not in TOKENIZERS:
        raise ValueError(f"data.tokenizer must be one of {TOKENIZERS} or 'auto', got {kind!r}.")
    if vocab_size < 300:
        raise ValueError(
            f"data.vocab_size must be >= 300 (byte alphabet + specials), got {vocab_size}."
        )


def train_tokenizer(kind: str, docs: Iterable[str], vocab_size: int) -> Tokenizer:
    """Trains a `kind` tokenizer (see TOKENIZERS) on `docs`; special tokens get ids 0..4.

    wordpiece: `wordpiece.learn_vocab` on the word counts (deterministic: HF's WordPiece
    trainer is not). bytelevel_bpe: HF's BPE trainer, which repeats across processes.
    """
    check_kind(kind, vocab_size)
    if kind == "wordpiece":
        return wordpiece_from_counts(word_counts(docs), vocab_size)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS[kind]),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def write_atomic(path: epath.Path, data: bytes) -> None:
    """Writes `data` to a temporary sibling, then renames it onto `path` (any epath)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{path.name}.tmp{os.getpid()}"
    tmp.write_bytes(data)
    tmp.replace(path)  # concurrent processes never read a half-written file


def cached_tokenizer(
    kind: str, docs: list[str], vocab_size: int, corpus_key: str, cache_dir: str
) -> tuple[Tokenizer, str]:
    """Loads `<cache_dir>/tokenizer-<kind>-v<vocab>-<corpus_key>.json`, training it if absent."""
    tag = "-det" if kind == "wordpiece" else ""  # the deterministic learner's vocabularies
    path = epath.Path(cache_dir) / f"tokenizer-{kind}{tag}-v{vocab_size}-{corpus_key}.json"
    if path.exists():
        return Tokenizer.from_str(path.read_text()), os.fspath(path)
    tok = train_tokenizer(kind, docs, vocab_size)
    write_atomic(path, tok.to_str().encode())
    return tok, os.fspath(path)


def _from_vocab_txt(folder: epath.Path) -> Tokenizer:
    """BERT's `vocab.txt` (one token a line, id = line number) as a WordPiece tokenizer."""
    lines = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    vocab = {t: i for i, t in enumerate(lines) if t}  # a trailing newline adds ""
    lowercase = True  # bert-base-uncased; tokenizer_config.json says otherwise for cased
    cfg_path = folder / "tokenizer_config.json"
    if cfg_path.exists():
        lowercase = bool(json.loads(cfg_path.read_text()).get("do_lower_case", True))
    unk = next((t for t in ROLES["unk"] if t in vocab), None)
    if unk is None:
        raise ValueError(f"data.tokenizer_path: {folder}/vocab.txt has no [UNK] token.")
    tok = _wordpiece_pipeline(Tokenizer(models.WordPiece(vocab, unk_token=unk)), lowercase)
    tok.add_special_tokens([t for names in ROLES.values() for t in names if t in vocab])
    return tok


def load_tokenizer(path: str) -> Tokenizer:
    """An existing tokenizer: a `tokenizer.json` file, or a folder holding `tokenizer.json`
    or `vocab.txt` (e.g. a local copy of bert-base-uncased). Truncation and padding are off."""
    p = epath.Path(path).expanduser()
    if p.is_dir():
        if (p / "tokenizer.json").exists():
            p = p / "tokenizer.json"
        elif (p / "vocab.txt").exists():
            tok = _from_vocab_txt(p)
            return tok
        else:
            raise ValueError(
                f"data.tokenizer_path: folder {p} has neither tokenizer.json nor vocab.txt."
            )
    if not p.exists():
        raise ValueError(f"data.tokenizer_path: {p} does not exist.")
    try:
        tok = Tokenizer.from_str(p.read_text())
    except Exception as e:  # tokenizers raises a bare Exception for malformed JSON
        raise ValueError(f"data.tokenizer_path: {p} is not a tokenizer.json ({e}).") from e
    tok.no_truncation()
    tok.no_padding()
    return tok


def special_ids(tok: Tokenizer, kind: str | None = None) -> dict[str, int]:
    """Ids of the special tokens by role (pad, unk, cls, sep, mask, bos, eos), where present.

    A role is the first of its names in ROLES found in the vocabulary: BERT's `[CLS]`/`[SEP]`
    double as bos/eos and OPT's `<s>`/`</s>` as cls/sep. `kind` is accepted for old callers
    and ignored. `all_special_ids(tok)` lists every id that masking must leave alone.
    """
    del kind
    out = {}
    for role, names in ROLES.items():
        for name in names:
            i = tok.token_to_id(name)
            if i is not None:
                out[role] = i
                break
    return out


def all_special_ids(tok: Tokenizer) -> np.ndarray:
    """Sorted int32 ids of every special token: the role ids and added tokens marked special."""
    ids = set(special_ids(tok).values())
    ids |= {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    return np.asarray(sorted(ids), np.int32)


def require_roles(tok: Tokenizer, roles: tuple[str, ...], where: str) -> dict[str, int]:
    """`special_ids(tok)`, after checking every role in `roles` is present (else ValueError)."""
    ids = special_ids(tok)
    missing = [r for r in roles if r not in ids]
    if missing:
        names = " / ".join("|".join(ROLES[r]) for r in missing)
        raise ValueError(f"{where}: the tokenizer has no {', '.join(missing)} token ({names}).")
    return ids


def tokenizer_key(tok: Tokenizer) -> str:
    """A short hash of the tokenizer's JSON (cache key of token streams)."""
    return hashlib.sha256(tok.to_str().encode()).hexdigest()[:12]


def encode_documents(tok: Tokenizer, docs: list[str]) -> list[np.ndarray]:
    """Token ids of each document (no special tokens added), int32."""
    encs = tok.encode_batch(docs, add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in encs]


def cached_token_stream(
    tok: Tokenizer, tok_path: str, docs: list[str], corpus_key: str, sep_id: int, cache_dir: str
) -> np.ndarray:
    """The documents' ids joined as `sep d1 sep d2 ...` (int32), cached by tokenizer + corpus."""
    del tok_path  # the key is the tokenizer's content, wherever it is stored
    path = epath.Path(cache_dir) / f"tokens-{tokenizer_key(tok)}-{corpus_key}.npy"
    if path.exists():
        with path.open("rb") as f:
            return np.load(f)
    parts = []
    for ids in encode_documents(tok, docs):
        parts += [np.asarray([sep_id], np.int32), ids]
    stream = np.concatenate(parts) if parts else np.zeros((0,), np.int32)
    buf = io.BytesIO()
    np.save(buf, stream)
    write_atomic(path, buf.getvalue())
    return stream
