"""Model presets (paper sizes and tiny CPU sizes) as ml_collections ConfigDicts, and checks."""

from __future__ import annotations

import jax
import ml_collections

from outeffhop.models.blocks import ACTIVATIONS
from outeffhop.nn.attention import attention_config, check_attention_config
from outeffhop.nn.dropout import MASKS, config_masks

TRANSFORMERS = ("bert", "opt", "vit")
OBJECTIVES = {"bert": "mlm", "opt": "causal_lm", "vit": "classification"}
DTYPES = ("float32", "bfloat16", "float16", "float64")  # float64 needs jax_enable_x64


def _base(model: str, **sizes) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.model = model  # bert | opt | vit: the module build_model makes
    cfg.objective = OBJECTIVES[model]  # mlm | causal_lm | classification: picks loss_fn
    cfg.num_layers = sizes["num_layers"]  # transformer layers
    cfg.d_model = sizes["d_model"]  # residual width D
    cfg.num_heads = sizes["num_heads"]  # attention heads H (D % H == 0)
    cfg.d_ff = sizes["d_ff"]  # FFN hidden width
    cfg.activation = {"opt": "relu"}.get(model, "gelu")  # gelu | gelu_tanh | relu
    cfg.layer_norm_eps = {"bert": 1e-12, "opt": 1e-5, "vit": 1e-6}[model]  # LayerNorm epsilon
    cfg.hidden_dropout = sizes.get("hidden_dropout", 0.0)  # embeddings, residual branches
    cfg.attention_dropout = sizes.get("attention_dropout", 0.0)  # on attention weights
    cfg.dropout_masks = "hash"  # hash (keyed index hash, fast) | bernoulli (= nn.Dropout's)
    cfg.dtype = "float32"  # compute dtype: float32 | bfloat16 | float16
    cfg.param_dtype = "float32"  # parameter dtype
    cfg.attention = attention_config(**_ATTENTION_DEFAULTS[model])  # normalizer, gate, sink
    if model in ("bert", "opt"):
        cfg.vocab_size = sizes["vocab_size"]  # token vocabulary V (set it to the tokenizer's)
        cfg.max_len = sizes["max_len"]  # position table length: longest sequence accepted
    if model == "opt":
        cfg.position_offset = 0  # table rows before position 0 (HF OPT checkpoints: 2)
    if model == "bert":
        cfg.type_vocab_size = 2  # token type (segment A/B) table; 0 = none
    if model == "vit":
        cfg.image_size = sizes["image_size"]  # square input side S
        cfg.patch_size = sizes["patch_size"]  # patch side p (S % p == 0)
        cfg.num_channels = sizes["num_channels"]  # input channels C
        cfg.num_classes = sizes["num_classes"]  # classifier outputs
    return cfg


# Clipped-softmax and gate presets of Bondarenko et al. (2023) (docs/baselines.md).
_ATTENTION_DEFAULTS = {
    "bert": dict(gamma=-0.025, zeta=1.0, gate_init=0.5),
    "opt": dict(gamma=-12.0 / 512, zeta=1.0, gate_init=0.25),  # alpha=12, T=512
    "vit": dict(gamma=-1e-5, zeta=1.0, gate_init=0.25),
}

_TINY = dict(num_layers=2, d_model=32, num_heads=4, d_ff=64)
_PRESETS = {
    "bert-base": (
        "bert",
        dict(
            num_layers=12,
            d_model=768,
            num_heads=12,
            d_ff=3072,
            vocab_size=30522,
            max_len=512,
            hidden_dropout=0.1,
            attention_dropout=0.1,
        ),
    ),
    "bert-tiny": ("bert", dict(_TINY, vocab_size=512, max_len=64)),
    "opt-125m": (
        "opt",
        dict(
            num_layers=12,
            d_model=768,
            num_heads=12,
            d_ff=3072,
            vocab_size=50272,
            max_len=2048,
            hidden_dropout=0.1,
        ),
    ),
    "opt-tiny": ("opt", dict(_TINY, vocab_size=512, max_len=64)),
    "vit-s/16": (
        "vit",
        dict(
            num_layers=12,
            d_model=384,
            num_heads=6,
            d_ff=1536,
            image_size=224,
            patch_size=16,
            num_channels=3,
            num_classes=1000,
        ),
    ),
    "vit-tiny": (
        "vit",
        dict(_TINY, image_size=8, patch_size=2, num_channels=1, num_classes=10),
    ),
}
_STANHOP = {"stanhop": "paper", "stanhop-tiny": "tiny"}
PRESETS = (*_PRESETS, *_STANHOP)


def get_config(preset: str, **overrides) -> ml_collections.ConfigDict:
    """A fresh model ConfigDict for ``preset`` (see PRESETS), top-level fields overridden."""
    if preset in _STANHOP:
        from outeffhop.models import stanhop

        return stanhop.get_config(_STANHOP[preset], **overrides)
    if preset not in _PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}.")
    model, sizes = _PRESETS[preset]
    cfg = _base(model, **sizes)
    for key, value in overrides.items():
        if key not in cfg:
            raise ValueError(f"unknown model config field {key!r} for preset {preset!r}.")
        if key == "attention":
            cfg.attention.update(value)
        else:
            cfg[key] = value
    return cfg


def _positive(cfg, *names):
    for name in names:
        if not (isinstance(cfg[name], int) and cfg[name] > 0):
            raise ValueError(f"{name} must be a positive integer; got {cfg[name]!r}.")


def check_config(cfg) -> None:
    """Raises ValueError naming the first bad field of a BERT, OPT or ViT model config."""
    if cfg.get("model") not in TRANSFORMERS:
        raise ValueError(
            f"model must be one of {', '.join(TRANSFORMERS)}; got {cfg.get('model')!r}."
        )
    _positive(cfg, "num_layers", "d_model", "num_heads", "d_ff")
    if cfg.d_model % cfg.num_heads:
        raise ValueError(
            f"d_model must be divisible by num_heads; got {cfg.d_model} and {cfg.num_heads}."
        )
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {', '.join(ACTIVATIONS)}; got {cfg.activation!r}."
        )
    for name in ("dtype", "param_dtype"):
        if cfg[name] not in DTYPES:
            raise ValueError(f"{name} must be one of {', '.join(DTYPES)}; got {cfg[name]!r}.")
        if cfg[name] == "float64" and not jax.config.jax_enable_x64:
            raise ValueError(
                f"{name} float64 needs jax_enable_x64 (e.g. `with jax.enable_x64():`)."
            )
    for name in ("hidden_dropout", "attention_dropout"):
        if not 0.0 <= cfg[name] < 1.0:
            raise ValueError(f"{name} must lie in [0, 1); got {cfg[name]}.")
    if config_masks(cfg) not in MASKS:
        raise ValueError(
            f"dropout_masks must be one of {', '.join(MASKS)}; got {cfg.dropout_masks!r}."
        )
    if cfg.model in ("bert", "opt"):
        _positive(cfg, "vocab_size", "max_len")
    offset = cfg.get("position_offset", 0)
    if not (isinstance(offset, int) and offset >= 0):
        raise ValueError(f"position_offset must be a non-negative integer; got {offset!r}.")
    if cfg.model == "vit":
        _positive(cfg, "image_size", "patch_size", "num_channels", "num_classes")
        if cfg.image_size % cfg.patch_size:
            raise ValueError(
                f"image_size must be divisible by patch_size; got {cfg.image_size} "
                f"and {cfg.patch_size}."
            )
    check_attention_config(cfg.attention, cfg.d_model // cfg.num_heads)
