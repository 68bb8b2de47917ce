"""Documents from HF `datasets`, streamed: local parquet/arrow files or corpora in the HF cache.

Nothing is read into a list: local files are streamed (`streaming=True`, no Arrow copy is
written); cached hub corpora are memory-mapped Arrow tables read in record batches.
"""

import importlib
import os
from collections.abc import Iterator

# name -> ((repo, config, revision), ...): parquet forms only; datasets >= 4 refuses the old
# script-based `wikipedia` / `bookcorpus` loaders. Read from the local HF cache (downloaded
# beforehand; set HF_DATASETS_OFFLINE=1 on hosts without network).
HF_CORPORA = {
    "wikitext2": (("Salesforce/wikitext", "wikitext-2-raw-v1", None),),
    "wikitext103": (("Salesforce/wikitext", "wikitext-103-raw-v1", None),),
    "bookcorpus_wikipedia": (
        ("bookcorpus/bookcorpus", "plain_text", "refs/convert/parquet"),
        ("wikimedia/wikipedia", "20231101.en", None),
    ),
}
FILE_FORMATS = ("parquet", "arrow")  # data.name for a local folder / file / glob of them
VAL_DIRS = ("validation", "val", "valid")
_BATCH = 1000


def import_datasets():
    try:
        return importlib.import_module("datasets")
    except ImportError as e:
        raise ImportError(
            "HF corpora and parquet/arrow files need the `datasets` package: "
            "pip install 'outeffhop[data]'."
        ) from e


def data_files(fmt: str, path: str) -> dict[str, list[str]]:
    """{split: sorted files} of a local `path`: a file, a glob, or a folder (searched
    recursively); a folder with `train/` and `validation/` (or `val/`, `valid/`) subfolders
    gives both splits, otherwise every file is train."""
    import glob

    if not path:
        raise ValueError(f"data.path must name {fmt} files when data.name={fmt!r}.")
    root = os.path.expanduser(path)

    def files(p):
        if os.path.isdir(p):
            return sorted(glob.glob(os.path.join(p, "**", f"*.{fmt}"), recursive=True))
        return sorted(glob.glob(p))

    if os.path.isdir(root) and os.path.isdir(os.path.join(root, "train")):
        out = {"train": files(os.path.join(root, "train"))}
        for v in VAL_DIRS:
            if os.path.isdir(os.path.join(root, v)):
                out["validation"] = files(os.path.join(root, v))
                break
    else:
        out = {"train": files(root)}
    if not out["train"]:
        raise FileNotFoundError(f"data.path: no .{fmt} files at {root}.")
    return out


def _texts(rows: Iterator[dict], column: str, where: str) -> Iterator[str]:
    for batch in rows:
        if column not in batch:
            raise ValueError(
                f"data.text_column: {where} has no column {column!r} (has {sorted(batch)})."
            )
        for t in batch[column]:
            if t and t.strip():
                yield t.strip()


def has_validation(dcfg) -> bool:
    """Whether the corpus brings its own validation split."""
    if dcfg.name in FILE_FORMATS:
        return "validation" in data_files(dcfg.name, dcfg.path)
    return len(HF_CORPORA[dcfg.name]) == 1  # wikitext; BookCorpus + Wikipedia have none


def iter_hf_documents(dcfg, split: str) -> Iterator[str]:
    """Non-empty stripped texts of `split` ("train" or "validation") of `dcfg.name`."""
    datasets = import_datasets()
    column = dcfg.get("text_column", "text") or "text"
    if dcfg.name in FILE_FORMATS:
        files = data_files(dcfg.name, dcfg.path)
        if split not in files:
            return
        ds = datasets.load_dataset(
            dcfg.name, data_files={split: files[split]}, split=split, streaming=True
        )
        yield from _texts(ds.iter(batch_size=_BATCH), column, dcfg.path)
        return
    if dcfg.name not in HF_CORPORA:
        raise ValueError(f"data.name must be one of {(*FILE_FORMATS, *HF_CORPORA)}, "
                         f"got {dcfg.name!r}.")  # fmt: skip
    for repo, conf, revision in HF_CORPORA[dcfg.name]:
        kw = {"revision": revision} if revision else {}
        dd = datasets.load_dataset(repo, conf, **kw)
        if split in dd:
            yield from _texts(dd[split].iter(batch_size=_BATCH), column, repo)
