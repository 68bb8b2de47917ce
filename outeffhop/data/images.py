"""Image classification examples: scikit-learn digits (offline) and user class-per-folder images."""

import dataclasses
import functools
import importlib
import pathlib
from collections.abc import Callable

import numpy as np

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

    `load(i) -> (image_HWC in [0, 1], label)`; `indices` picks this split; an index past the
    split gives a zero image with label 0 and weight 0 (eval padding). `max_shift` > 0 adds a
    random translation (train augmentation) before normalization.
    """

    load: Callable[[int], tuple[np.ndarray, int]]
    indices: np.ndarray
    image_shape: tuple[int, int, int]
    mean: float
    std: float
    max_shift: int = 0

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
        image, label = self.load(int(self.indices[index]))
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


def list_image_folder(path: str) -> tuple[list[pathlib.Path], np.ndarray, list[str]]:
    """(files, labels, class_names) of `path/<class>/<image>`; classes and files sorted."""
    if not path:
        raise ValueError("data.path must name a folder when data.name='image_folder'.")
    root = pathlib.Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.path: {root} is not an existing folder.")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(label)
    if not files:
        raise ValueError(
            f"data.path: {root} has no images in class subfolders ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return files, np.asarray(labels, np.int32), classes


def folder_loader(
    files: list[pathlib.Path], labels: np.ndarray, image_size: int, channels: int
) -> Callable[[int], tuple[np.ndarray, int]]:
    """A loader `i -> (image [S, S, C] float32 in [0, 1], label)` reading with Pillow."""
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3 for image_folder, got {channels}.")
    if image_size < 1:
        raise ValueError(f"data.image_size must be positive, got {image_size}.")
    pil = _import_pil()
    mode = "L" if channels == 1 else "RGB"

    def load(i: int) -> tuple[np.ndarray, int]:
        try:
            with pil.open(files[i]) as im:
                im = im.convert(mode).resize((image_size, image_size), pil.Resampling.BILINEAR)
                x = np.asarray(im, np.float32) / 255.0
        except OSError as e:
            raise ValueError(f"data.path: {files[i]} is not a readable image ({e}).") from e
        return x.reshape(image_size, image_size, channels), int(labels[i])

    return load
