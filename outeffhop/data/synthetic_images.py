"""Digits on a canvas: scikit-learn's digits, upsampled, placed at random on a noisy canvas.

Why: a ViT needs a real patch grid, and the papers' ViT outliers sit on background patches
that attention heads use to "do nothing". The 8x8 digits give 16 patches at most and no
background; here a digit of ``digit_size`` pixels (nearest upsampling of the 8x8 original)
lands at a uniformly random position of an ``image_size`` canvas of Gaussian noise, so with
canvas 32, digit 16 and patch 4 a quarter of the 64 patches hold the digit and the rest are
background. The labels are the digits' (10 classes, real handwriting of 1,797 images), the
split is the digits' own (a digit image is in train or eval, never both), and each training
epoch redraws positions and noise, so the model cannot memorise the pixels.

Examples are drawn from the per-record RNG of the grain pipeline: deterministic given
``data.seed`` (eval too: the same canvases every time) and resumable.
"""

from __future__ import annotations

import functools

import numpy as np

from outeffhop.data import images

NUM_CLASSES = 10


def place(digit_HW1: np.ndarray, canvas: int, rng: np.random.Generator, noise: float):
    """A ``canvas``-sided image: N(0, noise^2) clipped to [0, 1], the digit pasted at random.

    The digit's pixels replace the background where the digit is brighter (max).
    """
    s = digit_HW1.shape[0]
    if s > canvas:
        raise ValueError(f"data.digit_size {s} must be <= data.image_size {canvas}.")
    img = np.clip(rng.normal(0.0, noise, (canvas, canvas, 1)), 0.0, 1.0) if noise > 0 else None
    img = np.zeros((canvas, canvas, 1), np.float32) if img is None else img.astype(np.float32)
    dy, dx = rng.integers(0, canvas - s + 1, size=2)
    region = img[dy : dy + s, dx : dx + s]
    img[dy : dy + s, dx : dx + s] = np.maximum(region, digit_HW1)
    return img


def placed(digits, labels, canvas: int, noise: float, i: int, rng: np.random.Generator):
    """(digit ``i`` placed on a fresh noisy canvas, its label): the ``load`` of the data set's
    ``images.ImageExamples`` (which pads eval past the split and normalizes)."""
    return place(digits[i], canvas, rng, noise), labels[i]


def canvas_stats(
    digits: np.ndarray, canvas: int, noise: float, n: int = 512
) -> tuple[float, float]:
    """Pixel mean and std of ``n`` canvases drawn with a fixed seed (for normalization)."""
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(digits), n)
    x = np.stack([place(digits[i], canvas, rng, noise) for i in pick])
    return float(x.mean()), float(x.std())


def canvas_digits(dcfg, train: bool):
    """(examples, info) of the ``canvas_digits`` data set for the registry.

    Fields: ``image_size`` (canvas side), ``digit_size`` (multiple of 8, default 16),
    ``noise`` (background std, default 0.1), ``val_fraction``, ``split_seed``.
    """
    if dcfg.objective != "classification":
        raise ValueError(
            f"data.objective must be classification for canvas_digits; got {dcfg.objective!r}."
        )
    digit_size, noise = int(dcfg.get("digit_size", 16)), float(dcfg.get("noise", 0.1))
    if noise < 0:
        raise ValueError(f"data.noise must be >= 0; got {noise}.")
    x, y = images.load_digits_images(digit_size)
    if digit_size > dcfg.image_size:
        raise ValueError(
            f"data.digit_size {digit_size} must be <= data.image_size {dcfg.image_size}."
        )
    tr, va = images.split_indices(len(y), dcfg.val_fraction, dcfg.split_seed)
    mean, std = canvas_stats(x[tr], dcfg.image_size, noise)
    shape = (dcfg.image_size, dcfg.image_size, 1)
    examples = images.ImageExamples(
        load=functools.partial(placed, x, y, dcfg.image_size, noise),
        indices=tr if train else va,
        image_shape=shape,
        mean=mean,
        std=std,
        load_takes_rng=True,
    )
    info = dict(num_classes=NUM_CLASSES, image_shape=shape, mean=mean, std=std)
    return examples, info
