"""Offline data: corpora, tokenizers, token shards, MLM/CLM and image grain pipelines."""

from outeffhop.data.corpus import (
    load_split_documents,
    split_documents,
    stdlib_documents,
    text_file_documents,
)
from outeffhop.data.images import load_digits_images
from outeffhop.data.registry import DATASETS, DataInfo, get_data_config, make_dataset
from outeffhop.data.text import IGNORE, ClmExamples, MlmExamples, mask_tokens
from outeffhop.data.tokenizer import (
    all_special_ids,
    cached_tokenizer,
    load_tokenizer,
    special_ids,
    train_tokenizer,
)

__all__ = [
    "DATASETS",
    "IGNORE",
    "all_special_ids",
    "ClmExamples",
    "DataInfo",
    "MlmExamples",
    "cached_tokenizer",
    "get_data_config",
    "load_digits_images",
    "load_split_documents",
    "load_tokenizer",
    "make_dataset",
    "mask_tokens",
    "special_ids",
    "split_documents",
    "stdlib_documents",
    "text_file_documents",
    "train_tokenizer",
]
