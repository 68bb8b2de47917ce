"""Image classification examples: scikit-learn digits (offline) and user class-per-folder images."""

import dataclasses
import functools
import importlib
import os
import pathlib
from collections.abc import Callable

import grain
import numpy as np

from outeffhop.data import augment

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FOLDER_MEAN, FOLDER_STD = 0.5, 0.5  # folders are normalized to [-1, 1] without a data pass


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sorted index arrays from a seeded permutation; val gets round(f * n)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}.")
    n_val = round(val_fraction * n)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"data.val_fraction={val_fraction} leaves an empty split of {n} images.")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def random_shift(image_HWC: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Translates the image by up to `max_shift` pixels per axis, filling with zeros."""
    if max_shift <= 0:
        return image_HWC
    h, w = image_HWC.shape[:2]
    padded = np.pad(image_HWC, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=2)
    return padded[dy : dy + h, dx : dx + w]


@functools.lru_cache(maxsize=4)
def load_digits_images(image_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as (images float32 [N, S, S, 1] in [0, 1], labels int32 [N]).

    Pixels are divided by 16 (their maximum); `image_size` must be a multiple of 8 and is
    reached by nearest-neighbour upsampling (so ViT patches of 4 or 8 pixels fit).
    """
    if image_size < 8 or image_size % 8:
        raise ValueError(
            f"data.image_size must be a positive multiple of 8 for digits, got {image_size}."
        )
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    r = image_size // 8
    x = np.repeat(np.repeat(x, r, axis=1), r, axis=2)
    return x[..., None], d.target.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class ImageExamples:
    """Rows `{"image", "label", "weight"}` of `load(i)` images in [0, 1], normalized per record.

    `load(i) -> (image_HWC in [0, 1], label)` (or `load(i, rng)` when `load_takes_rng`, for
    a loader that augments); `indices` picks this split; an index past the split gives a zero
    image with label 0 and weight 0 (eval padding). `max_shift` > 0 adds a random translation
    (train augmentation) before normalization.
    """

    load: Callable[[int], tuple[np.ndarray, int]]
    indices: np.ndarray
    image_shape: tuple[int, int, int]
    mean: float
    std: float
    max_shift: int = 0
    load_takes_rng: bool = False

    @property
    def num_examples(self) -> int:
        return len(self.indices)

    def __call__(self, index: int, rng: np.random.Generator) -> dict:
        if index >= self.num_examples:
            return {
                "image": np.zeros(self.image_shape, np.float32),
                "label": np.int32(0),
                "weight": np.float32(0.0),
            }
        i = int(self.indices[index])
        image, label = self.load(i, rng) if self.load_takes_rng else self.load(i)
        image = random_shift(image, rng, self.max_shift)
        image = ((image - self.mean) / self.std).astype(np.float32)
        return {"image": image, "label": np.int32(label), "weight": np.float32(1.0)}


def _import_pil():
    try:
        return importlib.import_module("PIL.Image")
    except ImportError as e:
        raise ImportError(
            "data.name='image_folder' needs Pillow to read images: pip install pillow."
        ) from e


def split_folders(path: str) -> tuple[str, str | None]:
    """(train folder, val folder or None): `path/train` and `path/val` (or `path/validation`)
    when `path` has them (ImageNet's layout), else (`path`, None): val is then held out."""
    root = os.path.expanduser(path)
    if os.path.isdir(os.path.join(root, "train")):
        for v in ("val", "validation"):
            if os.path.isdir(os.path.join(root, v)):
                return os.path.join(root, "train"), os.path.join(root, v)
    return path, None


def list_image_folder(
    path: str, classes: list[str] | None = None
) -> tuple[list[pathlib.Path], np.ndarray, list[str]]:
    """(files, labels, class_names) of `path/<class>/<image>`; classes and files sorted.

    With `classes` (the train split's), labels follow that list and an unknown class folder
    is a ValueError."""
    if not path:
        raise ValueError("data.path must name a folder when data.name='image_folder'.")
    root = pathlib.Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.path: {root} is not an existing folder.")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is not None and set(found) - set(classes):
        extra = sorted(set(found) - set(classes))[:3]
        raise ValueError(f"data.path: {root} has classes {extra} that the train folder lacks.")
    classes = found if classes is None else classes
    files, labels = [], []
    for label, name in enumerate(classes):
        if not (root / name).is_dir():
            continue
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(label)
    if not files:
        raise ValueError(
            f"data.path: {root} has no images in class subfolders ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return files, np.asarray(labels, np.int32), classes


@dataclasses.dataclass(frozen=True)
class FolderLoader:
    """`(i, rng) -> (image [S, S, C] float32 in [0, 1], label)` read with Pillow (picklable,
    so grain worker processes can run it).

    Train (`train_aug`): random-resized crop (`crop_scale`, `crop_ratio`) or a plain resize,
    then a horizontal flip with probability 1/2 (`hflip`) and RandAugment (`randaugment_n`
    ops at magnitude `randaugment_m`). Eval: resize the shorter side to S / `eval_crop_frac`
    and centre-crop S (DeiT: 0.875), or a plain resize to S x S when it is 1.
    """

    files: tuple
    labels: np.ndarray
    image_size: int
    channels: int
    train_aug: bool = False
    random_resized_crop: bool = False
    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    hflip: bool = False
    randaugment_n: int = 0
    randaugment_m: float = 9.0
    eval_crop_frac: float = 1.0

    def _resize(self, im, pil):
        s = self.image_size
        if self.train_aug and self.random_resized_crop:
            return im  # cropped and resized in __call__
        if self.train_aug or self.eval_crop_frac >= 1.0:
            return im.resize((s, s), pil.Resampling.BILINEAR)
        short = round(s / self.eval_crop_frac)
        w, h = im.size
        im = im.resize(
            (max(short, round(w * short / h)), max(short, round(h * short / w))),
            pil.Resampling.BILINEAR,
        )
        left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
        return im.crop((left, top, left + s, top + s))

    def __call__(self, i: int, rng: np.random.Generator | None = None):
        pil = _import_pil()
        s = self.image_size
        try:
            with pil.open(self.files[i]) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                if self.train_aug and self.random_resized_crop:
                    x0, y0, w, h = augment.random_resized_crop_box(
                        rng, *im.size, self.crop_scale, self.crop_ratio
                    )
                    im = im.resize((s, s), pil.Resampling.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
                im = self._resize(im, pil)
                if self.train_aug and self.hflip and rng.random() < 0.5:
                    im = im.transpose(pil.Transpose.FLIP_LEFT_RIGHT)
                if self.train_aug and self.randaugment_n:
                    im = augment.rand_augment(im, rng, self.randaugment_n, self.randaugment_m)
                x = np.asarray(im, np.float32) / 255.0
        except OSError as e:
            raise ValueError(f"data.path: {self.files[i]} is not a readable image ({e}).") from e
        return x.reshape(s, s, self.channels), int(self.labels[i])


def folder_loader(
    files: list[pathlib.Path], labels: np.ndarray, image_size: int, channels: int, **aug
) -> FolderLoader:
    """A `FolderLoader` after checking `channels` and `image_size`; `aug` = its other fields."""
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3 for image_folder, got {channels}.")
    if image_size < 1:
        raise ValueError(f"data.image_size must be positive, got {image_size}.")
    _import_pil()
    return FolderLoader(tuple(files), labels, image_size, channels, **aug)


AUGMENT_FIELDS = {  # name: (default, comment); the ViT paper preset turns them on
    "random_resized_crop": (False, "image_folder train: RandomResizedCrop instead of resize"),
    "crop_scale": ((0.08, 1.0), "random_resized_crop: area fraction range"),
    "crop_ratio": ((3 / 4, 4 / 3), "random_resized_crop: aspect ratio range"),
    "hflip": (False, "image_folder train: horizontal flip with probability 1/2"),
    "randaugment_n": (0, "image_folder train: RandAugment ops per image; 0 = off (DeiT: 2)"),
    "randaugment_m": (9.0, "RandAugment magnitude in [0, 10] (DeiT: 9, std 0.5)"),
    "eval_crop_frac": (1.0, "image_folder eval: centre crop fraction (DeiT 0.875); 1 = resize"),
    "mixup_alpha": (0.0, "train: mixup Beta(alpha, alpha); 0 = off (DeiT: 0.8)"),
    "cutmix_alpha": (0.0, "train: CutMix Beta(alpha, alpha); 0 = off (DeiT: 1.0)"),
    "mix_prob": (1.0, "train: probability that a pair is mixed"),
    "mix_switch_prob": (0.5, "train: probability of CutMix rather than mixup when both on"),
    "label_smoothing": (0.0, "train: label smoothing eps (DeiT: 0.1); adds label_probs"),
}


def add_augment_fields(d) -> None:
    """Adds AUGMENT_FIELDS with their defaults to a data ConfigDict."""
    for name, (default, _) in AUGMENT_FIELDS.items():
        d[name] = default


def _mix(batch, rng, **kw):
    return augment.mix_batch(batch, rng, **kw)


def batch_stage(ds, dcfg, *, train, seed, global_batch, pi, pc, num_classes):
    """Batch-level steps of an image pipeline: mixup/cutmix/label smoothing (train, when
    on: `label_probs` [b, K]) and `data.num_workers` grain worker processes (an IterDataset)."""
    g = dcfg.get
    mixing = train and (g("mixup_alpha", 0) > 0 or g("cutmix_alpha", 0) > 0)
    if mixing or (train and g("label_smoothing", 0) > 0):
        ds = ds.random_map(
            functools.partial(
                _mix,
                num_classes=num_classes,
                pi=pi,
                pc=pc,
                mixup_alpha=g("mixup_alpha", 0.0),
                cutmix_alpha=g("cutmix_alpha", 0.0),
                mix_prob=g("mix_prob", 1.0) if mixing else 0.0,
                switch_prob=g("mix_switch_prob", 0.5),
                label_smoothing=g("label_smoothing", 0.0),
            ),
            seed=seed + 1,
        )
    if g("num_workers", 0) > 0:
        # One thread per worker process: decoding is CPU-bound, the processes are the parallelism.
        read = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)
        opts = grain.MultiprocessingOptions(num_workers=int(g("num_workers")))
        ds = ds.to_iter_dataset(read).mp_prefetch(opts)
    return ds
