"""Hugging Face checkpoints in and out: BertForMaskedLM, OPTForCausalLM, ViTForImageClassification.

``cfg, variables = from_hf(path)`` reads a local ``save_pretrained`` folder (config.json and
model.safetensors, or a sharded index) with safetensors' numpy API (no torch), maps
config.json onto a model config (sizes, vocabulary, position table, LayerNorm eps,
activation, dropout) and the tensors onto the model's parameters (Linear weights
transposed, the patch conv from NCHW to HWIO). ``normalizer`` (or any model config field as
a keyword, e.g. ``attention=dict(gate=...)``, ``dtype="float64"``) picks the attention of
the imported model: parameters the checkpoint has no tensor for (head gates, sinks) keep
their initial values. ``to_hf(cfg, variables, path)`` writes the way back: the tensors
``save_pretrained`` would write (tied ones left out) and a config.json transformers loads.
Names of the tensors and their layout: docs/pretrained.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from absl import logging
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from outeffhop.models import hf_maps
from outeffhop.models.presets import get_config

FAMILIES = ("bert", "opt", "vit")
_TINY = {"bert": "bert-tiny", "opt": "opt-tiny", "vit": "vit-tiny"}
# HF activation name -> ours (gelu: erf form; gelu_new / gelu_pytorch_tanh: tanh form).
HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}
EXPORT_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
SPECIAL_TOKENS = ("pad", "bos", "eos", "unk", "cls", "sep", "mask", "decoder_start")


def read_config(path: str) -> dict:
    """config.json of a ``save_pretrained`` folder as a dict; ValueError when absent."""
    file = os.path.join(os.path.expanduser(path), "config.json")
    if not os.path.isfile(file):
        raise ValueError(f"path {path!r} holds no config.json; give a save_pretrained folder.")
    with open(file) as f:
        hf = json.load(f)
    if hf.get("model_type") not in FAMILIES:
        raise ValueError(
            f"config.json model_type must be one of {', '.join(FAMILIES)}; "
            f"got {hf.get('model_type')!r}."
        )
    return hf


def _read_safetensors(file: str) -> dict[str, np.ndarray]:
    """safetensors.numpy.load_file; bfloat16 files (numpy has no bfloat16) via ml_dtypes."""
    try:
        return load_file(file)
    except TypeError:  # "data type 'bfloat16' not understood"
        pass
    with open(file, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        data = f.read()
    dtypes = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32}
    dtypes.update(F64=np.float64, I64=np.int64)
    out = {}
    for key, info in header.items():
        if key != "__metadata__":
            start, end = info["data_offsets"]
            dt = dtypes.get(info["dtype"])
            if dt is None:
                raise ValueError(f"{file}: tensor {key!r} has unsupported dtype {info['dtype']}.")
            out[key] = np.frombuffer(data[start:end], dt).reshape(info["shape"])
    return out


def load_weights(path: str) -> dict[str, np.ndarray]:
    """{tensor name: array} of model.safetensors (or every shard of its index.json)."""
    path = os.path.expanduser(path)
    single = os.path.join(path, "model.safetensors")
    index = single + ".index.json"
    if os.path.isfile(single):
        return _read_safetensors(single)
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        out = {}
        for name in files:
            out.update(_read_safetensors(os.path.join(path, name)))
        return out
    raise ValueError(
        f"path {path!r} holds no model.safetensors (or its index); save the model with "
        "save_pretrained(..., safe_serialization=True)."
    )


def special_token_ids(hf: dict) -> dict[str, int]:
    """{"pad": id, "bos": id, ...}: the ``<name>_token_id`` fields config.json sets."""
    ids = {name: hf.get(f"{name}_token_id") for name in SPECIAL_TOKENS}
    return {k: v for k, v in ids.items() if isinstance(v, int)}


def checkpoint_info(path: str) -> dict[str, Any]:
    """What a trainer needs besides the weights: family, vocabulary size, special token ids."""
    hf = read_config(path)
    return {
        "family": hf["model_type"],
        "vocab_size": hf.get("vocab_size"),
        "special_token_ids": special_token_ids(hf),
    }


def _activation(hf: dict, field: str) -> str:
    name = hf.get(field, "gelu")
    if name not in HF_ACTIVATIONS:
        raise ValueError(
            f"config.json {field} must be one of {', '.join(HF_ACTIVATIONS)}; got {name!r}."
        )
    return HF_ACTIVATIONS[name]


def _check_supported(hf: dict) -> None:
    """Raises ValueError for variants the project's models do not have."""
    family = hf["model_type"]
    required = {
        "bert": dict(position_embedding_type="absolute", is_decoder=False),
        "opt": dict(do_layer_norm_before=True, _remove_final_layer_norm=False, enable_bias=True),
        "vit": dict(qkv_bias=True),
    }[family]
    required["add_cross_attention"] = False
    if family == "opt":
        required["layer_norm_elementwise_affine"] = True
        proj = hf.get("word_embed_proj_dim")
        if proj is not None and proj != hf["hidden_size"]:
            raise ValueError(
                f"config.json word_embed_proj_dim must equal hidden_size {hf['hidden_size']} "
                f"(350m-style project_in/project_out is not supported); got {proj}."
            )
    for field, want in required.items():
        if hf.get(field, want) != want:
            raise ValueError(
                f"config.json {field} must be {want!r} for {family} (the supported "
                f"architecture); got {hf[field]!r}."
            )
    for field in ("activation_dropout", "layerdrop"):
        if hf.get(field, 0.0):
            logging.warning("config.json %s=%s is not modelled; it is ignored.", field, hf[field])


def model_config(hf: dict, normalizer: str = "softmax", **overrides):
    """The model config of an HF config.json dict, ``attention.normalizer`` set, overridden."""
    _check_supported(hf)
    family = hf["model_type"]
    sizes = dict(
        num_layers=hf["num_hidden_layers"],
        d_model=hf["hidden_size"],
        num_heads=hf["num_attention_heads"],
    )
    if family == "opt":
        sizes.update(
            d_ff=hf["ffn_dim"],
            activation=_activation(hf, "activation_function"),
            layer_norm_eps=1e-5,  # torch's LayerNorm default; OPTConfig has no field for it
            hidden_dropout=float(hf.get("dropout", 0.1)),
            attention_dropout=float(hf.get("attention_dropout", 0.0)),
            vocab_size=hf["vocab_size"],
            max_len=hf["max_position_embeddings"],
            position_offset=2,
        )
    else:
        sizes.update(
            d_ff=hf["intermediate_size"],
            activation=_activation(hf, "hidden_act"),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
            hidden_dropout=float(hf.get("hidden_dropout_prob", 0.0)),
            attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.0)),
        )
    if family == "bert":
        sizes.update(
            vocab_size=hf["vocab_size"],
            max_len=hf["max_position_embeddings"],
            type_vocab_size=hf.get("type_vocab_size", 2),
        )
    if family == "vit":
        labels = hf.get("id2label")
        sizes.update(
            image_size=hf["image_size"],
            patch_size=hf["patch_size"],
            num_channels=hf.get("num_channels", 3),
            num_classes=len(labels) if labels else hf.get("num_labels", 2),
        )
    attention = {"normalizer": normalizer, **overrides.pop("attention", {})}
    return get_config(_TINY[family], **sizes, attention=attention, **overrides)


def _example_inputs(cfg) -> dict:
    from outeffhop import models

    return models.dummy_inputs(cfg, batch_size=1, seq_len=min(cfg.get("max_len", 8), 8))


def _abstract_params(model, cfg) -> dict:
    """{path: ShapeDtypeStruct} of the model's parameters (traced, nothing computed)."""
    inputs = _example_inputs(cfg)
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), **inputs))
    return traverse_util.flatten_dict(nn.meta.unbox(boxed)["params"], sep="/")


def _fill_missing(model, cfg, params: dict, abstract: dict, rng) -> None:
    """Initial values (from ``rng``) for parameters no checkpoint tensor set: gates, sinks."""
    missing = [k for k in abstract if k not in params]
    if not missing:
        return
    unexpected = [k for k in missing if not hf_maps.is_attention_extra(k)]
    if unexpected:
        raise ValueError(f"no checkpoint tensor maps to parameter {unexpected[0]!r}.")
    inputs = _example_inputs(cfg)
    rng = jax.random.key(0) if rng is None else rng

    def init_missing(r):  # only the missing leaves are outputs: XLA drops the rest
        fresh = nn.meta.unbox(model.init(r, **inputs))["params"]
        return {k: v for k, v in traverse_util.flatten_dict(fresh, sep="/").items() if k in missing}

    params.update(jax.jit(init_missing)(rng))


# Model config fields that describe the architecture (all read from config.json).
ARCHITECTURE = (
    "model",
    "num_layers",
    "d_model",
    "num_heads",
    "d_ff",
    "activation",
    "layer_norm_eps",
    "vocab_size",
    "max_len",
    "type_vocab_size",
    "position_offset",
    "image_size",
    "patch_size",
    "num_channels",
    "num_classes",
)


def load_params(cfg, path: str, rng=None) -> dict:
    """The parameters of a ``cfg`` model from the HF checkpoint at ``path``.

    ``cfg``'s architecture fields (ARCHITECTURE) must be those of the checkpoint's
    config.json (``model_config``); the rest (attention, dropout, dtypes) is free.
    Parameters the checkpoint cannot hold (head gates, sinks) are initialized from ``rng``
    (default key 0). Raises ValueError for unsupported variants (OPT with project_in/out
    or post-LN, BERT with relative positions, ...), another architecture, tensors of
    another shape, tensors the model has no place for, and missing tensors.
    """
    from outeffhop import models

    expected = model_config(read_config(path))
    for field in ARCHITECTURE:
        if expected.get(field) != cfg.get(field):
            raise ValueError(
                f"model config {field} is {cfg.get(field)!r} but the checkpoint at {path!r} "
                f"has {expected.get(field)!r}; build the config with models.hf.model_config."
            )
    model = models.build_model(cfg)
    abstract = _abstract_params(model, cfg)
    weights = hf_maps.canonical_names(load_weights(path))
    params = {}
    for target, key, kind in hf_maps.mapping(cfg):
        if key not in weights:
            raise ValueError(f"checkpoint {path!r} has no tensor {key!r} (for {target}).")
        value = hf_maps.to_project(weights[key], kind)
        want = abstract[target]
        if value.shape != want.shape:
            raise ValueError(
                f"checkpoint tensor {key!r} has shape {weights[key].shape}; parameter {target} "
                f"needs {want.shape} (after {kind})."
            )
        params[target] = jnp.asarray(value, want.dtype)
    hf_maps.check_leftovers(cfg, weights, path)
    _fill_missing(model, cfg, params, abstract, rng)
    return traverse_util.unflatten_dict(params, sep="/")


def from_hf(path: str, normalizer: str = "softmax", *, rng=None, **overrides):
    """(model config, ``{"params": ...}``) of a local HF ``save_pretrained`` folder.

    ``normalizer`` sets ``attention.normalizer`` (softmax | softmax1 | clipped | ...: the
    weights do not depend on it); other keywords override model config fields that are not
    architecture (``attention`` is merged; ``dtype`` / ``param_dtype``, dropout rates).
    Errors: see ``load_params``.
    """
    cfg = model_config(read_config(path), normalizer, **overrides)
    return cfg, {"params": load_params(cfg, path, rng)}


def hf_config(cfg, *, strict: bool = True) -> dict:
    """config.json for ``cfg`` (see ``to_hf``)."""
    return hf_maps.config_json(cfg, EXPORT_ACTIVATIONS, strict)


def to_hf(cfg, variables, path: str, *, strict: bool = True, config_overrides=None) -> None:
    """Write ``variables`` of a ``cfg`` model as an HF ``save_pretrained`` folder at ``path``.

    model.safetensors holds the tensors HF's ``save_pretrained`` writes (tied decoder / lm
    head left out) in the parameters' dtype (float32 for bfloat16 / float64), config.json
    the architecture (``config_overrides`` merged last, e.g. special token ids or
    ``id2label``). HF runs softmax attention: a model with another normalizer raises
    ValueError unless ``strict=False`` (then config.json records ``outeffhop_normalizer``);
    gates and sinks have no HF parameter and always raise.
    """
    config = hf_config(cfg, strict=strict)
    config.update(config_overrides or {})
    params = variables.get("params", variables)
    flat = traverse_util.flatten_dict(nn.meta.unbox(params), sep="/")
    extras = [k for k in flat if hf_maps.is_attention_extra(k)]
    if extras:
        raise ValueError(f"parameter {extras[0]!r} (gate / sink) has no HF counterpart.")
    tensors = {}
    for target, key, kind in hf_maps.mapping(cfg):
        value = np.asarray(jax.device_get(flat[target]))
        if value.dtype not in (np.float32, np.float16):
            value = value.astype(np.float32)
        tensors[key] = np.ascontiguousarray(hf_maps.to_hf_layout(value, kind))
    tensors = hf_maps.export_fixups(cfg, tensors)
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
