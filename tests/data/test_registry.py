"""Tests for outeffhop.data: corpora, tokenizers, MLM/CLM/image pipelines, resume, sharding."""

import os
import sys
import types
from collections import Counter

import grain
import ml_collections
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outeffhop import data
from outeffhop.data import corpus, images, text, tokenizer

SMALL = dict(max_chars=60_000, vocab_size=1000, seq_len=32, batch_size=8)


def _cfg(preset, **kw):
    c = data.get_data_config(preset)
    c.update({**(SMALL if preset in ("mlm", "clm") else dict(batch_size=8)), **kw})
    return c


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data_work"))


def _make(preset, split, workdir, pi=0, pc=1, **kw):
    return data.make_dataset(_cfg(preset, **kw), split, workdir=workdir, process_index=pi,
                             process_count=pc)  # fmt: skip


def _take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# --- corpus -----------------------------------------------------------------------------------


def test_stdlib_corpus_is_deterministic_english_prose_first():
    docs = corpus.stdlib_documents(max_chars=20_000)
    assert docs == corpus.stdlib_documents(max_chars=20_000)
    assert 20_000 <= sum(map(len, docs)) < 20_000 + max(map(len, docs))
    joined = " ".join(docs).lower()
    for word in (" the ", " is ", " of "):  # English, not code
        assert word in joined


def test_split_documents_is_a_seeded_partition():
    docs = [f"doc {i}" for i in range(100)]
    tr, va = corpus.split_documents(docs, 0.1, seed=3)
    assert len(va) == 10 and sorted(tr + va) == sorted(docs)
    assert (tr, va) == corpus.split_documents(docs, 0.1, seed=3)
    assert va != corpus.split_documents(docs, 0.1, seed=4)[1]


def test_text_files_folder_paragraphs(tmp_path):
    (tmp_path / "b.txt").write_text("second file.\n\nthird para.")
    (tmp_path / "a.txt").write_text("first para\nstill first.\n\n\n")
    (tmp_path / ".hidden").write_bytes(b"\x00\x01")
    docs = corpus.text_file_documents(str(tmp_path))
    assert docs == ["first para\nstill first.", "second file.", "third para."]
    sub = tmp_path / "more"
    sub.mkdir()
    (sub / "c.md").write_text(
        "\n\n".join(f"Paragraph {i}: the cat sat on mat {i}." for i in range(300))
    )
    ds, info = data.make_dataset(_cfg("mlm", name="text_files", path=str(tmp_path), vocab_size=300),
                                 "train", workdir=str(tmp_path / "w"), process_index=0,
                                 process_count=1)  # fmt: skip
    assert info.num_examples > 8 and next(iter(ds))["input_ids"].shape == (8, 32)


# --- tokenizers -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def toks(workdir):
    docs = corpus.stdlib_documents(max_chars=60_000)
    out = {}
    for kind in tokenizer.TOKENIZERS:
        out[kind] = tokenizer.cached_tokenizer(kind, docs, 1000, corpus.docs_hash(docs), workdir)
    return out, docs


@given(st.text(max_size=60))
def test_bytelevel_bpe_round_trips_any_text(toks, s):
    tok = toks[0]["bytelevel_bpe"][0]
    assert tok.decode(tok.encode(s, add_special_tokens=False).ids) == s


def test_wordpiece_round_trips_up_to_normalization(toks):
    tok = toks[0]["wordpiece"][0]
    for s in toks[1][:50]:
        ids = tok.encode(s, add_special_tokens=False).ids
        assert tok.token_to_id("[UNK]") not in ids
        norm = tok.normalizer.normalize_str(s)
        assert "".join(tok.decode(ids).split()) == "".join(norm.split())


def test_special_token_ids_and_cache_reuse(toks, workdir):
    (tok, path), docs = toks[0]["wordpiece"], toks[1]
    ids = tokenizer.special_ids(tok, "wordpiece")
    assert [ids[r] for r in ("pad", "unk", "cls", "sep", "mask")] == [0, 1, 2, 3, 4]
    bpe = tokenizer.special_ids(toks[0]["bytelevel_bpe"][0], "bytelevel_bpe")
    assert (bpe["bos"], bpe["pad"], bpe["eos"]) == (0, 1, 2)  # OPT's order
    stamp = os.stat(path).st_mtime_ns
    tok2, path2 = tokenizer.cached_tokenizer("wordpiece", [], 1000, corpus.docs_hash(docs), workdir)
    assert path2 == path and os.stat(path).st_mtime_ns == stamp  # not retrained
    assert tok2.get_vocab() == tok.get_vocab()  # training on [] would give 5 tokens


# --- MLM --------------------------------------------------------------------------------------


def test_mask_tokens_rates_and_labels():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 30_000, size=200_000)
    maskable = rng.random(ids.shape) < 0.9
    inp, lab = text.mask_tokens(ids, np.random.default_rng(1), maskable_L=maskable, mask_id=4,
                                vocab_lo=5, vocab_hi=30_000)  # fmt: skip
    sel = lab != text.IGNORE
    assert not (sel & ~maskable).any()
    np.testing.assert_array_equal(lab[sel], ids[sel])
    np.testing.assert_array_equal(inp[~sel], ids[~sel])
    assert abs(sel.sum() / maskable.sum() - 0.15) < 0.005
    frac_mask = (inp[sel] == 4).mean()
    frac_same = (inp[sel] == ids[sel]).mean()
    frac_rand = 1 - frac_mask - frac_same
    assert abs(frac_mask - 0.8) < 0.01 and abs(frac_same - 0.1) < 0.01
    assert abs(frac_rand - 0.1) < 0.01 and (inp[sel] >= 4).all()


def test_mlm_batches_mask_only_content_tokens(workdir):
    ds, info = _make("mlm", "train", workdir)
    assert info.objective == "mlm" and info.seq_len == 32 and info.mask_id == 4
    batches = _take(ds, info.steps_per_epoch)
    x = np.stack([b["input_ids"] for b in batches])
    y = np.stack([b["labels"] for b in batches])
    assert x.shape[1:] == (8, 32) and x.dtype == np.int32 and y.dtype == np.int32
    assert (x[..., 0] == info.cls_id).all() and (x[..., -1] == info.sep_id).all()
    sel = y != text.IGNORE
    assert not sel[..., [0, -1]].any() and (y[sel] >= 5).all()
    assert abs(sel.mean() - 0.15) < 0.02  # 2,000+ maskable tokens per epoch here
    assert (x[sel] == info.mask_id).mean() > 0.7
    assert (np.stack([b["attention_mask"] for b in batches]) == 1).all()


def test_mlm_example_equals_its_row_where_unlabeled():
    stream = np.arange(5, 105, dtype=np.int32)
    ex = text.MlmExamples(stream, 12, 2, 3, 0, 4, 200, 0.5, 0.8, 0.1, 5)
    for i in range(ex.num_examples):
        row, out = ex.row(i), ex(i, np.random.default_rng(i))
        keep = out["labels"] == text.IGNORE
        np.testing.assert_array_equal(out["input_ids"][keep], row[keep])
        np.testing.assert_array_equal(out["labels"][~keep], row[~keep])
    pad = ex(ex.num_examples, np.random.default_rng(0))
    assert (pad["labels"] == text.IGNORE).all() and (pad["attention_mask"] == 0).all()


# --- CLM --------------------------------------------------------------------------------------


def test_clm_packing_reconstructs_the_stream():
    bos = 2
    stream = np.array([bos, 7, 8, 9, bos, 10, 11, bos, 12, 13, 14, 15, bos, 16, 17], np.int32)
    ex = text.ClmExamples(stream, 4, bos, 1)
    assert ex.num_examples == (len(stream) - 1) // 4
    rows = [ex(i) for i in range(ex.num_examples)]
    n = 4 * ex.num_examples
    np.testing.assert_array_equal(np.concatenate([r["input_ids"] for r in rows]), stream[:n])
    np.testing.assert_array_equal(np.concatenate([r["labels"] for r in rows]), stream[1 : n + 1])
    for r in rows:
        seg, x = r["segment_ids"], r["input_ids"]
        assert seg[0] == 1 and (np.diff(seg) >= 0).all()
        np.testing.assert_array_equal(np.diff(seg) == 1, x[1:] == bos)  # new doc at each bos


def test_clm_batches_are_shifted(workdir):
    ds, info = _make("clm", "train", workdir)
    b = _take(ds, 1)[0]
    experiment = ml_collections.ConfigDict({"data": _cfg("clm")})  # reads experiment.data
    _same(b, _take(data.make_dataset(experiment, "train", workdir=workdir)[0], 1)[0])
    assert info.vocab_size <= SMALL["vocab_size"]  # the trainers' vocab_size is an upper bound
    assert set(b) == {"input_ids", "labels", "attention_mask", "segment_ids"}
    np.testing.assert_array_equal(b["labels"][:, :-1], b["input_ids"][:, 1:])
    assert info.eos_id == 2 and (b["input_ids"] < info.vocab_size).all()


# --- determinism, resume, sharding ------------------------------------------------------------


@pytest.mark.parametrize("preset", ["mlm", "clm", "digits"])
def test_deterministic_by_seed(workdir, preset):
    a = _take(_make(preset, "train", workdir)[0], 3)
    b = _take(_make(preset, "train", workdir)[0], 3)
    c = _take(_make(preset, "train", workdir, seed=1)[0], 3)
    for x, y in zip(a, b, strict=True):
        _same(x, y)
    key = "image" if preset == "digits" else "input_ids"
    assert not all(np.array_equal(x[key], z[key]) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize("preset", ["mlm", "clm", "digits"])
def test_resume_mid_epoch_gives_identical_batches(workdir, preset):
    ds, info = _make(preset, "train", workdir, augment=True)
    k = info.steps_per_epoch - 2  # resume just before an epoch boundary
    it = iter(ds)
    for _ in range(k):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(5)]
    ds2, _ = _make(preset, "train", workdir, augment=True)
    it2 = iter(ds2)
    it2.set_state(state)
    for e in expected:
        _same(e, next(it2))


def test_resume_through_orbax_checkpoint(workdir, tmp_path):
    import orbax.checkpoint as ocp

    ds, _ = _make("digits", "train", workdir)
    it = iter(ds)
    for _ in range(3):
        next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        expected = [next(it) for _ in range(2)]
        it2 = iter(_make("digits", "train", workdir)[0])
        mngr.restore(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(it2)))
    for e in expected:
        _same(e, next(it2))


def _rows(batch):
    flat = [v.reshape(len(v), -1).astype(np.float64) for _, v in sorted(batch.items())]
    rows = np.concatenate(flat, axis=1)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize(("preset", "pc"), [("mlm", 2), ("clm", 4), ("digits", 4)])
@pytest.mark.parametrize("split", ["train", "eval"])
def test_process_shards_are_disjoint_and_cover_the_global_batch(workdir, preset, pc, split):
    whole, info = _make(preset, split, workdir)
    n = min(3, len(whole))
    glob = _take(whole, n)
    shards = [_take(_make(preset, split, workdir, pi=p, pc=pc)[0], n) for p in range(pc)]
    for b in range(n):
        parts = [s[b] for s in shards]
        assert all(len(next(iter(p.values()))) == info.batch_size // pc for p in parts)
        joined = {k: np.concatenate([p[k] for p in parts]) for k in glob[b]}
        np.testing.assert_array_equal(_rows(joined), _rows(glob[b]))


# --- images -----------------------------------------------------------------------------------


def test_digits_split_shapes_and_normalization(workdir):
    tr, tinfo = _make("digits", "train", workdir, image_size=16)
    ev, einfo = _make("digits", "eval", workdir, image_size=16)
    assert tinfo.num_examples + einfo.num_examples == 1797 and einfo.num_examples == 180
    assert tinfo.image_shape == (16, 16, 1) and tinfo.num_classes == 10
    evb = list(ev)
    assert len(evb) == einfo.steps_per_epoch == -(-180 // 8)
    assert sum(b["weight"].sum() for b in evb) == 180
    b = evb[0]
    assert b["image"].shape == (8, 16, 16, 1) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32 and ((b["label"] >= 0) & (b["label"] < 10)).all()
    np.testing.assert_array_equal(b["image"][:, ::2, ::2], b["image"][:, 1::2, 1::2])
    x = np.concatenate([b["image"] for b in _take(tr, tinfo.steps_per_epoch)])
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05  # train-split statistics
    a, v = images.split_indices(1797, 0.1, 0)
    assert len(np.intersect1d(a, v)) == 0 and len(a) + len(v) == 1797


def test_image_folder(tmp_path, workdir):
    from PIL import Image as pil  # Pillow is installed with matplotlib, a dependency

    for c, color in (("cat", 200), ("dog", 30)):
        (tmp_path / c).mkdir()
        for i in range(5):
            pil.new("RGB", (10 + i, 12), (color, color, color)).save(tmp_path / c / f"{i}.png")
    ds, info = _make("image_folder", "train", workdir, path=str(tmp_path), image_size=8,
                     val_fraction=0.2)  # fmt: skip
    assert info.num_classes == 2 and info.num_examples == 8 and info.image_shape == (8, 8, 3)
    b = _take(ds, 1)[0]
    assert b["image"].shape == (8, 8, 8, 3)
    bright = b["image"].mean(axis=(1, 2, 3)) > 0
    np.testing.assert_array_equal(bright, b["label"] == 0)  # cat=200 -> bright, dog=30 -> dark


# --- bad input --------------------------------------------------------------------------------


def test_bad_inputs(tmp_path, workdir):
    with pytest.raises(FileNotFoundError, match="nope"):
        _make("mlm", "train", workdir, name="text_files", path=str(tmp_path / "nope"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="empty.txt"):
        _make("mlm", "train", workdir, name="text_files", path=str(tmp_path / "empty.txt"))
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="blob.bin"):
        _make("mlm", "train", workdir, name="text_files", path=str(tmp_path / "blob.bin"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt"):
        corpus.text_file_documents(str(tmp_path / "latin1.txt"))
    with pytest.raises(ValueError, match="data.name"):
        _make("mlm", "train", workdir, name="imagenet")
    with pytest.raises(ValueError, match="split"):
        _make("mlm", "test", workdir)
    with pytest.raises(ValueError, match="batch_size"):
        _make("digits", "train", workdir, pi=0, pc=3)
    with pytest.raises(ValueError, match="data.objective"):
        _make("digits", "train", workdir, objective="mlm")
    with pytest.raises(ValueError, match="image_size"):
        _make("digits", "train", workdir, image_size=12)
    with pytest.raises(FileNotFoundError, match="nope"):
        _make("image_folder", "train", workdir, path=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no images"):
        _make("image_folder", "train", workdir, path=str(tmp_path))
    with pytest.raises(ValueError, match="fewer than one batch"):
        _make("mlm", "train", workdir, max_chars=20_000, seq_len=128, batch_size=512)


def test_hf_corpora_are_optional(monkeypatch, workdir):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"outeffhop\[data\]"):
        _make("clm", "train", workdir, name="wikitext2")
    lines = [f"Line {i} of the fake wiki text about things." for i in range(400)]

    class Split:  # the part of datasets.Dataset that is used: batched iteration
        def __init__(self, texts):
            self.texts = texts

        def iter(self, batch_size):
            for i in range(0, len(self.texts), batch_size):
                yield {"text": self.texts[i : i + batch_size]}

    def load_dataset(path, conf=None):
        assert (path, conf) == ("Salesforce/wikitext", "wikitext-2-raw-v1")
        return {"train": Split(lines + [" "]), "validation": Split(lines[:80])}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    ds, info = _make("clm", "eval", workdir, name="wikitext2", vocab_size=400)
    assert info.num_examples > 0 and next(iter(ds))["input_ids"].shape == (8, 32)


def test_finite_epochs_give_equal_batch_counts_on_every_process(workdir):
    lens = [len(_make("digits", "train", workdir, pi=p, pc=4, num_epochs=2)[0]) for p in range(4)]
    assert lens == [2 * 1617 // 8] * 4
    ds, info = _make("digits", "train", workdir, num_epochs=1)
    x, _ = images.load_digits_images(8)
    tr, _ = images.split_indices(1797, 0.1, 0)
    train_rows = Counter(((x[i] - info.mean) / info.std).astype(np.float32).tobytes() for i in tr)
    epoch_rows = Counter(im.tobytes() for b in ds for im in b["image"])
    assert sum(epoch_rows.values()) == 1616 and epoch_rows <= train_rows  # each example once


@pytest.mark.parametrize("preset", ["clm", "digits"])
def test_eval_split_is_fixed_by_split_seed_not_seed(workdir, preset):
    a = list(_make(preset, "eval", workdir)[0])
    b = list(_make(preset, "eval", workdir, seed=7)[0])
    c = list(_make(preset, "eval", workdir, split_seed=1)[0])
    for x, y in zip(a, b, strict=True):
        _same(x, y)
    key = "image" if preset == "digits" else "input_ids"
    assert not np.array_equal(a[0][key], c[0][key])


@pytest.mark.slow
def test_full_stdlib_corpus_and_default_pipelines(tmp_path):
    docs = corpus.stdlib_documents(cache_dir=str(tmp_path))
    assert sum(map(len, docs)) > 1_500_000
    assert docs == corpus.stdlib_documents(cache_dir=str(tmp_path))  # cached copy agrees
    for preset in ("mlm", "clm"):
        ds, info = data.make_dataset(data.get_data_config(preset), "train", workdir=str(tmp_path),
                                     process_index=0, process_count=1)  # fmt: skip
        assert info.vocab_size == 8192 and info.num_examples > 3000
        assert next(iter(ds))["input_ids"].shape == (16, 128)
