"""Logical axis names of the models' parameters and mesh rules for DP and FSDP."""

from __future__ import annotations

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
)
PARALLELISMS = ("dp", "fsdp")


def logical_axis_rules(parallelism: str = "fsdp", data_axis: str = "data"):
    """Rules ((logical_name, mesh_axis | None), ...) for nn.logical_to_mesh_sharding.

    ``dp``: all parameters replicated. ``fsdp``: each parameter's ``embed`` axis sharded
    over ``data_axis`` (d_model must be divisible by the axis size); ``batch`` is listed
    too so activation annotations, if a caller adds them, follow the data axis.
    """
    if parallelism not in PARALLELISMS:
        raise ValueError(f"parallelism must be one of dp, fsdp; got {parallelism!r}.")
    shard = {"embed": data_axis} if parallelism == "fsdp" else {}
    return (("batch", data_axis),) + tuple((name, shard.get(name)) for name in LOGICAL_AXES)
