"""Where attention puts its mass: the null slot, the first token, delimiter tokens.

The papers tie activation outliers to heads that learn to "do nothing": with softmax such a
head parks its mass on low-information keys (delimiters, [SEP], the first token) whose values
it has driven small, and the residual stream grows outliers to make that possible. Softmax_1
gives the head a null slot instead: mass ``1 - sum_j w_ij`` that goes nowhere. These
statistics read the normalizer's output at the models' ``AttentionProbe`` points named
``weights`` (explicit-weights attention, the CPU default), per layer and head.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.measure import outliers

WEIGHTS_PATTERN = r"(.*/)?attention/weights"  # AttentionProbe "weights" of every layer
_LAYER = re.compile(r"layer_(\d+)/")
_SPACE_MARKS = ("Ġ", "Ċ", "ĉ", "▁")  # byte-level BPE / sentencepiece whitespace symbols


def head_mass(
    w: jax.Array, key_groups: Mapping[str, jax.Array], query_valid: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Sums over valid queries of each head's mass on the null slot, key 0 and key groups.

    ``w`` [B, H, T, S] attention weights; ``key_groups`` {name: bool [B, S]}; ``query_valid``
    bool [B, T] or [B] (rows; None = all). Returns {"null": [H], "first": [H], name: [H],
    "queries": scalar}: divide by ``queries`` for the mean. ``null`` = 1 - sum_j w_ij: 0 for
    softmax, the null slot's share for Softmax_1 (clipped softmax also sheds mass by clipping
    small weights to 0). ``first`` is the mass on key 0 ([CLS], the block's first token).
    """
    w = jnp.asarray(w, jnp.float32)
    if w.ndim != 4:
        raise ValueError(f"w must be [B, H, T, S]; got shape {w.shape}.")
    b, _, t, s = w.shape
    q = jnp.ones((b, t), jnp.float32) if query_valid is None else jnp.asarray(query_valid)
    q = jnp.broadcast_to(q[:, None] if q.ndim == 1 else q, (b, t)).astype(jnp.float32)
    out = {
        "null": jnp.einsum("bht,bt->h", 1.0 - jnp.sum(w, axis=-1), q),
        "first": jnp.einsum("bht,bt->h", w[..., 0], q),
    }
    for name, g in key_groups.items():
        if g.shape != (b, s):
            raise ValueError(f"key group {name!r} must be [B, S] = {(b, s)}; got {g.shape}.")
        out[name] = jnp.einsum("bhts,bs,bt->h", w, g.astype(jnp.float32), q)
    out["queries"] = jnp.sum(q)
    return out


def delimiter_table(tokens: Iterable[str], special_ids: Iterable[int] = ()) -> np.ndarray:
    """bool [V]: token i is punctuation, a symbol, whitespace, or special.

    ``tokens`` lists the vocabulary by id; WordPiece's ``##`` and byte-level BPE's whitespace
    marks are stripped first, so ``##.``, ``Ġ(`` and a bare ``Ċ`` (newline) are delimiters.
    """
    out = []
    for tok in tokens:
        s = tok.removeprefix("##")
        for mark in _SPACE_MARKS:
            s = s.replace(mark, "")
        out.append(all(unicodedata.category(c)[0] in "PSZ" for c in s.strip()))
    table = np.asarray(out, bool)
    for i in special_ids:
        if i is not None:
            table[int(i)] = True
    return table


def tokenizer_delimiters(tokenizer_path: str, special_ids: Iterable[int] = ()) -> np.ndarray:
    """``delimiter_table`` of a saved ``tokenizers`` JSON file."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    return delimiter_table(
        [tok.id_to_token(i) or "" for i in range(tok.get_vocab_size())], special_ids
    )


def text_groups(delimiters: np.ndarray) -> Callable[[Mapping], dict]:
    """groups_fn for token batches: ``delimiters`` = the table looked up at ``input_ids``."""

    def groups(batch):
        ids = np.asarray(batch["input_ids"])
        return {"delimiters": delimiters[np.clip(ids, 0, len(delimiters) - 1)]}

    return groups


def no_groups(batch) -> dict:
    """groups_fn with no key groups (only the null slot and key 0 are measured)."""
    return {}


def attention_mass(
    model,
    variables,
    batches: Iterable,
    *,
    inputs_fn: Callable[[object], tuple[tuple, dict]],
    groups_fn: Callable[[object], dict[str, np.ndarray]],
    valid_fn: Callable[[object], np.ndarray] | None = None,
) -> dict:
    """Mean attention mass per layer and head over ``batches``, and summaries.

    ``inputs_fn(batch) -> (args, kwargs)`` as in ``outliers.outlier_stats``; ``groups_fn(batch)
    -> {name: bool [B, S]}`` key groups (``text_groups``, ``no_groups``); ``valid_fn(batch) ->
    bool [B, T] or [B]`` valid queries (padding and eval-padding rows excluded). Returns
    {"per_layer": {path: {group: [H]}}, "mean": {group: mean over layers and heads},
    "max_head": {group: max over layers and heads}, "base_rate": {group: share of valid
    keys in the group}}, groups always including ``null`` and ``first``. ValueError if the
    model exposes no weights probes (fused attention).
    """
    run = outliers.jit_per_static(lambda static: _mass_fn(model, static))
    sums: dict[str, dict[str, np.ndarray]] = {}
    base: dict[str, float] = {}
    n_keys = 0.0
    for batch in batches:
        groups = {k: np.asarray(v, bool) for k, v in groups_fn(batch).items()}
        valid = None if valid_fn is None else np.asarray(valid_fn(batch), bool)
        got = jax.device_get(run(variables, *inputs_fn(batch), groups, valid))
        if not got:
            raise ValueError(
                "the model exposes no attention weights (AttentionProbe 'weights'); use the "
                "explicit-weights path: attention.implementation='reference'."
            )
        for layer, m in got.items():
            acc = sums.setdefault(layer, {})
            for k, v in m.items():
                acc[k] = acc.get(k, 0.0) + np.asarray(v, np.float64)
        if groups:  # key positions that count toward the base rates
            shape = next(iter(groups.values())).shape
            keys = np.ones(shape, bool) if valid is None else valid
            keys = np.broadcast_to(keys[:, None] if keys.ndim == 1 else keys, shape)
            n_keys += float(keys.sum())
            for k, g in groups.items():
                base[k] = base.get(k, 0.0) + float((g & keys).sum())
    if not sums:
        raise ValueError("batches must hold at least one batch; got none.")
    per_layer = {}
    for layer, m in sorted(sums.items(), key=lambda kv: _layer_index(kv[0])):
        n = max(float(m.pop("queries")), 1.0)
        per_layer[layer] = {k: (v / n).tolist() for k, v in m.items()}
    names = list(next(iter(per_layer.values())))
    return {
        "per_layer": per_layer,
        "mean": {k: float(np.mean([m[k] for m in per_layer.values()])) for k in names},
        "max_head": {k: float(np.max([m[k] for m in per_layer.values()])) for k in names},
        "base_rate": {k: v / max(n_keys, 1.0) for k, v in base.items()},
    }


def _layer_index(path: str) -> int:
    m = _LAYER.search(path + "/")
    return int(m[1]) if m else -1


def _mass_fn(model, static):
    def mass(variables, args, arr_kwargs, groups, valid):
        _, found = outliers.capture(
            model, variables, *args, patterns=[WEIGHTS_PATTERN], **arr_kwargs, **static
        )
        return {k: head_mass(w, groups, valid) for k, w in found.items()}

    return mass
