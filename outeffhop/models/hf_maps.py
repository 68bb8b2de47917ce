"""Tensor-name maps between HF checkpoints and the models' parameters (used by ``models.hf``).

Each entry is (parameter path, HF tensor name, layout): "T" a Linear weight [out, in]
transposed to a Dense kernel [in, out], "conv" a Conv2d weight [out, in, kh, kw] to a Flax
kernel [kh, kw, in, out], "=" as is (biases, LayerNorm weight -> scale, embedding tables).
"""

from __future__ import annotations

import re

import numpy as np

# Tensors tied to another one in HF (never written by save_pretrained, checked when present).
TIED = {
    "bert": {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    },
    "opt": {"lm_head.weight": "model.decoder.embed_tokens.weight"},
    "vit": {},
}
# Tensors of other heads or buffers the models do not have (pooler, next-sentence head).
IGNORED = {
    "bert": (r"bert\.pooler\..*", r"cls\.seq_relationship\..*", r".*position_ids"),
    "opt": (r".*position_ids",),
    "vit": (r"vit\.pooler\..*", r"vit\.embeddings\.mask_token"),
}


def _dense(target: str, key: str) -> list[tuple[str, str, str]]:
    return [(f"{target}/kernel", f"{key}.weight", "T"), (f"{target}/bias", f"{key}.bias", "=")]


def _ln(target: str, key: str) -> list[tuple[str, str, str]]:
    return [(f"{target}/scale", f"{key}.weight", "="), (f"{target}/bias", f"{key}.bias", "=")]


def _attention(i: int, names: dict[str, str]) -> list[tuple[str, str, str]]:
    out = []
    for ours, theirs in names.items():
        out += _dense(f"layer_{i}/attention/{ours}", theirs)
    return out


def _bert(cfg) -> list[tuple[str, str, str]]:
    e = "bert.embeddings."
    m = [
        ("word_embeddings/embedding", e + "word_embeddings.weight", "="),
        ("position_embeddings/embedding", e + "position_embeddings.weight", "="),
    ]
    if cfg.type_vocab_size:
        m.append(("token_type_embeddings/embedding", e + "token_type_embeddings.weight", "="))
    m += _ln("embeddings_ln", e + "LayerNorm")
    for i in range(cfg.num_layers):
        p = f"bert.encoder.layer.{i}."
        a = p + "attention."
        m += _attention(
            i,
            {
                "query": a + "self.query",
                "key": a + "self.key",
                "value": a + "self.value",
                "out_proj": a + "output.dense",
            },
        )
        m += _ln(f"layer_{i}/attention_ln", a + "output.LayerNorm")
        m += _dense(f"layer_{i}/ffn_in", p + "intermediate.dense")
        m += _dense(f"layer_{i}/ffn_out", p + "output.dense")
        m += _ln(f"layer_{i}/output_ln", p + "output.LayerNorm")
    m += _dense("mlm_dense", "cls.predictions.transform.dense")
    m += _ln("mlm_ln", "cls.predictions.transform.LayerNorm")
    return m + [("mlm_bias", "cls.predictions.bias", "=")]


def _opt(cfg) -> list[tuple[str, str, str]]:
    d = "model.decoder."
    m = [
        ("word_embeddings/embedding", d + "embed_tokens.weight", "="),
        ("position_embeddings/embedding", d + "embed_positions.weight", "="),
    ]
    for i in range(cfg.num_layers):
        p = f"{d}layers.{i}."
        m += _ln(f"layer_{i}/attention_ln", p + "self_attn_layer_norm")
        m += _attention(i, {n: f"{p}self_attn.{n[0]}_proj" for n in ("query", "key", "value")})
        m += _dense(f"layer_{i}/attention/out_proj", p + "self_attn.out_proj")
        m += _ln(f"layer_{i}/ffn_ln", p + "final_layer_norm")
        m += _dense(f"layer_{i}/ffn_in", p + "fc1")
        m += _dense(f"layer_{i}/ffn_out", p + "fc2")
    return m + _ln("final_ln", d + "final_layer_norm")


def _vit(cfg) -> list[tuple[str, str, str]]:
    e = "vit.embeddings."
    m = [
        ("patch_embedding/kernel", e + "patch_embeddings.projection.weight", "conv"),
        ("patch_embedding/bias", e + "patch_embeddings.projection.bias", "="),
        ("cls", e + "cls_token", "="),
        ("position_embeddings", e + "position_embeddings", "="),
    ]
    for i in range(cfg.num_layers):
        p = f"vit.encoder.layer.{i}."
        a = p + "attention."
        names = {n: f"{a}attention.{n}" for n in ("query", "key", "value")}
        m += _ln(f"layer_{i}/attention_ln", p + "layernorm_before")
        m += _attention(i, {**names, "out_proj": a + "output.dense"})
        m += _ln(f"layer_{i}/ffn_ln", p + "layernorm_after")
        m += _dense(f"layer_{i}/ffn_in", p + "intermediate.dense")
        m += _dense(f"layer_{i}/ffn_out", p + "output.dense")
    return m + _ln("final_ln", "vit.layernorm") + _dense("head", "classifier")


def mapping(cfg) -> list[tuple[str, str, str]]:
    """[(parameter path "a/b/c", HF tensor name, layout)] of every mapped tensor of ``cfg``."""
    return {"bert": _bert, "opt": _opt, "vit": _vit}[cfg.model](cfg)


def to_project(value: np.ndarray, kind: str) -> np.ndarray:
    """An HF tensor in the parameter's layout."""
    if kind == "T":
        return value.T
    if kind == "conv":
        return value.transpose(2, 3, 1, 0)
    return value


def to_hf_layout(value: np.ndarray, kind: str) -> np.ndarray:
    """A parameter in the HF tensor's layout (the inverse of ``to_project``)."""
    if kind == "T":
        return value.T
    if kind == "conv":
        return value.transpose(3, 2, 0, 1)
    return value


def canonical_names(weights: dict) -> dict:
    """Legacy LayerNorm names (``LayerNorm.gamma`` / ``.beta``, old BERT files) as HF's now."""
    out = {}
    for key, value in weights.items():
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        out[re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)] = value
    return out


def is_attention_extra(path: str) -> bool:
    """Whether a parameter path is a head gate or attention sink (no HF tensor)."""
    return "/attention/gate/" in path or path.endswith("/attention/sink")


def check_leftovers(cfg, weights: dict, path: str) -> None:
    """Raises ValueError for a checkpoint tensor the model has no place for, or an untied copy.

    Tied tensors (BERT decoder, OPT lm_head) must equal what they are tied to: the models
    always tie their output layer to the word embeddings.
    """
    used = {key for _, key, _ in mapping(cfg)}
    ignored = re.compile("|".join(f"(?:{p})" for p in IGNORED[cfg.model]))
    for key, value in weights.items():
        if key in used or ignored.fullmatch(key):
            continue
        tied = TIED[cfg.model].get(key)
        if tied is None:
            raise ValueError(
                f"checkpoint {path!r} has a tensor {key!r} that no parameter of the "
                f"{cfg.model} model takes."
            )
        if not np.array_equal(value, weights[tied]):
            raise ValueError(
                f"checkpoint {path!r}: {key!r} differs from {tied!r}; only tied output layers "
                "are supported."
            )


def export_fixups(cfg, tensors: dict) -> dict:
    """Tensors HF needs that the model config leaves implicit.

    OPT: HF reads position row p + 2, so a table with ``position_offset`` < 2 gets zero rows
    in front. BERT without token types: a zero table of one row (adding it changes nothing).
    """
    if cfg.model == "opt":
        key = "model.decoder.embed_positions.weight"
        offset = cfg.get("position_offset", 0)
        if offset > 2:
            raise ValueError(f"position_offset must be at most 2 to export OPT; got {offset}.")
        table = tensors[key]
        pad = np.zeros((2 - offset, table.shape[1]), table.dtype)
        tensors[key] = np.concatenate([pad, table])
    if cfg.model == "bert" and not cfg.type_vocab_size:
        word = tensors["bert.embeddings.word_embeddings.weight"]
        tensors["bert.embeddings.token_type_embeddings.weight"] = np.zeros_like(word[:1])
    return tensors


def _common(cfg, act: str) -> dict:
    return dict(
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        **{("activation_function" if cfg.model == "opt" else "hidden_act"): act},
    )


def config_json(cfg, activations: dict[str, str], strict: bool) -> dict:
    """config.json fields (architecture, sizes, eps, dropout) of a model config."""
    if cfg.attention.normalizer != "softmax" and strict:
        raise ValueError(
            f"attention.normalizer {cfg.attention.normalizer!r} has no HF counterpart (HF runs "
            "softmax); pass strict=False to export the weights anyway."
        )
    out = _common(cfg, activations[cfg.activation])
    if cfg.model == "opt":
        if cfg.layer_norm_eps != 1e-5 and strict:
            raise ValueError(
                f"layer_norm_eps must be 1e-5 to export OPT; got {cfg.layer_norm_eps}."
            )
        out.update(
            architectures=["OPTForCausalLM"],
            model_type="opt",
            ffn_dim=cfg.d_ff,
            word_embed_proj_dim=cfg.d_model,
            vocab_size=cfg.vocab_size,
            max_position_embeddings=cfg.max_len,
            dropout=cfg.hidden_dropout,
            attention_dropout=cfg.attention_dropout,
            do_layer_norm_before=True,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        )
    else:
        out.update(
            intermediate_size=cfg.d_ff,
            layer_norm_eps=cfg.layer_norm_eps,
            hidden_dropout_prob=cfg.hidden_dropout,
            attention_probs_dropout_prob=cfg.attention_dropout,
        )
    if cfg.model == "bert":
        out.update(
            architectures=["BertForMaskedLM"],
            model_type="bert",
            vocab_size=cfg.vocab_size,
            max_position_embeddings=cfg.max_len,
            type_vocab_size=max(cfg.type_vocab_size, 1),
            pad_token_id=0,
        )
    if cfg.model == "vit":
        labels = {str(i): f"LABEL_{i}" for i in range(cfg.num_classes)}
        out.update(
            architectures=["ViTForImageClassification"],
            model_type="vit",
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            num_channels=cfg.num_channels,
            qkv_bias=True,
            id2label=labels,
            label2id={v: int(k) for k, v in labels.items()},
        )
    if cfg.attention.normalizer != "softmax":
        out["outeffhop_normalizer"] = cfg.attention.normalizer
    if cfg.model != "vit":
        out["tie_word_embeddings"] = True
    return out
