"""Text corpora as lists of documents: stdlib English, local text files, optional HF datasets."""

import ast
import hashlib
import importlib
import json
import pathlib
import sys
import sysconfig
from collections.abc import Iterator

import numpy as np
from etils import epath

from outeffhop.data import hf_corpus
from outeffhop.data.tokenizer import write_atomic

TEXT_CORPORA = ("stdlib", "text_files", *hf_corpus.FILE_FORMATS, *hf_corpus.HF_CORPORA)
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
_MIN_DOC_CHARS = 20  # drops one-word docstrings ("Return self.") that carry no prose


def _stdlib_files() -> list[pathlib.Path]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p
        for p in root.rglob("*.py")
        if not any(
            part in _SKIP_DIRS or part.startswith("test_") for part in p.relative_to(root).parts
        )
    )


def _iter_stdlib_documents() -> Iterator[str]:
    """Yields the language reference (`pydoc_data.topics`) and then every stdlib docstring.

    Prose first: the topics are the reference manual in English; docstrings follow in sorted
    file order and `ast.walk` order, so the sequence is deterministic for a Python version.
    Sources are parsed with `ast`, never imported (importing `antigravity` opens a browser).
    """
    topics = importlib.import_module("pydoc_data.topics").topics
    for key in sorted(topics):
        yield from (p.strip() for p in topics[key].split("\n\n") if p.strip())
    for path in _stdlib_files():
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):  # a few stdlib files are deliberately invalid
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= _MIN_DOC_CHARS:
                    yield doc


def _take(docs: Iterator[str], max_chars: int) -> list[str]:
    out, total = [], 0
    for doc in docs:
        if max_chars and total >= max_chars:
            break
        out.append(doc)
        total += len(doc)
    return out


def stdlib_documents(max_chars: int = 0, cache_dir: str | None = None) -> list[str]:
    """The default offline corpus: English from the running Python's standard library.

    `max_chars` > 0 stops after that many characters (whole documents); 0 = all (~2.2 MB on
    CPython 3.11). With `cache_dir` the result is cached there as JSON per Python and max_chars.
    """
    if not cache_dir:
        return _take(_iter_stdlib_documents(), max_chars)
    tag = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    cache = epath.Path(cache_dir) / f"stdlib-corpus-py{tag}-max{max_chars}.json"
    if cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    docs = _take(_iter_stdlib_documents(), max_chars)  # parses only as far as needed
    write_atomic(cache, json.dumps(docs).encode("utf-8"))
    return docs


def _read_text(path: pathlib.Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise ValueError(f"data.path: {path} is a binary file; only UTF-8 text files are accepted.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"data.path: {path} is not UTF-8 text ({e.reason}).") from e


def iter_text_files(path: str) -> Iterator[str]:
    """Paragraphs (blank-line separated) of a UTF-8 text file, or of every file under a folder,
    one file in memory at a time; folder files in sorted order, hidden files skipped."""
    if not path:
        raise ValueError("data.path must name a text file or folder when data.name='text_files'.")
    root = pathlib.Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data.path: {root} does not exist.")
    if root.is_dir():
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
        )
    else:
        files = [root]

    for f in files:
        for p in _read_text(f).replace("\r\n", "\n").split("\n\n"):
            if p.strip():
                yield p.strip()


def text_file_documents(path: str, max_chars: int = 0) -> list[str]:
    """`iter_text_files(path)` as a list, capped at `max_chars` (whole paragraphs).

    Raises FileNotFoundError for a missing path and ValueError for a binary/non-UTF-8 file or
    a corpus with no text.
    """
    docs = _take(iter_text_files(path), max_chars)
    root = pathlib.Path(path).expanduser()
    if not docs:
        raise ValueError(f"data.path: {root} contains no text (empty file or folder).")
    return docs


def hf_documents(dcfg, max_chars: int = 0) -> tuple[list[str], list[str] | None]:
    """(train, validation-or-None) documents of an HF corpus or local parquet/arrow files.

    Needs the optional extra (`pip install outeffhop[data]`); HF's own cache and
    `HF_DATASETS_OFFLINE` decide whether anything is fetched. `max_chars` caps each split.
    For corpora larger than memory use `data.format='shards'` (scripts/prepare_data.py).
    """
    train = _take(hf_corpus.iter_hf_documents(dcfg, "train"), max_chars)
    val = None
    if hf_corpus.has_validation(dcfg):
        val = _take(hf_corpus.iter_hf_documents(dcfg, "validation"), max_chars) or None
    return train, val


def split_documents(docs: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Splits documents into (train, val) by a seeded permutation; val gets round(f * n) docs."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}.")
    n_val = round(val_fraction * len(docs))
    if n_val < 1 or n_val >= len(docs):
        raise ValueError(
            f"data.val_fraction={val_fraction} leaves an empty split of {len(docs)} documents; "
            "give a larger corpus or another fraction."
        )
    perm = np.random.default_rng(seed).permutation(len(docs))
    val_idx = np.sort(perm[:n_val])
    train_idx = np.sort(perm[n_val:])
    return [docs[i] for i in train_idx], [docs[i] for i in val_idx]


def docs_hash(docs: list[str]) -> str:
    """A short content hash of a document list (cache key)."""
    h = hashlib.sha256()
    for d in docs:
        h.update(d.encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def load_split_documents(dcfg, cache_dir: str | None) -> tuple[list[str], list[str]]:
    """(train, val) documents for `dcfg.name`; official validation splits are kept when present."""
    name = dcfg.name
    if name == "stdlib":
        docs = stdlib_documents(dcfg.max_chars, cache_dir)
    elif name == "text_files":
        docs = text_file_documents(dcfg.path, dcfg.max_chars)
    elif name in TEXT_CORPORA:
        train, val = hf_documents(dcfg, dcfg.max_chars)
        if val:
            return train, val
        docs = train
    else:
        raise ValueError(f"data.name must be one of {TEXT_CORPORA} for text, got {name!r}.")
    return split_documents(docs, dcfg.val_fraction, dcfg.split_seed)


def in_val(index: int, seed: int, val_fraction: float) -> bool:
    """Streaming split: document `index` is held out iff mix(seed, index) / 2**64 < fraction."""
    x = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    for shift, mul in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        x = ((x ^ (x >> shift)) * mul) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) / 2**64 < val_fraction


def capped(docs: Iterator[str], max_chars: int) -> Iterator[str]:
    total = 0
    for d in docs:
        if max_chars and total >= max_chars:
            return
        total += len(d)
        yield d


def iter_split_documents(dcfg, split: str) -> Iterator[str]:
    """Documents of `split` (train | val), streamed, for corpora of any size.

    A corpus with its own validation split keeps it; otherwise document i goes to val iff
    `in_val(i, data.split_seed, data.val_fraction)`. `data.max_chars` > 0 caps the corpus
    (each own split) before the split, in whole documents, as `load_split_documents` does.
    """
    name = dcfg.name
    if name not in TEXT_CORPORA:
        raise ValueError(f"data.name must be one of {TEXT_CORPORA} for text, got {name!r}.")
    if name not in ("stdlib", "text_files") and hf_corpus.has_validation(dcfg):
        own = hf_corpus.iter_hf_documents(dcfg, "validation" if split == "val" else "train")
        yield from capped(own, dcfg.max_chars)
        return
    if not 0.0 < dcfg.val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in (0, 1), got {dcfg.val_fraction}.")
    if name == "stdlib":
        source = _iter_stdlib_documents()
    elif name == "text_files":
        source = iter_text_files(dcfg.path)
    else:
        source = hf_corpus.iter_hf_documents(dcfg, "train")
    for i, d in enumerate(capped(source, dcfg.max_chars)):
        if in_val(i, dcfg.split_seed, dcfg.val_fraction) == (split == "val"):
            yield d
