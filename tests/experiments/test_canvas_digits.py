"""The ViT cpu preset's data: scikit-learn digits placed at random on a noisy canvas."""

import numpy as np
import pytest

from outeffhop import data
from outeffhop.data import images, synthetic_images
from outeffhop.launch.configs import load_config


def canvas_config(**kw):
    d = data.get_data_config("digits")
    d.name, d.image_size, d.digit_size, d.noise, d.batch_size = "canvas_digits", 32, 16, 0.1, 16
    d.update(kw)
    return d


def test_place_pastes_the_digit_over_clipped_noise():
    digit = images.load_digits_images(16)[0][5]
    rng = np.random.default_rng(0)
    img = synthetic_images.place(digit, 32, rng, 0.1)
    assert img.shape == (32, 32, 1) and img.min() >= 0.0 and img.max() <= 1.0
    # the digit is somewhere, pixel-wise max with the background
    hits = [
        (dy, dx)
        for dy in range(17)
        for dx in range(17)
        if np.all(img[dy : dy + 16, dx : dx + 16] >= digit - 1e-7)
    ]
    assert hits
    clean = synthetic_images.place(digit, 32, np.random.default_rng(0), 0.0)
    assert np.isclose(clean.sum(), digit.sum())  # no noise: only the digit
    with pytest.raises(ValueError, match="digit_size"):
        synthetic_images.place(digit, 8, rng, 0.1)


def test_pipeline_splits_labels_and_determinism():
    d = canvas_config()
    train, info = data.make_dataset(d, "train", process_index=0, process_count=1)
    ev, einfo = data.make_dataset(d, "eval", process_index=0, process_count=1)
    assert info.num_classes == 10 and info.image_shape == (32, 32, 1)
    assert info.num_examples + einfo.num_examples == 1797
    b = next(iter(train))
    assert b["image"].shape == (16, 32, 32, 1) and b["label"].dtype == np.int32
    assert abs(float(b["image"].mean())) < 0.3 and 0.7 < float(b["image"].std()) < 1.3
    e1, e2 = next(iter(ev)), next(iter(ev))
    np.testing.assert_array_equal(e1["image"], e2["image"])  # eval canvases are fixed
    x, y = images.load_digits_images(16)
    tr, va = images.split_indices(len(y), d.val_fraction, d.split_seed)
    np.testing.assert_array_equal(e1["label"], y[va[:16]])  # eval keeps the digits' split
    # each epoch redraws positions and noise: same digits, other pixels
    whole = canvas_config(batch_size=len(tr))
    it = iter(data.make_dataset(whole, "train", process_index=0, process_count=1)[0])
    first, second = next(it), next(it)
    np.testing.assert_array_equal(np.sort(first["label"]), np.sort(second["label"]))
    sums = [np.sort(e["image"].sum(axis=(1, 2, 3))) for e in (first, second)]
    assert not np.allclose(*sums)
    with pytest.raises(ValueError, match="noise"):
        data.make_dataset(canvas_config(noise=-1.0), "train", process_index=0, process_count=1)


def test_vit_cpu_preset_builds_on_the_canvas():
    cfg = load_config("vit:cpu")
    assert cfg.data.name == "canvas_digits"
    tokens = (cfg.model.image_size // cfg.model.patch_size) ** 2 + 1
    assert tokens == 65 and cfg.model.image_size == cfg.data.image_size
