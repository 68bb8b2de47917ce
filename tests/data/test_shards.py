"""Tests for the shard path: deterministic WordPiece, prepare -> shards, shard batches, loaded
tokenizers and their special ids."""

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outeffhop import data
from outeffhop.data import corpus, prepare, shard_batches, shards, text, tokenizer, wordpiece
from tests import ROOT

SENTENCES = [
    "The cat sat on the mat near {i} red doors.",
    "A quick brown fox jumps over dog number {i}!",
    "Energy of the Hopfield network falls at step {i}; memories are retrieved.",
]


def _corpus(folder, n=240):
    folder.mkdir(parents=True, exist_ok=True)
    paras = [SENTENCES[i % 3].format(i=i) * (1 + i % 4) for i in range(n)]
    (folder / "a.txt").write_text("\n\n".join(paras[: n // 2]))
    (folder / "b.txt").write_text("\n\n".join(paras[n // 2 :]))
    return paras


def _cfg(task="mlm", **kw):
    c = data.get_data_config(task)
    c.update(
        dict(
            name="text_files",
            vocab_size=400,
            seq_len=16,
            batch_size=8,
            num_workers=1,
            shard_rows=50,
            val_fraction=0.2,
        )
    )
    c.update(kw)
    return c


# --- deterministic WordPiece ------------------------------------------------------------------


def test_learn_vocab_merges_the_most_frequent_pair_first_with_string_order_ties():
    vocab = wordpiece.learn_vocab(Counter({"ab": 3, "cd": 3, "abe": 1}), 100, ["[UNK]"], 1)
    assert vocab[:6] == ["[UNK]", "a", "c", "##b", "##d", "##e"]  # firsts, then ## pieces
    merges = vocab[6:]
    assert merges[:2] == ["ab", "cd"]  # (a, ##b) has count 4, (c, ##d) 3
    assert merges[2] == "abe"  # (ab, ##e) has count 1
    assert len(set(vocab)) == len(vocab)
    assert wordpiece.learn_vocab(Counter({"ab": 3}), 3, ["[UNK]"]) == ["[UNK]", "a", "##b"]


_DET = """
import hashlib
from outeffhop.data import corpus, tokenizer
docs = corpus.stdlib_documents(max_chars=60_000)
print(hashlib.md5(tokenizer.train_tokenizer("wordpiece", docs, 1000).to_str().encode()).hexdigest())
"""


def test_wordpiece_json_is_identical_in_fresh_processes():
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    md5 = [
        subprocess.run(
            [sys.executable, "-c", _DET],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    ]
    docs = corpus.stdlib_documents(max_chars=60_000)
    tok = tokenizer.train_tokenizer("wordpiece", docs, 1000)
    assert md5[0] == md5[1] == hashlib.md5(tok.to_str().encode()).hexdigest()
    assert tok.get_vocab_size() == 1000
    assert [tok.id_to_token(i) for i in range(5)] == list(tokenizer.SPECIAL_TOKENS["wordpiece"])


# --- prepare -> shards ------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["mlm", "clm"])
def test_prepared_rows_equal_the_cache_paths_rows(tmp_path, task):
    _corpus(tmp_path / "txt")
    c = _cfg(task, path=str(tmp_path / "txt"), shards_dir=str(tmp_path / "shards"))
    m = prepare.prepare(c)
    shards.verify(c.shards_dir)
    tok = tokenizer.load_tokenizer(os.path.join(c.shards_dir, "tokenizer.json"))
    ids = tokenizer.special_ids(tok)
    for split in ("train", "val"):
        docs = list(corpus.iter_split_documents(c, split))
        sep = ids["sep"] if task == "mlm" else ids["eos"]
        stream = np.concatenate([np.r_[sep, e] for e in tokenizer.encode_documents(tok, docs)])
        rows = shards.ShardSet(c.shards_dir, split).gather(np.arange(m["splits"][split]["rows"]))
        entry = m["splits"][split]
        assert entry["documents"] == len(docs) and entry["tokens"] == len(stream)
        assert sum(s["rows"] for s in entry["shards"]) == entry["rows"] == len(rows)
        if task == "mlm":
            ex = text.MlmExamples(stream, 16, ids["cls"], ids["sep"], 0, 4, 400, 0.15, 0.8, 0.1, 5)
            want = np.stack([ex.row(i) for i in range(ex.num_examples)])
        else:
            ex = text.ClmExamples(stream, 16, sep, ids["pad"])
            want = np.stack(
                [np.r_[ex(i)["input_ids"], ex(i)["labels"][-1]] for i in range(ex.num_examples)]
            )
        np.testing.assert_array_equal(rows, want)
    assert len(m["splits"]["train"]["shards"]) > 1  # shard_rows=50 splits the train rows
    with pytest.raises(ValueError, match="already holds shards"):
        prepare.prepare(c)


def test_parallel_prepare_writes_the_same_shards_as_serial(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "_BATCH_CHARS", 2_000)  # many batches for 2 workers
    _corpus(tmp_path / "txt")
    serial = prepare.prepare(_cfg(path=str(tmp_path / "txt"), shards_dir=str(tmp_path / "w1")))
    c = _cfg(
        path=str(tmp_path / "txt"),
        shards_dir=str(tmp_path / "w2"),
        num_workers=2,
        tokenizer_path=str(tmp_path / "w1" / "tokenizer.json"),
    )  # one pool: encoding
    parallel = prepare.prepare(c)
    assert parallel["splits"] == serial["splits"]  # rows, tokens and every shard's sha256
    assert parallel["tokenizer_sha256"] == serial["tokenizer_sha256"]


@pytest.fixture(scope="module")
def mlm_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm_shards")
    _corpus(root / "txt", n=600)
    c = _cfg(path=str(root / "txt"), shards_dir=str(root / "shards"), max_predictions=4)
    prepare.prepare(c)
    c.format = "shards"
    return c


def _make(c, split="train", pi=0, pc=1, **kw):
    c = c.copy_and_resolve_references()
    c.update(kw)
    return data.make_dataset(c, split, process_index=pi, process_count=pc)


def test_shard_batches_split_over_processes_and_resume_on_any_count(mlm_shards):
    whole, info = _make(mlm_shards)
    it = iter(whole)
    glob = [next(it) for _ in range(4)]
    for pc in (2, 4):
        parts = []
        for p in range(pc):
            it_p = iter(_make(mlm_shards, pi=p, pc=pc)[0])
            parts.append([next(it_p) for _ in range(4)])
            assert it_p.get_state() == it.get_state()  # the same state on every process
        for b in range(4):
            for k in glob[b]:
                np.testing.assert_array_equal(np.concatenate([s[b][k] for s in parts]), glob[b][k])
    it2 = iter(_make(mlm_shards, pi=1, pc=2)[0])
    it2.set_state(it.get_state())
    np.testing.assert_array_equal(next(it2)["input_ids"], next(it)["input_ids"][4:])
    assert info.tokenizer_path.endswith("tokenizer.json") and info.num_examples > 100


def test_shard_mlm_masks_only_content_and_scores_fixed_counts(mlm_shards):
    ds, info = _make(mlm_shards)
    rows = shards.ShardSet(mlm_shards.shards_dir, "train")
    b = next(iter(ds))
    x, y, pos = b["input_ids"], b["labels"], b["masked_positions"]
    sel = y != text.IGNORE
    assert not sel[:, [0, -1]].any() and (x[:, 0] == info.cls_id).all()
    restored = np.where(sel, y, x)
    m = (~np.isin(restored, rows.manifest["all_special_ids"])).sum(1)
    np.testing.assert_array_equal(sel.sum(1), np.minimum(4, np.maximum(1, np.rint(0.15 * m))))
    k = sel.sum(1, keepdims=True)
    assert (np.take_along_axis(sel, pos, 1) == (np.arange(4) < k)).all()  # scored ones first
    originals = {tuple(r) for r in rows.gather(np.arange(len(rows)))}
    assert all(tuple(r) in originals for r in restored)  # labels are the stored tokens


def test_mask_rows_rates_match_bert_masking():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 3000, size=(400, 500))
    special = text.special_table(3000, 5, [100, 101])
    randoms = np.flatnonzero(~special)
    inp, lab = text.mask_rows(
        ids, np.random.default_rng(1), is_special_V=special, random_ids=randoms, mask_id=4
    )
    sel, maskable = lab != text.IGNORE, ~special[ids]
    assert not (sel & ~maskable).any()
    np.testing.assert_array_equal(lab[sel], ids[sel])
    np.testing.assert_array_equal(inp[~sel], ids[~sel])
    assert abs(sel.sum() / maskable.sum() - 0.15) < 0.005
    frac_mask, frac_same = (inp[sel] == 4).mean(), (inp[sel] == ids[sel]).mean()
    assert abs(frac_mask - 0.8) < 0.01 and abs(frac_same - 0.1) < 0.01
    assert not special[inp[sel & (inp != 4)]].any()  # random tokens are never special


def test_one_epoch_reads_every_row_once_and_eval_is_padded(mlm_shards):
    n = len(shards.ShardSet(mlm_shards.shards_dir, "train"))
    ds, _ = _make(mlm_shards, num_epochs=2)
    rows = shards.ShardSet(mlm_shards.shards_dir, "train").gather(np.arange(n))
    seen = Counter()
    for b in ds:
        restored = np.where(b["labels"] != text.IGNORE, b["labels"], b["input_ids"])
        seen.update(tuple(r) for r in restored)
    assert len(ds) == 2 * n // 8 and sum(seen.values()) == 8 * len(ds)
    once = Counter(map(tuple, rows))
    twice = once + once
    assert seen <= twice and sum((twice - seen).values()) < 8  # each row twice, bar the tail
    ev, einfo = _make(mlm_shards, "eval")
    batches = list(ev)
    real = sum(int(b["attention_mask"][:, 0].sum()) for b in batches)
    assert real == einfo.num_examples and len(batches) == -(-einfo.num_examples // 8)


@given(st.integers(1, 3000), st.integers(0, 2**32 - 1))
def test_permute_is_a_bijection(n, key):
    out = shard_batches.permute(np.arange(n), n, key)
    np.testing.assert_array_equal(np.sort(out), np.arange(n))


def test_permutations_look_shuffled_and_change_every_epoch():
    n, i = 10_000, np.arange(10_000)
    perms = [shard_batches.permute(i, n, int(shard_batches.epoch_key(7, e))) for e in range(3)]
    for p in perms:
        assert abs(np.corrcoef(i, p)[0, 1]) < 0.05 and (p == i).mean() < 0.01
        assert abs(np.corrcoef(p[:-1], p[1:])[0, 1]) < 0.05  # neighbours are not related
    assert (perms[0] != perms[1]).mean() > 0.99 and (perms[1] != perms[2]).mean() > 0.99


def test_shard_errors_name_the_field(mlm_shards, tmp_path):
    with pytest.raises(ValueError, match="data.seq_len"):
        _make(mlm_shards, seq_len=32)
    with pytest.raises(ValueError, match="data.vocab_size is 300"):
        _make(mlm_shards, vocab_size=300)
    with pytest.raises(ValueError, match="data.shards_dir must name"):
        _make(mlm_shards, shards_dir="")
    with pytest.raises(ValueError, match="local or mounted"):
        _make(mlm_shards, shards_dir="gs://bucket/shards")
    with pytest.raises(ValueError, match="prepare_data"):
        _make(mlm_shards, shards_dir=str(tmp_path))
    copy = tmp_path / "copy"
    copy.mkdir()
    with open(os.path.join(mlm_shards.shards_dir, shards.MANIFEST)) as f:
        m = json.load(f)
    m["splits"]["train"]["shards"][0]["sha256"] = "0" * 64
    (copy / shards.MANIFEST).write_text(json.dumps(m))
    (copy / "train").symlink_to(os.path.join(mlm_shards.shards_dir, "train"))
    with pytest.raises(ValueError, match="sha256"):
        shards.verify(str(copy))


# --- loaded tokenizers ------------------------------------------------------------------------


def _bert_vocab_dir(tmp_path, paras):
    """A vocab.txt laid out like bert-base-uncased's: [PAD], [unused*], then the others."""
    learned = tokenizer.train_tokenizer("wordpiece", paras, 400).get_vocab()
    body = [t for t, _ in sorted(learned.items(), key=lambda kv: kv[1]) if not t.startswith("[")]
    vocab = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *body]
    d = tmp_path / "bert"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return d


@pytest.mark.parametrize("fmt", ["cache", "shards"])
def test_tokenizer_path_special_ids_drive_masking(tmp_path, fmt):
    paras = _corpus(tmp_path / "txt", n=400)
    folder = _bert_vocab_dir(tmp_path, paras)
    tok = tokenizer.load_tokenizer(str(folder))
    ids = tokenizer.special_ids(tok)
    assert {k: ids[k] for k in ("pad", "unk", "cls", "sep", "mask")} == {
        "pad": 0,
        "unk": 3,
        "cls": 4,
        "sep": 5,
        "mask": 6,
    }
    c = _cfg(
        path=str(tmp_path / "txt"),
        tokenizer_path=str(folder),
        vocab_size=tok.get_vocab_size(),
        mask_prob=0.5,
        random_token_frac=0.5,
        mask_token_frac=0.5,
        max_chars=0,
    )
    if fmt == "shards":
        c.shards_dir = str(tmp_path / "shards")
        prepare.prepare(c)
        c.format = "shards"
    ds, info = data.make_dataset(
        c, "train", workdir=str(tmp_path / "w"), process_index=0, process_count=1
    )
    assert (info.mask_id, info.cls_id, info.sep_id, info.pad_id) == (6, 4, 5, 0)
    it = iter(ds)
    batches = [next(it) for _ in range(20)]
    x, y = (np.stack([b[k] for b in batches]) for k in ("input_ids", "labels"))
    assert (y[y != text.IGNORE] > 6).all()  # specials (and unused ids) are never scored
    swapped = x[(y != text.IGNORE) & (x != 6)]  # kept or random tokens
    assert len(swapped) and not np.isin(swapped, [0, 3, 4, 5]).any()  # no special is drawn
    json_path = tmp_path / "tok.json"
    json_path.write_text(tok.to_str())
    again = tokenizer.load_tokenizer(str(json_path))
    assert again.encode(paras[1]).ids == tok.encode(paras[1]).ids


def test_bad_tokenizer_paths(tmp_path):
    with pytest.raises(ValueError, match="tokenizer_path"):
        tokenizer.load_tokenizer(str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match="neither tokenizer.json nor vocab.txt"):
        tokenizer.load_tokenizer(str(tmp_path))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a tokenizer.json"):
        tokenizer.load_tokenizer(str(tmp_path / "bad.json"))
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    tok = tokenizer.load_tokenizer(str(tmp_path))
    with pytest.raises(ValueError, match="no cls, sep, mask token"):
        tokenizer.require_roles(tok, ("cls", "sep", "pad", "mask"), "data.tokenizer_path")
