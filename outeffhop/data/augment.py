"""DeiT-style image augmentation: random-resized crop, flip, RandAugment, mixup/cutmix, smoothing.

Per-image ops act on PIL images with a numpy Generator; `mix_batch` acts on a process's
batch and draws its randomness for the whole global batch, so it does not depend on the
process count (see `mix_batch`).
"""

import math

import numpy as np


def random_resized_crop_box(
    rng: np.random.Generator, width: int, height: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """(left, top, w, h) of torchvision's RandomResizedCrop: area fraction ~ U(scale), log
    aspect ~ U(log ratio), 10 tries, then the largest centred crop of aspect within ratio."""
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_r))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _ops():
    from PIL import Image, ImageEnhance, ImageOps

    def affine(im, m):
        return im.transform(
            im.size,
            Image.Transform.AFFINE,
            m,
            resample=Image.Resampling.BILINEAR,
            fillcolor=(128,) * len(im.getbands()),
        )

    # name -> f(image, level in [0, 1], sign in {-1, 1}); levels as in timm's rand-m9 ops.
    return {
        "AutoContrast": lambda im, v, s: ImageOps.autocontrast(im),
        "Equalize": lambda im, v, s: ImageOps.equalize(im),
        "Invert": lambda im, v, s: ImageOps.invert(im),
        "Rotate": lambda im, v, s: im.rotate(s * 30 * v, fillcolor=(128,) * len(im.getbands())),
        "Posterize": lambda im, v, s: ImageOps.posterize(im, max(1, 8 - int(4 * v))),
        "Solarize": lambda im, v, s: ImageOps.solarize(im, 256 - int(256 * v)),
        "SolarizeAdd": lambda im, v, s: im.point(
            lambda p: min(255, p + int(110 * v)) if p < 128 else p
        ),
        "Color": lambda im, v, s: ImageEnhance.Color(im).enhance(1 + s * 0.9 * v),
        "Contrast": lambda im, v, s: ImageEnhance.Contrast(im).enhance(1 + s * 0.9 * v),
        "Brightness": lambda im, v, s: ImageEnhance.Brightness(im).enhance(1 + s * 0.9 * v),
        "Sharpness": lambda im, v, s: ImageEnhance.Sharpness(im).enhance(1 + s * 0.9 * v),
        "ShearX": lambda im, v, s: affine(im, (1, s * 0.3 * v, 0, 0, 1, 0)),
        "ShearY": lambda im, v, s: affine(im, (1, 0, 0, s * 0.3 * v, 1, 0)),
        "TranslateX": lambda im, v, s: affine(im, (1, 0, s * 0.45 * v * im.size[0], 0, 1, 0)),
        "TranslateY": lambda im, v, s: affine(im, (1, 0, 0, 0, 1, s * 0.45 * v * im.size[1])),
    }


def rand_augment(image, rng: np.random.Generator, num_ops: int, magnitude: float, std=0.5):
    """RandAugment (Cubuk et al. 2020, timm's rand-m{M}-mstd{std}): `num_ops` ops drawn
    uniformly from the 15 above, each at level clip(N(M, std), 0, 10) / 10, random sign."""
    ops = _ops()
    names = sorted(ops)
    for _ in range(num_ops):
        name = names[int(rng.integers(len(names)))]
        level = float(np.clip(rng.normal(magnitude, std), 0, 10)) / 10
        image = ops[name](image, level, 1 if rng.random() < 0.5 else -1)
    return image


def smooth_labels(label_B: np.ndarray, num_classes: int, eps: float) -> np.ndarray:
    """float32 [B, K]: (1 - eps) one_hot(label) + eps / K."""
    out = np.full((len(label_B), num_classes), eps / num_classes, np.float32)
    out[np.arange(len(label_B)), label_B] += 1.0 - eps
    return out


def mix_batch(
    batch: dict,
    rng: np.random.Generator,
    *,
    num_classes: int,
    pi: int,
    pc: int,
    mixup_alpha: float,
    cutmix_alpha: float,
    mix_prob: float,
    switch_prob: float,
    label_smoothing: float,
) -> dict:
    """Mixup / CutMix in pairs, plus label smoothing; adds `label_probs` [b, K] float32.

    Local row i (< b/2) is paired with local row i + b/2. With the process's rows being
    global rows pi + pc t, that pair is global pair (r, r + G/2), r = pi + pc i, on any
    process count that divides G/2; each global pair's randomness (applied?, cutmix?,
    lambda ~ Beta(alpha, alpha), box) is drawn for all G/2 pairs and indexed by r. Mixup:
    x = lam x_i + (1 - lam) x_j; CutMix pastes a box of area ~(1 - lam) and sets lam to the
    kept area. Both rows of a pair get y = lam y_self + (1 - lam) y_other (smoothed labels).
    Padding rows (weight 0) are mixed like any row; their loss weight stays 0.
    """
    x, y = batch["image"].copy(), batch["label"]
    b, h, w = x.shape[:3]
    if b % 2 and mix_prob > 0:
        raise ValueError(f"data.batch_size / process count must be even for mixup, got {b}.")
    half, pairs = b // 2, b * pc // 2
    use = rng.random(pairs) < mix_prob
    cut = (rng.random(pairs) < switch_prob) if mixup_alpha > 0 else np.ones(pairs, bool)
    if cutmix_alpha <= 0:
        cut[:] = False
    lam = np.where(
        cut,
        rng.beta(max(cutmix_alpha, 1e-6), max(cutmix_alpha, 1e-6), pairs),
        rng.beta(max(mixup_alpha, 1e-6), max(mixup_alpha, 1e-6), pairs),
    )
    cy, cx = rng.random(pairs), rng.random(pairs)
    mine = slice(pi, pairs, pc)  # this process's global pairs, in local row order
    use, cut, lam, cy, cx = use[mine], cut[mine], lam[mine], cy[mine], cx[mine]
    probs = smooth_labels(y, num_classes, label_smoothing)
    out_p = probs.copy()
    for i in range(half):
        if not use[i]:
            continue
        a, o = i, i + half
        if cut[i]:
            rh, rw = int(h * math.sqrt(1 - lam[i])), int(w * math.sqrt(1 - lam[i]))
            y0 = int(np.clip(cy[i] * h - rh // 2, 0, h - rh))
            x0 = int(np.clip(cx[i] * w - rw // 2, 0, w - rw))
            box = (slice(y0, y0 + rh), slice(x0, x0 + rw))
            xa = x[a].copy()
            x[a][box], x[o][box] = x[o][box], xa[box]
            lam_i = 1 - rh * rw / (h * w)
        else:
            lam_i = float(lam[i])
            x[a], x[o] = lam_i * x[a] + (1 - lam_i) * x[o], lam_i * x[o] + (1 - lam_i) * x[a]
        out_p[a] = lam_i * probs[a] + (1 - lam_i) * probs[o]
        out_p[o] = lam_i * probs[o] + (1 - lam_i) * probs[a]
    return {**batch, "image": x.astype(np.float32), "label_probs": out_p}
