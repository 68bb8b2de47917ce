"""Write the small random Hugging Face checkpoints of tests/fixtures/ (and cross-check them).

    pip install -e '.[hf]'       # transformers + torch (CPU); not needed to run the tests
    python scripts/make_hf_fixtures.py [--out tests/fixtures] [--check]

For each family (BertForMaskedLM, OPTForCausalLM, ViTForImageClassification) a tiny model
(2 layers, width 32) with every parameter redrawn at random (LayerNorm scales near 1, biases
and position rows non-zero: a swapped or transposed tensor changes the logits) is saved with
``save_pretrained`` to ``<out>/hf_<family>/`` (model.safetensors + config.json, ~100-200 KB),
and ``<out>/hf_<family>/expected.npz`` holds a fixed batch with HF's logits in float32 and
float64 (eager attention): BERT with padding and two token types, OPT left-padded (positions
from the attention mask), ViT at its own size and, with interpolate_pos_encoding, at 12x12
and 12x8. Runs in ~10 s on a CPU. ``--check`` then imports each checkpoint with
``outeffhop.models.hf.from_hf``, exports it back with ``to_hf``, loads the export with
transformers and prints the largest logit difference of each step (all ~1e-6 or less in float32).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile

import numpy as np
import torch
import transformers as tf

ATTENTION = "sdpa"  # float64 throughout (HF's eager OPT / ViT take the softmax in float32)
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)


def _configs() -> dict:
    return {
        "bert": tf.BertConfig(
            vocab_size=512, intermediate_size=64, max_position_embeddings=64, **SIZES
        ),
        "opt": tf.OPTConfig(
            vocab_size=512,
            ffn_dim=64,
            max_position_embeddings=64,
            word_embed_proj_dim=32,
            **SIZES,
        ),
        "vit": tf.ViTConfig(
            image_size=8,
            patch_size=2,
            num_channels=3,
            intermediate_size=64,
            num_labels=10,
            **SIZES,
        ),
    }


MODELS = {
    "bert": tf.BertForMaskedLM,
    "opt": tf.OPTForCausalLM,
    "vit": tf.ViTForImageClassification,
}


def randomize(model, seed: int) -> None:
    """Redraw every parameter: N(0, 0.2^2) matrices / tables, LayerNorm scale 1 + N(0, 0.1^2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            is_norm = re.search("layer_?norm", name, re.IGNORECASE) is not None
            if is_norm and name.endswith("weight"):
                value = 1.0 + 0.1 * noise
            elif name.endswith("bias"):
                value = 0.1 * noise
            else:
                value = 0.2 * noise
            p.copy_(value)


def batch(family: str, rng: np.random.Generator) -> dict:
    """The fixed inputs (numpy; images NCHW as HF takes them)."""
    if family == "vit":
        return {
            "pixel_values": rng.normal(size=(2, 3, 8, 8)),
            "pixel_values_12x12": rng.normal(size=(2, 3, 12, 12)),
            "pixel_values_12x8": rng.normal(size=(2, 3, 12, 8)),
        }
    ids = rng.integers(5, 512, size=(3, 10))
    mask = np.ones_like(ids)
    if family == "bert":
        mask[1, 7:] = 0  # right padding
        mask[2, 4:] = 0
        types = np.zeros_like(ids)
        types[:, 5:] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    mask[1, :3] = 0  # left padding, as HF batches generation
    mask[2, :6] = 0
    ids = np.where(mask == 1, ids, 1)  # OPT's pad id
    return {"input_ids": ids, "attention_mask": mask}


def hf_logits(model, family: str, inputs: dict, dtype) -> dict:
    """{name: logits} of the HF model in ``dtype`` on ``inputs``."""
    model = model.to(dtype).eval()
    out = {}
    with torch.no_grad():
        if family == "vit":
            for key in ("pixel_values", "pixel_values_12x12", "pixel_values_12x8"):
                x = torch.tensor(inputs[key], dtype=dtype)
                interp = key != "pixel_values"
                out[key.replace("pixel_values", "logits")] = model(
                    pixel_values=x, interpolate_pos_encoding=interp
                ).logits.numpy()
        else:
            kw = {k: torch.tensor(v) for k, v in inputs.items()}
            out["logits"] = model(**kw).logits.numpy()
    return out


def make(family: str, out: str, seed: int) -> str:
    """Save one random checkpoint and its expected.npz under ``out``; returns the folder."""
    torch.manual_seed(seed)
    model = MODELS[family](_configs()[family])
    model.config._attn_implementation = ATTENTION
    randomize(model, seed)
    folder = os.path.join(out, f"hf_{family}")
    model.to(torch.float32).save_pretrained(folder)
    inputs = batch(family, np.random.default_rng(seed))
    arrays = dict(inputs)
    for suffix, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        for k, v in hf_logits(model, family, inputs, dtype).items():
            arrays[f"{k}_{suffix}"] = v
    np.savez(os.path.join(folder, "expected.npz"), **arrays)
    return folder


def check(family: str, folder: str) -> None:
    """Import, export and reload with transformers; print the largest logit differences."""
    import jax.numpy as jnp

    from outeffhop import models
    from outeffhop.models import hf

    cfg, variables = hf.from_hf(folder)
    model = models.build_model(cfg)
    exp = dict(np.load(os.path.join(folder, "expected.npz")))
    if family == "vit":
        images = jnp.asarray(exp["pixel_values"].transpose(0, 2, 3, 1), jnp.float32)
        ours = np.asarray(model.apply(variables, images))
        inputs = {"pixel_values": exp["pixel_values"]}
    else:
        inputs = {k: exp[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in exp}
        ours = np.asarray(model.apply(variables, **{k: jnp.asarray(v) for k, v in inputs.items()}))
    real = exp["attention_mask"][..., None] > 0 if family != "vit" else True
    print(f"{family}: from_hf vs HF f32 {np.max(np.abs(ours - exp['logits_f32']) * real):.2e}")
    with tempfile.TemporaryDirectory() as tmp:
        hf.to_hf(cfg, variables, tmp)
        back, info = MODELS[family].from_pretrained(
            tmp, attn_implementation=ATTENTION, output_loading_info=True
        )
        problems = {k: v for k, v in info.items() if v}
        logits = hf_logits(back, family, {**exp, **inputs}, torch.float32)["logits"]
        err = np.max(np.abs(logits - exp["logits_f32"]) * real)
        print(f"{family}: to_hf -> transformers vs HF f32 {err:.2e}; loading issues {problems}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures")
    parser.add_argument("--check", action="store_true", help="round-trip through outeffhop")
    args = parser.parse_args()
    for seed, family in enumerate(MODELS):
        folder = make(family, args.out, seed)
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"{folder}: {size / 1024:.0f} KB")
        if args.check:
            check(family, folder)


if __name__ == "__main__":
    main()
