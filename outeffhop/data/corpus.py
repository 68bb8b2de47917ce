"""Text corpora as lists of documents: stdlib English, local text files, optional HF datasets."""

import ast
import hashlib
import importlib
import json
import os
import pathlib
import sys
import sysconfig
from collections.abc import Iterator

import numpy as np

HF_CORPORA = {
    "wikitext2": (("wikitext", "wikitext-2-raw-v1"),),
    "wikitext103": (("wikitext", "wikitext-103-raw-v1"),),
    "bookcorpus_wikipedia": (("bookcorpus", None), ("wikipedia", "20220301.en")),
}
TEXT_CORPORA = ("stdlib", "text_files", *HF_CORPORA)
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
    cache = pathlib.Path(cache_dir) / f"stdlib-corpus-py{tag}-max{max_chars}.json"
    if cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    docs = _take(_iter_stdlib_documents(), max_chars)  # parses only as far as needed
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(docs), encoding="utf-8")
    tmp.replace(cache)  # atomic: concurrent processes never read a half-written file
    return docs


def _read_text(path: pathlib.Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise ValueError(f"data.path: {path} is a binary file; only UTF-8 text files are accepted.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"data.path: {path} is not UTF-8 text ({e.reason}).") from e


def text_file_documents(path: str, max_chars: int = 0) -> list[str]:
    """Paragraphs (blank-line separated) of a UTF-8 text file, or of every file under a folder.

    Folder files are read in sorted order, hidden files skipped. Raises FileNotFoundError for a
    missing path and ValueError for a binary/non-UTF-8 file or a corpus with no text.
    """
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

    def paragraphs() -> Iterator[str]:
        for f in files:
            for p in _read_text(f).replace("\r\n", "\n").split("\n\n"):
                if p.strip():
                    yield p.strip()

    docs = _take(paragraphs(), max_chars)
    if not docs:
        raise ValueError(f"data.path: {root} contains no text (empty file or folder).")
    return docs


def hf_documents(name: str, max_chars: int = 0) -> tuple[list[str], list[str] | None]:
    """(train, validation-or-None) documents of an HF `datasets` corpus the user has locally.

    Needs the optional extra (`pip install outeffhop[data]`); HF's own cache and
    `HF_DATASETS_OFFLINE` decide whether anything is fetched. `max_chars` caps each split.
    """
    if name not in HF_CORPORA:
        raise ValueError(f"data.name must be one of {TEXT_CORPORA} for text, got {name!r}.")
    try:
        datasets = importlib.import_module("datasets")
    except ImportError as e:
        raise ImportError(
            f"data.name={name!r} needs the HF `datasets` package: pip install 'outeffhop[data]'."
        ) from e
    train: list[str] = []
    val: list[str] | None = [] if len(HF_CORPORA[name]) == 1 else None
    for path, conf in HF_CORPORA[name]:
        dd = datasets.load_dataset(path, conf) if conf else datasets.load_dataset(path)
        train += _take((t.strip() for t in dd["train"]["text"] if t.strip()), max_chars)
        if val is not None and "validation" in dd:
            val += _take((t.strip() for t in dd["validation"]["text"] if t.strip()), max_chars)
    return train, val or None


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
    elif name in HF_CORPORA:
        train, val = hf_documents(name, dcfg.max_chars)
        if val:
            return train, val
        docs = train
    else:
        raise ValueError(f"data.name must be one of {TEXT_CORPORA} for text, got {name!r}.")
    return split_documents(docs, dcfg.val_fraction, dcfg.split_seed)
