"""Logical axis names of parameters and activations, mesh rules (DP, FSDP, tensor parallel).

Parameters carry logical names through ``nn.with_logical_partitioning``; activations get
``constrain(x, names)`` at block boundaries. ``logical_axis_rules`` maps both onto a
``(data, model)`` mesh:

- ``batch`` (activations) -> ``data`` always: every device computes its own rows.
- ``embed`` (parameters) -> ``data`` under fsdp: parameters and optimizer moments are
  sharded, and XLA gathers each weight where an activation sharded by batch meets it.
- with a model axis (Megatron-style tensor parallelism): the column-parallel weights
  (query/key/value ``joined_kv``, ``ffn_in`` ``mlp``), the row-parallel weights (out_proj,
  ``ffn_out``: the same names on their input side), the heads, the vocabulary (embedding
  rows and the tied lm head's logits) -> ``model``; the residual stream between the blocks
  is split over ``model`` along the sequence (``act_seq``, sequence parallelism), so that no
  [B, L, D] activation is replicated over the tensor-parallel group.
"""

from __future__ import annotations

from outeffhop.nn.constraints import (
    FFN_HIDDEN,
    HEADS,
    LOGITS,
    RESIDUAL,
    activation_sharding,
    activation_spec,
    constrain,
)

# Every parameter axis carries one of these names (nn.with_logical_partitioning).
LOGICAL_AXES = (
    "vocab",  # token vocabulary V
    "embed",  # residual width D (exactly one per parameter that has a D axis)
    "hidden",  # a second D-sized axis (BERT's MLM transform output)
    "mlp",  # FFN hidden width
    "joined_kv",  # heads * head_dim (query/key/value output, out_proj input)
    "heads",  # attention heads H (sink logits, gates)
    "kv",  # head dim Dh (gates)
    "gate_hidden",  # gate MLP hidden width Dh // 4
    "pos",  # position table
    "type_vocab",  # BERT token types
    "classes",  # ViT classes
    "layers",  # the stacked layer axis of model.scan_layers=True
)
# Activation axes (``constrain``): distinct names, so that a parameter rule never moves them.
ACTIVATION_AXES = (
    "batch",  # examples B
    "act_length",  # tokens L
    "act_seq",  # tokens L of the residual stream (sequence parallel over model, if asked)
    "act_embed",  # residual width D
    "act_heads",  # heads H
    "act_kv",  # head dim Dh
    "act_mlp",  # FFN hidden width
    "act_vocab",  # logits V
)
PARALLELISMS = ("dp", "fsdp")
TENSOR_PARALLEL = (
    *("mlp", "joined_kv", "heads", "vocab"),
    *("act_seq", "act_heads", "act_mlp", "act_vocab"),
)


def logical_axis_rules(parallelism: str = "fsdp", data_axis: str = "data", model_axis=None):
    """Rules ((logical_name, mesh_axis | None), ...) for parameters and activations.

    ``dp``: parameters replicated over ``data_axis``. ``fsdp``: each parameter's ``embed``
    axis sharded over ``data_axis`` (d_model divisible by its size). ``batch`` follows
    ``data_axis`` in both. ``model_axis`` (None = no tensor parallelism) takes the names of
    ``TENSOR_PARALLEL``: heads, FFN width, head-joined projections and the vocabulary.
    """
    if parallelism not in PARALLELISMS:
        raise ValueError(f"parallelism must be one of dp, fsdp; got {parallelism!r}.")
    shard = {"embed": data_axis} if parallelism == "fsdp" else {}
    if model_axis is not None:
        shard.update({name: model_axis for name in TENSOR_PARALLEL})
    shard["batch"] = data_axis
    names = ACTIVATION_AXES[:1] + LOGICAL_AXES + ACTIVATION_AXES[1:]
    return tuple((name, shard.get(name)) for name in names)


__all__ = [
    "ACTIVATION_AXES",
    "FFN_HIDDEN",
    "HEADS",
    "LOGICAL_AXES",
    "LOGITS",
    "PARALLELISMS",
    "RESIDUAL",
    "TENSOR_PARALLEL",
    "activation_sharding",
    "activation_spec",
    "constrain",
    "logical_axis_rules",
]
