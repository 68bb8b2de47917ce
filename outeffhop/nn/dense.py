"""The Dense contraction ``x @ W`` with a backward pass shaped for XLA's CPU matmul kernels.

Autodiff of ``x [..., in] @ W [in, out]`` gives the weight gradient as ``x^T g``, a dot
contracting the leading (row) axis of both operands. On CPU, XLA hands such a dot to its
generic Eigen path and runs it next to the YNNPACK matmuls of the rest of the step, two
thread pools on the same cores. Here the weight gradient is ``transpose(x) @ g`` with the
transpose materialized behind an optimization barrier, so every matmul of the layer (two
forward, four backward) is a plain row-major product that XLA gives to YNNPACK. Measured on
the 2-core dev box (BENCHMARKS.md): an FFN 768 -> 3072 -> 768 on 1024 tokens, fwd + bwd,
73.8 -> 63.6 ms.

Values are those of ``lax.dot_general``; gradients agree up to float summation order. On
other backends, and for contractions that are not Dense's, it is ``lax.dot_general``.
"""

from __future__ import annotations

import functools

import jax
from jax import lax


def _contract_last(x, w, precision):
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _dense(x, w, precision):
    return _contract_last(x, w, precision)


def _dense_fwd(x, w, precision):
    x = lax.optimization_barrier(x)  # materialized once: the transpose below only copies it
    return _contract_last(x, w, precision), (x, w)


def _dense_bwd(precision, residuals, g):
    x, w = residuals
    dx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())), precision=precision)
    x_t = lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)  # [in, tokens], row-major
    dw = lax.dot_general(
        x_t, g.reshape(-1, g.shape[-1]), (((1,), (0,)), ((), ())), precision=precision
    )
    return dx.astype(x.dtype), dw.astype(w.dtype)


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense_dot_general(
    lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None
) -> jax.Array:
    """``lax.dot_general`` for ``nn.Dense(dot_general=...)``: the custom backward on CPU."""
    (lc, rc), (lb, rb) = dimension_numbers
    dense_form = (tuple(lc), tuple(rc), tuple(lb), tuple(rb)) == ((lhs.ndim - 1,), (0,), (), ())
    if (
        not dense_form
        or rhs.ndim != 2
        or lhs.dtype != rhs.dtype
        or preferred_element_type is not None
        or jax.default_backend() != "cpu"
    ):
        return lax.dot_general(
            lhs,
            rhs,
            dimension_numbers,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    return _dense(lhs, rhs, precision)
