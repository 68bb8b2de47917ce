"""`make_dataset(config, split)`: grain pipelines of batches for every data set, found by name."""

import dataclasses
import os
import pathlib

import grain
import ml_collections

from outeffhop.data import corpus, images, synthetic_images, text, timeseries, tokenizer

IMAGE_DATASETS = ("digits", "image_folder", "canvas_digits")
DATASETS = (*corpus.TEXT_CORPORA, *IMAGE_DATASETS, "timeseries")
TASKS = ("mlm", "clm", "classification", "forecast")
SPLITS = ("train", "eval", "val", "test")  # test: time series only


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model and trainer need to know about a pipeline; fields that do not apply are None."""

    task: str
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
    d.task = preset if preset in ("mlm", "clm") else "classification"  # mlm | clm | classification
    d.path = ""  # text_files: file or folder; image_folder: folder of class subfolders
    d.tokenizer = "auto"  # wordpiece | bytelevel_bpe | auto (wordpiece for mlm, bpe for clm)
    d.vocab_size = 8192  # tokenizer vocabulary size (trained locally, cached)
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
    d.cache_dir = ""  # tokenizer/corpus cache; "" = <workdir>/data_cache or ~/.cache/outeffhop
    return d


def _timeseries_config() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.name = "timeseries"  # forecasting windows (outeffhop.data.timeseries)
    d.task = "forecast"  # rows {"x" [seq_len, D], "y" [pred_len, D], "weight"}
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
    if dcfg.task != "forecast":
        raise ValueError(f"data.task must be forecast for {dcfg.name!r}, got {dcfg.task!r}.")
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
    ds = ds.random_map(lambda i, rng: examples(int(i), rng), seed=seed)
    return ds[pi::pc].batch(global_batch // pc, drop_remainder=True)


def _text_examples(dcfg, train: bool, cache_dir: str):
    if dcfg.task not in ("mlm", "clm"):
        raise ValueError(
            f"data.task must be mlm or clm for text data {dcfg.name!r}, got {dcfg.task!r}."
        )
    if dcfg.seq_len < 4:
        raise ValueError(f"data.seq_len must be >= 4, got {dcfg.seq_len}.")
    if not 0 <= dcfg.get("max_predictions", 0) <= dcfg.seq_len - 2:
        raise ValueError(
            f"data.max_predictions must be in [0, seq_len - 2 = {dcfg.seq_len - 2}], "
            f"got {dcfg.max_predictions}."
        )
    kind = dcfg.tokenizer
    if kind == "auto":
        kind = "wordpiece" if dcfg.task == "mlm" else "bytelevel_bpe"
    train_docs, val_docs = corpus.load_split_documents(dcfg, cache_dir)
    tok, tok_path = tokenizer.cached_tokenizer(
        kind, train_docs, dcfg.vocab_size, corpus.docs_hash(train_docs), cache_dir
    )
    ids = tokenizer.special_ids(tok, kind)
    cls_id, sep_id = (ids["cls"], ids["sep"]) if kind == "wordpiece" else (ids["bos"], ids["eos"])
    docs = train_docs if train else val_docs
    stream = tokenizer.cached_token_stream(
        tok, tok_path, docs, corpus.docs_hash(docs), sep_id, cache_dir
    )
    vocab = tok.get_vocab_size()
    if dcfg.task == "mlm":
        examples = text.MlmExamples(
            stream, dcfg.seq_len, cls_id, sep_id, ids["pad"], ids["mask"], vocab,
            dcfg.mask_prob, dcfg.mask_token_frac, dcfg.random_token_frac,
            len(tokenizer.SPECIAL_TOKENS[kind]), dcfg.get("max_predictions", 0),
        )  # fmt: skip
    else:
        examples = text.ClmExamples(stream, dcfg.seq_len, sep_id, ids["pad"])
    info = dict(
        seq_len=dcfg.seq_len, vocab_size=vocab, pad_id=ids["pad"], mask_id=ids["mask"],
        cls_id=cls_id, sep_id=sep_id, eos_id=sep_id, tokenizer_path=tok_path,
    )  # fmt: skip
    return examples, info


def _image_examples(dcfg, train: bool):
    if dcfg.task != "classification":
        raise ValueError(f"data.task must be classification for {dcfg.name!r}, got {dcfg.task!r}.")
    if dcfg.name == "digits":
        x, y = images.load_digits_images(dcfg.image_size)
        tr, va = images.split_indices(len(y), dcfg.val_fraction, dcfg.split_seed)
        mean, std = float(x[tr].mean()), float(x[tr].std())

        def load(i):
            return x[i], y[i]

        shape, num_classes = x.shape[1:], 10
    else:
        files, y, classes = images.list_image_folder(dcfg.path)
        load = images.folder_loader(files, y, dcfg.image_size, dcfg.channels)
        tr, va = images.split_indices(len(y), dcfg.val_fraction, dcfg.split_seed)
        mean, std = images.FOLDER_MEAN, images.FOLDER_STD
        shape, num_classes = (dcfg.image_size, dcfg.image_size, dcfg.channels), len(classes)
    shift = dcfg.image_size // 8 if (dcfg.augment and train) else 0
    examples = images.ImageExamples(load, tr if train else va, tuple(shape), mean, std, shift)
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
    if dcfg.name == "timeseries":
        examples, extra = _timeseries_examples(dcfg, split)
    elif dcfg.name == "canvas_digits":
        examples, extra = synthetic_images.canvas_digits(dcfg, train)
    elif dcfg.name in IMAGE_DATASETS:
        examples, extra = _image_examples(dcfg, train)
    else:
        examples, extra = _text_examples(dcfg, train, _cache_dir(dcfg, workdir))
    n = examples.num_examples
    if n < (global_batch if train else 1):
        raise ValueError(
            f"data: the {split} split of {dcfg.name!r} has {n} examples, fewer than one batch of "
            f"{global_batch}; use a larger corpus, a smaller seq_len or batch_size."
        )
    ds = _pipeline(
        examples, n, train=train, seed=seed, num_epochs=dcfg.num_epochs,
        global_batch=global_batch, pi=process_index, pc=process_count,
    )  # fmt: skip
    info = DataInfo(
        task=dcfg.task,
        batch_size=global_batch // process_count,
        global_batch_size=global_batch,
        num_examples=n,
        steps_per_epoch=(n if train else -(-n // global_batch) * global_batch) // global_batch,
        **extra,
    )
    return ds, info
