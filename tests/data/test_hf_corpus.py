"""Tests for real-corpus inputs and remote paths: local parquet through HF `datasets`, and
gs:// workdirs (an in-memory fsspec filesystem registered under the gs protocol)."""

import os
import sys

import numpy as np
import pytest

from outeffhop import data
from outeffhop.data import corpus, hf_corpus, prepare, shards
from outeffhop.train import checkpoint, metrics_log

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("datasets")


def _texts(n, tag):
    return [f"{tag} article {i}: the river flows past town {i % 7} at dawn." for i in range(n)]


def _write(path, texts, column="text"):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: texts, "id": list(range(len(texts)))}), path)


def _cfg(**kw):
    c = data.get_data_config("mlm")
    c.update(dict(name="parquet", vocab_size=300, seq_len=16, batch_size=8, num_workers=1,
                  val_fraction=0.25))  # fmt: skip
    c.update(kw)
    return c


def test_parquet_folder_with_splits_streams_in_file_order(tmp_path):
    train = _texts(300, "train")
    _write(tmp_path / "pq" / "train" / "part-0.parquet", train[:120] + ["   ", ""])
    _write(tmp_path / "pq" / "train" / "part-1.parquet", train[120:])
    _write(tmp_path / "pq" / "validation" / "part-0.parquet", _texts(40, "val"))
    c = _cfg(path=str(tmp_path / "pq"))
    assert list(corpus.iter_split_documents(c, "train")) == train  # blanks dropped
    assert list(corpus.iter_split_documents(c, "val")) == _texts(40, "val")
    m = prepare.prepare(_cfg(path=str(tmp_path / "pq"), shards_dir=str(tmp_path / "sh")))
    assert (m["splits"]["train"]["documents"], m["splits"]["val"]["documents"]) == (300, 40)
    shards.verify(str(tmp_path / "sh"))
    ds, info = data.make_dataset(c, "eval", workdir=str(tmp_path / "w"), process_index=0,
                                 process_count=1)  # fmt: skip
    assert info.num_examples > 0 and next(iter(ds))["input_ids"].shape == (8, 16)


def test_parquet_without_validation_holds_out_by_document_hash(tmp_path):
    texts = _texts(400, "doc")
    _write(tmp_path / "one.parquet", texts, column="body")
    c = _cfg(path=str(tmp_path / "one.parquet"), text_column="body")
    tr, va = (list(corpus.iter_split_documents(c, s)) for s in ("train", "val"))
    assert sorted(tr + va) == sorted(texts) and not set(tr) & set(va)
    assert abs(len(va) / 400 - 0.25) < 0.08  # the hash split keeps about val_fraction
    assert va == [t for i, t in enumerate(texts) if corpus.in_val(i, 0, 0.25)]
    with pytest.raises(ValueError, match="data.text_column"):
        list(corpus.iter_split_documents(_cfg(path=str(tmp_path / "one.parquet")), "train"))
    with pytest.raises(FileNotFoundError, match="no .parquet files"):
        hf_corpus.data_files("parquet", str(tmp_path / "nothing"))


# --- gs:// through etils.epath ----------------------------------------------------------------


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// served by fsspec's in-memory filesystem (epath's gs backend is fsspec)."""
    pytest.importorskip("fsspec")
    from etils.epath import backend
    from fsspec.implementations.memory import MemoryFileSystem

    class FakeGCS(MemoryFileSystem):
        protocol = ("gs", "gcs")
        store, pseudo_dirs = {}, [""]  # its own store, not memory://'s

        def __init__(self, *args, finalize_on_close=None, **kw):
            super().__init__(*args, **kw)

    registry = sys.modules["fsspec.registry"]._registry  # protocol -> class, restored after
    for protocol in ("gs", "gcs"):
        monkeypatch.setitem(registry, protocol, FakeGCS)
    backend.fsspec_backend._get_filesystem.cache_clear()
    yield FakeGCS()
    backend.fsspec_backend._get_filesystem.cache_clear()
    FakeGCS.store.clear()


def test_gs_workdir_metrics_and_data_cache_stay_remote(fake_gcs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = "gs://bucket/run"
    log = metrics_log.MetricsLog(run, enabled=True, start_step=0, num_steps=3, progress_bar=False)
    for step in (1, 2, 3):
        log.write(step, {"loss": 1.0 / step})
    log.close()
    assert [r["step"] for r in metrics_log.read_metrics(run)] == [1, 2, 3]
    again = metrics_log.MetricsLog(run, enabled=True, start_step=2, num_steps=3,
                                   progress_bar=False)  # fmt: skip
    again.close()  # a resumed run drops the rows past its checkpoint
    assert [r["step"] for r in metrics_log.read_metrics(run)] == [1, 2]
    c = data.get_data_config("mlm")
    c.update(max_chars=60_000, vocab_size=1000, seq_len=32, batch_size=8)
    ds, info = data.make_dataset(c, "train", workdir=run, process_index=0, process_count=1)
    local = data.make_dataset(c, "train", workdir=str(tmp_path / "w"), process_index=0,
                              process_count=1)[0]  # fmt: skip
    np.testing.assert_array_equal(next(iter(ds))["input_ids"], next(iter(local))["input_ids"])
    cached = [k for k in fake_gcs.store if "bucket/run/data_cache/" in k]
    assert any("tokenizer-wordpiece" in p for p in cached) and any("tokens-" in p for p in cached)
    assert info.tokenizer_path.startswith("gs://bucket/run/data_cache/")
    assert checkpoint.latest_compatible_step(run, {}) is None
    assert os.listdir(tmp_path) == ["w"]  # nothing named gs: was created locally


def test_url_without_slashes_is_refused(tmp_path):
    for bad in ("gs:bucket/run", "gs:/bucket/run"):
        with pytest.raises(ValueError, match="without '//'"):
            checkpoint.checkpoint_dir(bad)
    assert checkpoint.checkpoint_dir(str(tmp_path)) == os.path.join(tmp_path, "checkpoints")
