"""`make_dataset(config, split)`: grain pipelines of batches for every data set, found by name."""

import dataclasses
import functools
import os
import pathlib

import grain
import ml_collections
import numpy as np

from outeffhop.data import corpus, images, synthetic_images, text_data, timeseries

IMAGE_DATASETS = ("digits", "image_folder", "canvas_digits")
DATASETS = (*corpus.TEXT_CORPORA, *IMAGE_DATASETS, "timeseries")
OBJECTIVES = ("mlm", "clm", "classification", "forecast")  # data.objective
SPLITS = ("train", "eval", "val", "test")  # test: time series only


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model and trainer need to know about a pipeline; fields that do not apply are None."""

    objective: str  # mlm | clm | classification | forecast
    batch_size: int  # rows per batch on this process
    global_batch_size: int  # rows per batch over all processes
    num_examples: int  # examples in this split (all processes, before padding)
    steps_per_epoch: int  # global batches per pass over the split
    seq_len: int | None = None
    vocab_size: int | None = None
    pad_id: int | None = None
    mask_id: int | None = None
    cls_id: int | None = None
    sep_id: int | None = None
    eos_id: int | None = None
    tokenizer_path: str | None = None
    num_classes: int | None = None
    image_shape: tuple[int, int, int] | None = None
    mean: float | None = None
    std: float | None = None
    num_series: int | None = None  # time series: variables D
    pred_len: int | None = None  # time series: forecast horizon (seq_len = input steps)


def get_data_config(preset: str = "mlm") -> ml_collections.ConfigDict:
    """Data fields with defaults; presets: mlm, clm (stdlib corpus), digits, image_folder,
    timeseries (forecasting windows)."""
    if preset == "timeseries":
        return _timeseries_config()
    if preset not in ("mlm", "clm", "digits", "image_folder"):
        raise ValueError(
            f"preset must be one of mlm, clm, digits, image_folder, timeseries; got {preset!r}."
        )
    d = ml_collections.ConfigDict()
    d.name = {"digits": "digits", "image_folder": "image_folder"}.get(preset, "stdlib")  # DATASETS
    d.objective = (
        preset if preset in ("mlm", "clm") else "classification"
    )  # mlm | clm | classification
    d.path = ""  # text_files/parquet/arrow: file, folder or glob; image_folder: see images.py
    d.format = "cache"  # text: cache (tokenize on the fly into cache_dir) | shards (prepared)
    d.shards_dir = ""  # format=shards: folder written by scripts/prepare_data.py (local)
    d.text_column = "text"  # parquet/arrow/HF corpora: the column holding the text
    d.tokenizer = "auto"  # wordpiece | bytelevel_bpe | auto (wordpiece for mlm, bpe for clm)
    d.tokenizer_path = ""  # a tokenizer.json or HF tokenizer folder; "" or "train": train one
    d.vocab_size = 8192  # tokenizer vocabulary size (trained locally, cached)
    d.tokenizer_max_chars = 0  # prepare: train the tokenizer on this many characters; 0 = all
    d.shard_rows = 0  # prepare: rows per shard file; 0 = about 256 MiB per file
    d.num_workers = 0  # prepare: tokenizer processes; images: decode processes (0 = cpus / none)
    d.seq_len = 128  # tokens per row
    d.batch_size = 16  # global rows per batch (all processes)
    d.mask_prob = 0.15  # MLM: fraction of tokens selected for prediction
    d.mask_token_frac = 0.8  # MLM: selected tokens replaced by [MASK]
    d.random_token_frac = 0.1  # MLM: selected tokens replaced by a random token (rest kept)
    d.max_predictions = 0  # MLM: > 0 = exactly round(mask_prob * tokens) scored, at most this
    d.val_fraction = 0.05 if preset in ("mlm", "clm") else 0.1  # held-out docs / images
    d.split_seed = 0  # fixes the train/val split
    d.seed = 0  # shuffling, masking and augmentation; each epoch reshuffles and re-masks
    d.num_epochs = 0  # train passes; 0 = repeat forever
    d.max_chars = 0  # cap on corpus characters (whole documents); 0 = all
    d.image_size = 8 if preset == "digits" else 32  # digits: multiple of 8; folders: resize to
    d.channels = 3  # image_folder: 1 (grayscale) or 3 (RGB); digits are always 1
    d.augment = False  # images: random shift by up to image_size // 8 pixels (train only)
    images.add_augment_fields(d)  # DeiT-style augmentation fields, all off by default
    d.cache_dir = ""  # tokenizer/corpus cache; "" = <workdir>/data_cache or ~/.cache/outeffhop
    return d


def _timeseries_config() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.name = "timeseries"  # forecasting windows (outeffhop.data.timeseries)
    d.objective = "forecast"  # rows {"x" [seq_len, D], "y" [pred_len, D], "weight"}
    d.path = ""  # ETT-format CSV (ETTh1.csv, ETTm1.csv, WTH.csv); "" = shipped EPF FR/BE
    d.date_column = "date"  # the CSV's time-stamp column
    d.seq_len = 168  # input steps per window
    d.pred_len = 24  # forecast steps per window
    d.split_fractions = (0.7, 0.1, 0.2)  # train | val | test by time
    d.batch_size = 32  # global rows per batch (all processes)
    d.seed = 0  # shuffling of training windows
    d.num_epochs = 0  # train passes; 0 = repeat forever
    return d


def _timeseries_examples(dcfg, split: str):
    if dcfg.objective != "forecast":
        raise ValueError(
            f"data.objective must be forecast for {dcfg.name!r}, got {dcfg.objective!r}."
        )
    if dcfg.path:
        series = timeseries.load_csv(dcfg.path, dcfg.date_column)
    else:
        series = timeseries.load_epf_fr_be()
    split = {"eval": "val"}.get(split, split)
    fractions = tuple(dcfg.split_fractions)
    examples, _ = timeseries.make_windows(series, split, dcfg.seq_len, dcfg.pred_len, fractions)
    info = dict(seq_len=dcfg.seq_len, num_series=series.values.shape[1], pred_len=dcfg.pred_len)
    return examples, info


def _cache_dir(dcfg, workdir) -> str:
    if dcfg.get("cache_dir"):
        return str(dcfg.cache_dir)
    if workdir:
        return os.path.join(workdir, "data_cache")
    return str(pathlib.Path("~/.cache/outeffhop/data").expanduser())


def _record(examples, i, rng):
    return examples(int(i), rng)


def _pipeline(examples, n, *, train, seed, num_epochs, global_batch, pi, pc) -> grain.MapDataset:
    """Index -> example pipeline: shuffle/repeat (train) or pad (eval), per-record RNG, shard.

    The RNG of a record depends on (seed, global stream index) only, and each process takes
    rows pi, pi + pc, ... of the global stream, so the process shards of global batch b are
    disjoint and together are exactly the single-process batch b.
    """
    if train:
        ds = grain.MapDataset.range(n).shuffle(seed=seed).repeat(num_epochs or None)
        if num_epochs:  # equal batch counts on every process
            ds = ds[: (n * num_epochs // global_batch) * global_batch]
    else:
        ds = grain.MapDataset.range(-(-n // global_batch) * global_batch)
    ds = ds.random_map(functools.partial(_record, examples), seed=seed)
    return ds[pi::pc].batch(global_batch // pc, drop_remainder=True)


def _text_examples(dcfg, train: bool, cache_dir: str):
    text_data.check_text_config(dcfg)
    return text_data.cache_examples(dcfg, train, cache_dir)


def _image_examples(dcfg, train: bool):
    if dcfg.objective != "classification":
        raise ValueError(
            f"data.objective must be classification for {dcfg.name!r}, got {dcfg.objective!r}."
        )
    if dcfg.name == "digits":
        x, y = images.load_digits_images(dcfg.image_size)
        tr, va = images.split_indices(len(y), dcfg.val_fraction, dcfg.split_seed)
        mean, std = float(x[tr].mean()), float(x[tr].std())

        def load(i):
            return x[i], y[i]

        shape, num_classes = x.shape[1:], 10
        takes_rng = False
    else:
        train_dir, val_dir = images.split_folders(dcfg.path)
        files, y, classes = images.list_image_folder(train_dir)
        if val_dir is None:  # no val/ folder: hold out data.val_fraction of the images
            tr, va = images.split_indices(len(y), dcfg.val_fraction, dcfg.split_seed)
        elif train:
            tr = np.arange(len(y))
        else:
            files, y, _ = images.list_image_folder(val_dir, classes)
            va = np.arange(len(y))
        aug = {
            k: dcfg.get(k, d)
            for k, (d, _) in images.AUGMENT_FIELDS.items()
            if k in images.FolderLoader.__dataclass_fields__
        }
        aug["crop_scale"], aug["crop_ratio"] = tuple(aug["crop_scale"]), tuple(aug["crop_ratio"])
        load = images.folder_loader(
            files, y, dcfg.image_size, dcfg.channels, train_aug=train, **aug
        )
        mean, std = images.FOLDER_MEAN, images.FOLDER_STD
        shape, num_classes = (dcfg.image_size, dcfg.image_size, dcfg.channels), len(classes)
        takes_rng = True
    shift = dcfg.image_size // 8 if (dcfg.augment and train) else 0
    examples = images.ImageExamples(
        load, tr if train else va, tuple(shape), mean, std, shift, takes_rng
    )
    info = dict(num_classes=num_classes, image_shape=tuple(shape), mean=mean, std=std)
    return examples, info


def make_dataset(
    config,
    split: str,
    *,
    workdir: str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
) -> tuple[grain.MapDataset, DataInfo]:
    """A grain MapDataset of batches (dicts of numpy arrays) for `split`, and its DataInfo.

    `config` is the experiment ConfigDict (its `.data` is read) or the data ConfigDict.
    `batch_size` (global) and `seed` override `data.batch_size` / `data.seed`. train:
    shuffled, `num_epochs` passes (0 or None = forever); eval/val: one ordered pass padded to full
    batches. `iter(ds)` is checkpointable (get_state/set_state, grain.checkpoint).
    """
    dcfg = config.data if "data" in config else config
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if dcfg.name not in DATASETS:
        raise ValueError(f"data.name must be one of {DATASETS}, got {dcfg.name!r}.")
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}.")
    global_batch = dcfg.batch_size if batch_size is None else batch_size
    if global_batch < 1 or global_batch % process_count:
        raise ValueError(
            f"data.batch_size must be a positive multiple of process_count={process_count}, "
            f"got {global_batch}."
        )
    seed = dcfg.seed if seed is None else seed
    if not 0 <= seed < 2**32:
        raise ValueError(f"data.seed must be in [0, 2**32), got {seed}.")
    train = split == "train"
    if split == "test" and dcfg.name != "timeseries":
        raise ValueError(f"split 'test' exists for time series only; got data.name {dcfg.name!r}.")
    shard_ds = None
    if dcfg.name == "timeseries":
        examples, extra = _timeseries_examples(dcfg, split)
    elif dcfg.name == "canvas_digits":
        examples, extra = synthetic_images.canvas_digits(dcfg, train)
    elif dcfg.name in IMAGE_DATASETS:
        examples, extra = _image_examples(dcfg, train)
    elif dcfg.get("format", "cache") == "shards":
        text_data.check_text_config(dcfg)
        shard_ds, n, extra = text_data.shard_dataset(
            dcfg, train, global_batch=global_batch, seed=seed,
            process_index=process_index, process_count=process_count,
        )  # fmt: skip
    else:
        examples, extra = _text_examples(dcfg, train, _cache_dir(dcfg, workdir))
    if shard_ds is None:
        n = examples.num_examples
    if n < (global_batch if train else 1):
        raise ValueError(
            f"data: the {split} split of {dcfg.name!r} has {n} examples, fewer than one batch of "
            f"{global_batch}; use a larger corpus, a smaller seq_len or batch_size."
        )
    if shard_ds is not None:
        ds = shard_ds
    else:
        ds = _pipeline(
            examples, n, train=train, seed=seed, num_epochs=dcfg.num_epochs,
            global_batch=global_batch, pi=process_index, pc=process_count,
        )  # fmt: skip
    if dcfg.name in IMAGE_DATASETS:
        ds = images.batch_stage(
            ds,
            dcfg,
            train=train,
            seed=seed,
            global_batch=global_batch,
            pi=process_index,
            pc=process_count,
            num_classes=extra["num_classes"],
        )
    info = DataInfo(
        objective=dcfg.objective,
        batch_size=global_batch // process_count,
        global_batch_size=global_batch,
        num_examples=n,
        steps_per_epoch=(n if train else -(-n // global_batch) * global_batch) // global_batch,
        **extra,
    )
    return ds, info
