"""Tests for image folders at scale: given val split, DeiT augmentation, mixup/cutmix with soft
labels in the loss, and grain worker processes."""

import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags

from outeffhop import data
from outeffhop.data import augment
from outeffhop.models import losses

pil = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """train/{a,b,c} and val/{a,b,c} of small JPEGs with per-class brightness and noise."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c, level in (("a", 40), ("b", 120), ("c", 210)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                x = np.clip(level + rng.normal(0, 20, (20 + i, 24, 3)), 0, 255).astype(np.uint8)
                pil.fromarray(x).save(root / split / c / f"{i}.jpg")
    return root


def _cfg(folder, **kw):
    c = data.get_data_config("image_folder")
    c.update(dict(path=str(folder), image_size=16, batch_size=8))
    c.update(kw)
    return c


def _make(c, split="train", pi=0, pc=1):
    return data.make_dataset(c, split, process_index=pi, process_count=pc)


def test_given_val_folder_is_the_eval_split(folder):
    _, tinfo = _make(_cfg(folder))
    ev, einfo = _make(_cfg(folder, eval_crop_frac=0.875), "eval")
    assert (tinfo.num_examples, einfo.num_examples, einfo.num_classes) == (36, 12, 3)
    labels = np.concatenate([b["label"][b["weight"] > 0] for b in ev])
    np.testing.assert_array_equal(np.sort(labels), np.repeat([0, 1, 2], 4))
    (folder / "val" / "zebra").mkdir()
    try:
        with pytest.raises(ValueError, match="zebra"):
            _make(_cfg(folder), "eval")
    finally:
        (folder / "val" / "zebra").rmdir()


def test_random_resized_crop_box_stays_inside_and_follows_scale_and_ratio():
    rng = np.random.default_rng(1)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(8, 300, 2))
        x0, y0, cw, ch = augment.random_resized_crop_box(rng, w, h, (0.3, 1.0), (0.75, 4 / 3))
        assert x0 >= 0 and y0 >= 0 and x0 + cw <= w and y0 + ch <= h and cw > 0 and ch > 0
        if min(w, h) >= 64 and 0.75 <= w / h <= 4 / 3:  # no fallback at these sizes
            assert 0.3 * 0.9 <= cw * ch / (w * h) <= 1.0 + 1e-9
            assert 0.75 * 0.9 <= cw / ch <= 4 / 3 * 1.1


def test_rand_augment_keeps_size_and_is_seeded():
    im = pil.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), np.uint8))
    a = augment.rand_augment(im, np.random.default_rng(3), 2, 9)
    b = augment.rand_augment(im, np.random.default_rng(3), 2, 9)
    assert a.size == im.size and a.mode == im.mode
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert augment.rand_augment(im, np.random.default_rng(3), 0, 9) is im


def _pair_lams(batch):
    """lam of each row from its soft label (the own class's mass, K = 3, no smoothing)."""
    p = batch["label_probs"]
    return p[np.arange(len(p)), batch["label"]]


def test_mixup_rows_are_convex_pairs_with_matching_soft_labels():
    rng = np.random.default_rng(0)
    b = {
        "image": rng.random((8, 4, 4, 3)).astype(np.float32),
        "label": np.arange(8) % 3,
        "weight": np.ones(8, np.float32),
    }
    out = augment.mix_batch(
        b,
        np.random.default_rng(5),
        num_classes=3,
        pi=0,
        pc=1,
        mixup_alpha=0.8,
        cutmix_alpha=0.0,
        mix_prob=1.0,
        switch_prob=0.5,
        label_smoothing=0.0,
    )
    np.testing.assert_allclose(out["label_probs"].sum(1), 1, rtol=1e-6)
    for i in range(4):
        a, o = i, i + 4
        lam = (out["image"][a] - b["image"][o]) / (b["image"][a] - b["image"][o])
        lam = float(np.median(lam))
        np.testing.assert_allclose(
            out["image"][a], lam * b["image"][a] + (1 - lam) * b["image"][o], rtol=1e-5, atol=1e-6
        )
        want = lam * np.eye(3)[b["label"][a]] + (1 - lam) * np.eye(3)[b["label"][o]]
        np.testing.assert_allclose(out["label_probs"][a], want, atol=1e-5)


def test_cutmix_pastes_a_box_whose_area_sets_the_label_mix():
    rng = np.random.default_rng(0)
    b = {
        "image": np.stack([np.full((8, 8, 1), v, np.float32) for v in range(8)]),
        "label": np.array([0, 1, 2, 0, 1, 2, 0, 1]),
        "weight": np.ones(8, np.float32),
    }
    out = augment.mix_batch(
        b,
        rng,
        num_classes=3,
        pi=0,
        pc=1,
        mixup_alpha=0.0,
        cutmix_alpha=1.0,
        mix_prob=1.0,
        switch_prob=0.5,
        label_smoothing=0.1,
    )
    for i in range(4):
        a, o = i, i + 4
        from_other = (out["image"][a] == o).mean()
        assert set(np.unique(out["image"][a])) <= {a, o}
        p = (1 - 0.1) * np.eye(3) + 0.1 / 3
        want = (1 - from_other) * p[b["label"][a]] + from_other * p[b["label"][o]]
        np.testing.assert_allclose(out["label_probs"][a], want, atol=1e-6)


def _sorted_rows(batch):
    keys = ("image", "label_probs")
    rows = np.concatenate([batch[k].reshape(len(batch[k]), -1) for k in keys], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_deit_pipeline_is_process_count_invariant_and_workers_change_nothing(folder):
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    deit = dict(
        random_resized_crop=True,
        hflip=True,
        randaugment_n=2,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        label_smoothing=0.1,
    )
    whole = list(zip(range(3), _make(_cfg(folder, **deit))[0], strict=False))
    for pc in (2, 4):
        parts = [
            list(zip(range(3), _make(_cfg(folder, **deit), pi=p, pc=pc)[0], strict=False))
            for p in range(pc)
        ]
        for k, (_, g) in enumerate(whole):
            joined = {key: np.concatenate([part[k][1][key] for part in parts]) for key in g}
            np.testing.assert_allclose(_sorted_rows(joined), _sorted_rows(g), atol=1e-6)
    ds, _ = _make(_cfg(folder, num_workers=2, **deit))
    it = iter(ds)
    got = [next(it) for _ in range(3)]
    state = it.get_state()
    for (_, want), b in zip(whole, got, strict=True):
        np.testing.assert_array_equal(b["image"], want["image"])
    nxt = next(it)
    it2 = iter(_make(_cfg(folder, num_workers=2, **deit))[0])
    it2.set_state(state)
    np.testing.assert_array_equal(next(it2)["image"], nxt["image"])
    assert np.ptp(got[0]["label_probs"], axis=1).max() < 1  # soft labels


def test_soft_labels_in_the_loss():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    label = jnp.asarray([0, 1, 2, 3, 4, 0])
    weight = jnp.asarray([1, 1, 1, 1, 1, 0], jnp.float32)
    hard, hm = losses.classification_loss(logits, {"label": label, "weight": weight})
    onehot = jnp.eye(5)[label]
    soft, sm = losses.classification_loss(
        logits, {"label": label, "weight": weight, "label_probs": onehot}
    )
    np.testing.assert_allclose(soft, hard, rtol=1e-6)
    assert float(sm["accuracy"]) == float(hm["accuracy"])
    probs = jnp.asarray(rng.dirichlet(np.ones(5), 6), jnp.float32)
    got, _ = losses.classification_loss(
        logits, {"label": label, "weight": weight, "label_probs": probs}
    )
    logp = np.asarray(logits) - np.log(np.exp(np.asarray(logits)).sum(1, keepdims=True))
    want = -(np.asarray(probs) * logp).sum(1)[:5].mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)
