"""Quantizer sites: where in a Linen model an activation (or table lookup) is quantized.

A site is (module class regex, path regex, method, where); ``interceptor`` reaches every
matching call through ``nn.intercept_methods`` without model changes. Site names are
``path:method:in0`` / ``path:method:out0`` (``#k`` for the k-th repeated call).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

SITE_KINDS = ("input", "output", "table")


@dataclasses.dataclass(frozen=True)
class Site:
    """Where an activation quantizer sits: an argument or the output of a module method."""

    module_type: str = ".*"  # regex on the module's class name
    path: str = ".*"  # regex on '/'.join(module.path)
    method: str = "__call__"  # method name (exact)
    where: str = "input"  # "input" (positional arg ``arg``), "output" (every array leaf),
    # "table": the output quantized like the weight ``param`` of the module (a lookup table)
    arg: int = 0
    param: str = "embedding"  # "table" sites: the module's table parameter

    def matches(self, module: nn.Module, method: str) -> bool:
        return (
            method == self.method
            and re.fullmatch(self.module_type, type(module).__name__) is not None
            and re.fullmatch(self.path, "/".join(module.path)) is not None
        )


LINEAR_INPUTS = Site(module_type="Dense|DenseGeneral|Einsum")
NORM_INPUTS = Site(module_type="LayerNorm|RMSNorm")
# The attention scores (softmax input) and weights (softmax output): the models pass them
# through identity ``AttentionProbe`` modules on the explicit-weights path (the CPU default).
ATTENTION_SCORES = Site(module_type="AttentionProbe", path=r".*/scores", where="output")
ATTENTION_WEIGHTS = Site(module_type="AttentionProbe", path=r".*/weights", where="output")
ATTENTION_SITES = (ATTENTION_SCORES, ATTENTION_WEIGHTS)
# The papers' sites: linear inputs (Q/K/V inputs, context, FFN), LayerNorm inputs (residual
# and embedding sums), attention scores and softmax outputs.
DEFAULT_SITES = (LINEAR_INPUTS, NORM_INPUTS, *ATTENTION_SITES)


class _Namer:
    """Deterministic site names ``path:method:in0``; repeated calls get ``#k``."""

    def __init__(self):
        self.seen: dict[str, int] = {}

    def __call__(self, module, method, suffix):
        base = f"{'/'.join(module.path)}:{method}:{suffix}"
        k = self.seen.get(base, 0)
        self.seen[base] = k + 1
        return base if k == 0 else f"{base}#{k}"


def interceptor(sites: Sequence[Site], on_value: Callable, on_table: Callable | None = None):
    """An ``nn.intercept_methods`` interceptor: ``on_value(name, x) -> x'`` at every input /
    output site, ``on_table(module, site, out) -> out'`` at every "table" site."""
    namer = _Namer()

    def intercept(next_fun, args, kwargs, context):
        module, method = context.module, context.method_name
        matched = [s for s in sites if s.matches(module, method)]
        if not matched:
            return next_fun(*args, **kwargs)
        args = list(args)
        for site in (s for s in matched if s.where == "input"):
            name = namer(module, method, f"in{site.arg}")
            args[site.arg] = on_value(name, args[site.arg])
        out = next_fun(*args, **kwargs)
        for site in (s for s in matched if s.where == "table" and on_table is not None):
            out = on_table(module, site, out)
        if any(s.where == "output" for s in matched):
            leaves, tree = jax.tree.flatten(out)
            leaves = [on_value(namer(module, method, f"out{i}"), v) for i, v in enumerate(leaves)]
            out = jax.tree.unflatten(tree, leaves)
        return out

    return intercept
