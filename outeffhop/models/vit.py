"""Vision Transformer for image classification (pre-LN), with pluggable attention."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from outeffhop.models.blocks import TransformerLayer, dense, dtypes, layer_norm
from outeffhop.models.presets import check_config
from outeffhop.nn.attention import INIT_STD, partitioned
from outeffhop.nn.dropout import Dropout, config_masks


def _cubic_weights(t: float, a: float = -0.75) -> tuple[float, float, float, float]:
    """Keys' cubic convolution weights of taps -1, 0, 1, 2 at fraction t in [0, 1).

    W(x) = (a + 2)|x|^3 - (a + 3)|x|^2 + 1 for |x| <= 1, a|x|^3 - 5a|x|^2 + 8a|x| - 4a for
    1 < |x| < 2; a = -0.75 is PyTorch's bicubic.
    """

    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix of 1-D bicubic resizing, align_corners=False (torch's rule).

    Output o samples x = (o + 1/2) n_in / n_out - 1/2: taps floor(x) - 1 .. floor(x) + 2,
    clamped to [0, n_in - 1], weighted by ``_cubic_weights(x - floor(x))``.
    """
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        x = (o + 0.5) * n_in / n_out - 0.5
        i = int(np.floor(x))
        for k, w in zip(range(-1, 3), _cubic_weights(x - i), strict=True):
            m[o, min(max(i + k, 0), n_in - 1)] += w
    return m


def interpolate_positions(pos_1ND, grid: int, new_grid: tuple[int, int]):
    """[1, 1 + g^2, D] table (CLS row first) -> [1, 1 + h w, D], patch rows resized bicubically.

    The g x g patch grid is resized to h x w (separably, ``bicubic_matrix`` per axis:
    out[a, b] = sum_ij Mh[a, i] Mw[b, j] grid[i, j]), as HF's ViT interpolate_pos_encoding
    does with torch's bicubic; the CLS row is kept.
    """
    if (grid, grid) == tuple(new_grid):
        return pos_1ND
    d = pos_1ND.shape[-1]
    patches = pos_1ND[0, 1:].reshape(grid, grid, d)
    mh, mw = (jnp.asarray(bicubic_matrix(grid, n), pos_1ND.dtype) for n in new_grid)
    resized = jnp.einsum("ai,bj,ijd->abd", mh, mw, patches).reshape(1, -1, d)
    return jnp.concatenate([pos_1ND[:, :1], resized], axis=1)


def _check_images(images, cfg, interpolate: bool) -> None:
    s, p, c = cfg.image_size, cfg.patch_size, cfg.num_channels
    if images.ndim == 4 and images.shape[3] == c:
        h, w = images.shape[1:3]
        if (h, w) == (s, s) or (interpolate and h % p == 0 and w % p == 0 and h and w):
            return
    raise ValueError(
        f"images must be [B, {s}, {s}, {c}] (image_size={s}, num_channels={c}), or [B, H, W, "
        f"{c}] with H, W multiples of patch_size={p} and interpolate_pos_encoding=True; "
        f"got shape {images.shape}."
    )


class ViT(nn.Module):
    """images [B, S, S, C] -> class logits [B, num_classes] read from the CLS token.

    ``patch_embedding`` (conv, stride = patch_size), CLS token ``cls``, learned
    ``position_embeddings`` [1, 1 + (S/p)^2, D], dropout, pre-LN layers ``layer_{i}``,
    ``final_ln`` and a linear ``head``. LayerNorm epsilon is ``layer_norm_eps``: 1e-6 in the
    presets, 1e-12 in models imported from HF (ViTConfig's default; ``models.hf``).

    ``interpolate_pos_encoding=True`` accepts [B, H, W, C] images of any size with H, W
    multiples of p: the patch rows of the position table are resized bicubically from
    (S/p)^2 to (H/p)(W/p) (``interpolate_positions``, HF's interpolate_pos_encoding).
    """

    config: Any

    @nn.compact
    def __call__(self, images, *, deterministic=True, interpolate_pos_encoding=False):
        cfg = self.config
        _check_images(images, cfg, interpolate_pos_encoding)
        p, d = cfg.patch_size, cfg.d_model
        x = nn.Conv(
            d,
            (p, p),
            strides=(p, p),
            padding="VALID",
            name="patch_embedding",
            kernel_init=partitioned(nn.initializers.lecun_normal(), (None, None, None, "embed")),
            bias_init=partitioned(nn.initializers.zeros, ("embed",)),
            **dtypes(cfg),
        )(images.astype(dtypes(cfg)["dtype"]))
        b, new_grid = x.shape[0], x.shape[1:3]
        x = x.reshape(b, -1, d)
        param_dtype = dtypes(cfg)["param_dtype"]
        cls = self.param(
            "cls", partitioned(nn.initializers.zeros, (None, None, "embed")), (1, 1, d), param_dtype
        )
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
        grid = cfg.image_size // p
        pos = self.param(
            "position_embeddings",
            partitioned(nn.initializers.normal(INIT_STD), (None, "pos", "embed")),
            (1, 1 + grid * grid, d),
            param_dtype,
        )
        pos = interpolate_positions(pos.astype(x.dtype), grid, new_grid)
        x = Dropout(cfg.hidden_dropout, masks=config_masks(cfg))(
            x + pos, deterministic=deterministic
        )
        for i in range(cfg.num_layers):
            x = TransformerLayer(cfg, pre_ln=True, name=f"layer_{i}")(
                x, deterministic=deterministic
            )
        x = layer_norm("final_ln", cfg)(x)
        return dense(cfg.num_classes, ("embed", "classes"), "head", cfg)(x[:, 0])


_L = r"layer_\d+"
# Module sets (path regexes). "paper": every module output but attention internals
# (query / key / value / gate).
OUTLIER_MODULES = {
    "paper": (
        "patch_embedding",
        _L,
        rf"{_L}/(attention_ln|ffn_ln|ffn_in|ffn_out)",
        rf"{_L}/attention/out_proj",
        "final_ln",
    ),
    "ffn": (rf"{_L}/ffn_out",),
    "layers": (_L,),
    "attention": (rf"{_L}/attention",),
}


def model_inputs(batch) -> dict:
    """``{"images": ...}`` from a batch with an ``image`` (or ``images``) entry."""
    return {"images": batch["image"] if "image" in batch else batch["images"]}


def build(config) -> ViT:
    """``ViT`` for a model config, after ``check_config``."""
    check_config(config)
    return ViT(config=ml_collections.FrozenConfigDict(config))
