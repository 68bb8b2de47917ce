"""Flax Linen Hopfield layers with the hflayers feature set and Softmax_1 as a normalizer.

``Hopfield`` associates state patterns R [B, L, input_size] with stored patterns
Y [B, S, stored_pattern_size] and reads out pattern projections P [B, S, ...]:
  Q = LN(R) W_Q, K = LN(Y) W_K, V = LN(P) W_V (or LN(P) W_K W_V when connected),
  xi = associate(Q, K) per head (outeffhop.ops.hopfield), out = (dropout(xi) @ V) W_O.
Sizes follow hflayers: ``hidden_size`` and ``pattern_size`` are per head (default
input_size // num_heads and hidden_size). ``normalizer="softmax"`` is hflayers' layer;
the default ``softmax1`` is the OutEffHop layer. Masks are boolean with True = keep
(the Flax convention; hflayers marks what to ignore).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from outeffhop.nn import hopfield_checks as checks
from outeffhop.nn import hopfield_fold as fold
from outeffhop.nn.dense import dense_dot_general
from outeffhop.nn.layer_norm import LayerNorm
from outeffhop.ops import entmax
from outeffhop.ops import hopfield as memory
from outeffhop.ops import matmul as products

PATTERN_INIT = nn.initializers.normal(stddev=0.02)  # learned patterns and weights
NORMALIZERS = checks.NORMALIZERS


class Hopfield(nn.Module):
    """Hopfield association of (stored, state, projection) patterns; mirrors hflayers.Hopfield.

    Call with one array (used as all three) or a tuple ``(stored, state, projection)``, each
    [B, S|L, features] (``batch_first``) or [S|L, B, features]. Returns [B, L, output_size]
    (or [B, L, num_heads * pattern_size] with ``disable_out_projection``), and with
    ``return_association=True`` also xi [B, H, L, S] (S + 1 per extra zero/bias pattern).
    """

    input_size: int | None = None  # depth of state patterns R
    hidden_size: int | None = None  # per-head association depth (default input_size // H)
    output_size: int | None = None  # depth of the output projection (default input_size)
    pattern_size: int | None = None  # per-head value depth (default hidden_size)
    num_heads: int = 1
    scaling: float | Sequence[float] | None = None  # beta; None: 1/sqrt(hidden_size)
    update_steps_max: int | Sequence[int] | None = 0  # extra updates; None: until eps
    update_steps_eps: float | Sequence[float] = 1e-4  # stop when ||xi_t+1 - xi_t||_F <= eps
    normalize_stored_pattern: bool = True
    normalize_stored_pattern_affine: bool = True
    normalize_stored_pattern_eps: float = 1e-5
    normalize_state_pattern: bool = True
    normalize_state_pattern_affine: bool = True
    normalize_state_pattern_eps: float = 1e-5
    normalize_pattern_projection: bool = True
    normalize_pattern_projection_affine: bool = True
    normalize_pattern_projection_eps: float = 1e-5
    normalize_hopfield_space: bool = False  # LayerNorm of Q and K per head (shared params)
    normalize_hopfield_space_affine: bool = False
    normalize_hopfield_space_eps: float = 1e-5
    stored_pattern_as_static: bool = False  # skip W_K: stored patterns are keys per head
    state_pattern_as_static: bool = False  # skip W_Q
    pattern_projection_as_static: bool = False  # skip W_V
    pattern_projection_as_connected: bool = False  # V = (P W_K) W_V
    stored_pattern_size: int | None = None  # default input_size
    pattern_projection_size: int | None = None  # default input_size
    batch_first: bool = True
    association_activation: str | None = None  # a jax.nn function applied to the output
    dropout: float = 0.0  # on the association matrix
    input_bias: bool = True  # biases of W_Q, W_K, W_V, W_O
    concat_bias_pattern: bool = False  # append one learned key/value pattern
    add_zero_association: bool = False  # append a zero key/value (softmax -> Softmax_1)
    disable_out_projection: bool = False
    normalizer: str = "softmax1"  # softmax | softmax1 | clipped | clipped_softmax1 | gsh
    gamma: float | None = None  # clipped normalizers: clip((zeta - gamma) N + gamma, 0, 1)
    zeta: float | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        checks.check_config(self)
        super().__post_init__()

    # Sizes, resolved as hflayers does.
    @property
    def head_dim(self) -> int | None:
        if self.hidden_size is not None:
            return self.hidden_size
        return None if self.input_size is None else self.input_size // self.num_heads

    @property
    def pattern_dim(self) -> int | None:
        return self.head_dim if self.pattern_size is None else self.pattern_size

    def setup(self):
        h, hd, pd = self.num_heads, self.head_dim, self.pattern_dim
        dense = dict(
            kernel_init=PATTERN_INIT,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            dot_general=dense_dot_general,  # CPU-shaped backward (outeffhop.nn.dense)
        )

        def ln(flag, affine, eps):
            if not flag:
                return None
            return LayerNorm(eps, self.dtype, self.param_dtype, use_bias=affine, use_scale=affine)

        self.norm_stored = ln(
            self.normalize_stored_pattern,
            self.normalize_stored_pattern_affine,
            self.normalize_stored_pattern_eps,
        )
        self.norm_state = ln(
            self.normalize_state_pattern,
            self.normalize_state_pattern_affine,
            self.normalize_state_pattern_eps,
        )
        self.norm_projection = ln(
            self.normalize_pattern_projection,
            self.normalize_pattern_projection_affine,
            self.normalize_pattern_projection_eps,
        )
        self.norm_hopfield = ln(
            self.normalize_hopfield_space,
            self.normalize_hopfield_space_affine,
            self.normalize_hopfield_space_eps,
        )
        bias = self.input_bias
        self.q_proj = None if self.state_pattern_as_static else nn.Dense(h * hd, bias, **dense)
        self.k_proj = None if self.stored_pattern_as_static else nn.Dense(h * hd, bias, **dense)
        self.v_proj = None if self.pattern_projection_as_static else nn.Dense(h * pd, bias, **dense)
        self.out_proj = (
            None
            if self.disable_out_projection
            else nn.Dense(self.output_size or self.input_size, bias, **dense)
        )
        if self.concat_bias_pattern:
            self.bias_k = self.param("bias_k", PATTERN_INIT, (h, 1, hd), self.param_dtype)
            self.bias_v = self.param("bias_v", PATTERN_INIT, (h, 1, pd), self.param_dtype)
        if self.normalizer == "gsh":  # alpha = 1 + sigmoid(param), 1.5 at init
            self.gsh_alpha = self.param("gsh_alpha", nn.initializers.zeros, (h,), jnp.float32)
        self.drop = nn.Dropout(self.dropout)

    def _split(self, x, static: bool, size: int):
        """[B, N, H * size] -> [B, H, N, size]; static inputs [B, N, size] repeat per head."""
        if static:
            return jnp.broadcast_to(x[:, None], (x.shape[0], self.num_heads) + x.shape[1:])
        return x.reshape(x.shape[:2] + (self.num_heads, size)).transpose(0, 2, 1, 3)

    def _beta(self, head_dim, dtype):
        """beta in the association's dtype: a Python float (weakly typed) or an array [H].

        A float64 run keeps ``scaling`` in float64 (no float32 round trip).
        """
        if self.scaling is None:
            return 1.0 if checks.static_execution(self) else 1.0 / math.sqrt(head_dim)
        beta = checks.per_head(self.scaling, np.float64)
        return float(beta) if beta.ndim == 0 else jnp.asarray(beta, dtype)

    def __call__(
        self,
        inputs,
        stored_pattern_mask=None,
        association_mask=None,
        *,
        deterministic: bool = True,
        return_association: bool = False,
    ):
        """Hopfield association of ``inputs`` (one array or (stored, state, projection)).

        ``stored_pattern_mask`` [B, S]: True = a real stored pattern (False = padding).
        ``association_mask``: broadcastable to [B, H, L, S], True = may associate.
        ``deterministic=False`` applies dropout (needs the 'dropout' rng).
        """
        if isinstance(inputs, tuple | list):
            if len(inputs) != 3:
                raise ValueError(f"inputs must be one array or 3 arrays; got {len(inputs)}.")
            stored, state, projection = (jnp.asarray(x) for x in inputs)
        else:
            stored = state = projection = jnp.asarray(inputs)
        if not self.batch_first:
            stored, state, projection = (jnp.swapaxes(x, 0, 1) for x in (stored, state, projection))
        checks.check_inputs(self, stored, state, projection)
        out, xi = self._associate(
            stored, state, projection, stored_pattern_mask, association_mask, deterministic
        )
        if not self.batch_first:
            out = jnp.swapaxes(out, 0, 1)
        return (out, xi) if return_association else out

    def _associate(self, stored, state, projection, pad_mask, assoc_mask, deterministic):
        """Batch-first core: returns (out [B, L, out], xi [B, H, L, S'])."""
        static = checks.static_execution(self)
        hd = state.shape[-1] if static else self.head_dim
        pd = projection.shape[-1] if static else self.pattern_dim
        q, k, v = self._project(stored, state, projection, hd, pd)
        batch = max(stored.shape[0], state.shape[0])  # learned patterns come with batch 1
        mask = self._mask(pad_mask, assoc_mask, (batch, stored.shape[1]), q.shape[2])
        k, v, mask = self._append_patterns(k, v, mask, hd, pd)
        xi = self._gsh(q, k, hd, mask) if self.normalizer == "gsh" else self._xi(q, k, hd, mask)
        self.sow("intermediates", "association", xi)  # unused xi is dead code under jit
        no_dropout = deterministic or self.dropout == 0.0
        # Traced (jit, grad): the fused reads below. Eager: xi @ v, xi being at hand already.
        traced = isinstance(q, jax.core.Tracer)
        if traced and no_dropout and self._one_step_read():
            out = self._folded(stored, state, projection, (q, k, v), mask, hd, pd)
            if out is None:  # N(beta q k^T) v as one product pair, flash-attention backward
                scores = memory.association_scores(q, k, self._beta(hd, q.dtype))
                out = products.normalize_read(scores, v.astype(scores.dtype), self.normalizer, mask)
                out = self._project_out(out, v.dtype)
        else:
            weights = self.drop(xi, deterministic=no_dropout)
            out = self._project_out(products.matmul(weights.astype(v.dtype), v), v.dtype)
        if self.association_activation is not None:
            out = getattr(jax.nn, self.association_activation)(out)
        return out, xi

    def _project_out(self, ctx_BHLP, dtype):
        """Heads merged, [B, H, L, P] -> [B, L, H * P], then W_O (unless disabled)."""
        out = jnp.swapaxes(ctx_BHLP, 1, 2).astype(dtype)
        out = out.reshape(out.shape[:2] + (-1,))
        return out if self.out_proj is None else self.out_proj(out)

    def _folded(self, stored, state, projection, qkv, mask, hd, pd):
        """The one-step read reassociated around batch-shared patterns (``hopfield_fold``)
        where that is fewer multiply-adds; None where it does not apply."""
        if self.is_initializing() or not self._foldable() or fold.observed():
            return None
        q, k, v = qkv
        params, h = self.variables["params"], self.num_heads
        beta = self._beta(hd, q.dtype)

        def inputs(norm, eps, dense):
            return (
                (None if getattr(self, norm) is None else dict(params.get(norm, {}))),
                eps,
                params[dense],
            )

        if stored.shape[0] == 1 < state.shape[0] and self.out_proj is not None:
            out_dim = params["out_proj"]["kernel"].shape[-1]
            plain, folded = fold.lookup_cost(state.shape[-1], h, hd, pd, k.shape[2], out_dim)
            if folded < plain:
                q_in = inputs("norm_state", self.normalize_state_pattern_eps, "q_proj")
                return fold.lookup_read(
                    state, q_in, k, v, params["out_proj"], beta, self.normalizer, mask
                )
        appended = self.concat_bias_pattern or self.add_zero_association
        if state.shape[0] == 1 < stored.shape[0] and not appended:
            dk, dv = stored.shape[-1], projection.shape[-1]
            plain, folded = fold.pooling_cost(dk, dv, h, hd, pd, q.shape[2], stored.shape[1])
            if folded < plain:
                k_in = inputs("norm_stored", self.normalize_stored_pattern_eps, "k_proj")
                v_in = inputs("norm_projection", self.normalize_pattern_projection_eps, "v_proj")
                ctx = fold.pooling_ctx(
                    q, stored, projection, k_in, v_in, beta, self.normalizer, mask
                )
                return ctx if self.out_proj is None else self.out_proj(ctx)
        return None

    def _foldable(self) -> bool:
        return (
            self.q_proj is not None
            and self.k_proj is not None
            and self.v_proj is not None
            and not self.pattern_projection_as_connected
            and self.norm_hopfield is None
        )

    def _one_step_read(self) -> bool:
        """One association step with softmax / Softmax_1: the fused read applies."""
        steps = self.update_steps_max
        return (
            self.normalizer in products.READ_NORMALIZERS
            and steps is not None
            and not np.any(np.asarray(steps) > 0)
        )

    def _project(self, stored, state, projection, hd, pd):
        """Input LayerNorms, W_Q / W_K / W_V, heads split: q [B, H, L, hd], k, v [B, H, S, .]."""
        if self.norm_stored is not None:
            stored = self.norm_stored(stored)
        if self.norm_state is not None:
            state = self.norm_state(state)
        if self.norm_projection is not None:
            projection = self.norm_projection(projection)
        q = state if self.q_proj is None else self.q_proj(state)
        k = stored if self.k_proj is None else self.k_proj(stored)
        connected = self.pattern_projection_as_connected
        v = self.k_proj(projection) if connected else projection
        if self.v_proj is not None:
            v = self.v_proj(v)
        q = self._split(q, self.q_proj is None, hd)
        k = self._split(k, self.k_proj is None, hd)
        v = self._split(v, self.v_proj is None and not connected, pd)
        if self.norm_hopfield is not None:
            q, k = self.norm_hopfield(q), self.norm_hopfield(k)
        return q, k, v

    def _mask(self, pad_mask, assoc_mask, bs, length):
        """The stored-pattern and association masks combined, 4-D [B|1, H|1, L|1, S], or None."""
        b, s = bs
        mask = None
        if pad_mask is not None:
            pad_mask = jnp.asarray(pad_mask, bool)
            if pad_mask.shape != (b, s):
                raise ValueError(
                    f"stored_pattern_mask must be [batch, stored length] = {(b, s)}; "
                    f"got {pad_mask.shape}."
                )
            mask = pad_mask[:, None, None, :]
        if assoc_mask is not None:
            assoc_mask = jnp.asarray(assoc_mask, bool)
            try:
                jnp.broadcast_shapes(assoc_mask.shape, (b, self.num_heads, length, s))
            except ValueError:
                raise ValueError(
                    f"association_mask must broadcast to [B, H, L, S] = "
                    f"{(b, self.num_heads, length, s)}; got {assoc_mask.shape}."
                ) from None
            mask = assoc_mask if mask is None else mask & assoc_mask
        if mask is not None:
            mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
        return mask

    def _append_patterns(self, k, v, mask, hd, pd):
        """The learned bias pattern and the zero pattern as extra, never masked, stored keys."""
        extra = []
        if self.concat_bias_pattern:
            extra.append((self.bias_k, self.bias_v))
        if self.add_zero_association:
            extra.append((jnp.zeros((1, 1, hd), k.dtype), jnp.zeros((1, 1, pd), v.dtype)))
        for ek, ev in extra:
            k = jnp.concatenate([k, jnp.broadcast_to(ek.astype(k.dtype), k.shape[:2] + (1, hd))], 2)
            v = jnp.concatenate([v, jnp.broadcast_to(ev.astype(v.dtype), v.shape[:2] + (1, pd))], 2)
            if mask is not None:
                mask = jnp.concatenate([mask, jnp.ones(mask.shape[:-1] + (1,), bool)], axis=-1)
        return k, v, mask

    def _xi(self, q, k, hd, mask):
        """The association matrix of ``ops.hopfield.associate`` (hflayers' iteration)."""
        steps_max = self.update_steps_max
        xi, _ = memory.associate(
            q,
            k,
            beta=self._beta(hd, q.dtype),
            normalizer=self.normalizer,
            update_steps_max=None if steps_max is None else checks.per_head(steps_max, np.int32),
            update_steps_eps=checks.per_head(self.update_steps_eps, np.float64),
            mask=mask,
            gamma=self.gamma,
            zeta=self.zeta,
            stop_axes=(0,),
        )
        return xi

    def _gsh(self, q, k, hd, mask):
        """GSH association: alpha-entmax(beta q k^T) per head, alpha = 1 + sigmoid(param) [H],
        then ``update_steps_max`` GSH updates a <- entmax(beta (a k) k^T) in association
        space (``ops.entmax.gsh_associate``; hflayers' iteration with entmax).

        Masked entries are exact zeros; a fully masked row comes out all zeros, as with the
        other normalizers.
        """
        steps_max = self.update_steps_max
        return entmax.gsh_associate(
            q,
            k,
            beta=self._beta(hd, q.dtype),
            alpha=entmax.gsh_alpha(self.gsh_alpha),
            update_steps_max=None if steps_max is None else checks.per_head(steps_max, np.int32),
            update_steps_eps=checks.per_head(self.update_steps_eps, np.float32),
            mask=mask,
            stop_axes=(0,),
        )
