"""numba twins of ``minibert/layers/gelu.py`` (exact GELU) and ``minibert/layers/ffn.py``.

GELU needs erf.  The reference evaluates its NumPy port of fdlibm's erf region by region, a dozen
passes over the array; the twin does one pass.  float32 uses the vectorizable ``verf`` (absolute
error < 5e-7, see ``_vecmath``), float64 the C library's ``math.erf`` (fdlibm's algorithm: the
reference's to a few ulps).

The FFN twin fuses the first bias into the GELU pass (``h = x W1^T`` by BLAS, then ``h += b1`` and
``a = gelu(h)`` in one jitted pass), and in the backward fuses the GELU derivative with the bias
gradient ``db1 = sum over rows of dh``.  The constants below are those of the mathematics (sqrt(1/2),
1/sqrt(2 pi)), not settings, so numba may freeze them.
"""
import math

import numpy as np
from numba import prange

from ._vecmath import kernel, verf, vexp

from ..layers.ffn import ffn_backward as _ffn_backward_reference
from ..layers.ffn import ffn_forward as _ffn_forward_reference

SQRT_HALF = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_ROWS = 64  # rows per block in the bias-gradient reduction


@kernel
def _bias_gelu_forward(h, b, out):
    """h (N, F) += b (F,) in place; out = gelu(h).  Computed in h's dtype (see ``_vecmath``)."""
    N, F = h.shape
    one, half, sqrt_half = h.dtype.type(1), h.dtype.type(0.5), h.dtype.type(SQRT_HALF)
    for i in prange(N):
        hrow, orow = h[i], out[i]
        for f in range(F):
            x = hrow[f] + b[f]
            hrow[f] = x
            # out = x * Phi(x),  Phi(x) = 0.5 (1 + erf(x / sqrt 2))
            orow[f] = half * x * (one + verf(x * sqrt_half))


@kernel
def _gelu_forward(x, out):
    """out = gelu(x) on flat arrays."""
    one, half, sqrt_half = x.dtype.type(1), x.dtype.type(0.5), x.dtype.type(SQRT_HALF)
    for i in prange(x.size):
        v = x[i]
        out[i] = half * v * (one + verf(v * sqrt_half))


@kernel
def _gelu_backward(dout, h, dh, db_part, rows):
    """dh = dout * gelu'(h); db_part[blk] = sum of dh over the rows of block blk.  All (N, F)."""
    N, F = h.shape
    one, half, sqrt_half = h.dtype.type(1), h.dtype.type(0.5), h.dtype.type(SQRT_HALF)
    inv_sqrt_2pi = h.dtype.type(INV_SQRT_2PI)
    for blk in prange(db_part.shape[0]):
        acc = db_part[blk]  # (F,) float64
        acc[:] = 0.0
        for i in range(blk * rows, min(N, (blk + 1) * rows)):
            grow, hrow, drow = dout[i], h[i], dh[i]
            for f in range(F):
                x = hrow[f]
                # forward: out = x * Phi(x)  =>  dout/dx = Phi(x) + x * phi(x), phi the normal pdf
                cdf = half * (one + verf(x * sqrt_half))
                pdf = inv_sqrt_2pi * vexp(-half * x * x)
                g = grow[f] * (cdf + x * pdf)
                drow[f] = g
                acc[f] += g


def gelu_forward(x):
    """numba twin of ``minibert.layers.gelu.gelu_forward``.  (...) -> (...), ``cache = x``"""
    out = np.empty(x.shape, x.dtype)
    _gelu_forward(np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
    return out, x


def gelu_backward(dout, cache):
    """numba twin of ``minibert.layers.gelu.gelu_backward``.  (...) -> dx (...)"""
    x = cache
    h2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1] if x.ndim else 1)  # (N, F)
    dx = np.empty(h2.shape, x.dtype)
    db_part = np.empty(((h2.shape[0] + _ROWS - 1) // _ROWS, h2.shape[1]))  # unused here
    _gelu_backward(np.ascontiguousarray(dout, dtype=x.dtype).reshape(h2.shape), h2, dx, db_part, _ROWS)
    return dx.reshape(x.shape)


def bias_gelu_forward(h, b):
    """Fused ``gelu(h + b)``; its reference is ``gelu_forward(h + b)``.  (N, F), (F,) -> out (N, F).

    ``h`` is overwritten with ``h + b`` (the pre-activation, which is the cache)."""
    out = np.empty_like(h)
    _bias_gelu_forward(h, b, out)
    return out, h


def gelu_bias_backward(dout, cache):
    """Backward of ``bias_gelu_forward``: dh (N, F), db (F,) = dh summed over rows."""
    h = cache
    db_part = np.empty(((h.shape[0] + _ROWS - 1) // _ROWS, h.shape[1]))
    # a new array for dh: were it dout itself, the compiler's overlap check would fail at run time and
    # fall back to the one-element-at-a-time loop (4x slower, measured)
    dh = np.empty_like(dout)
    _gelu_backward(dout, h, dh, db_part, _ROWS)
    return dh, db_part.sum(0).astype(h.dtype)


def ffn_forward(x, w1, b1, w2, b2, act="gelu"):
    """numba twin of ``minibert.layers.ffn.ffn_forward`` (exact GELU; other activations use the
    reference).  (B, T, C), (F, C), (F,), (C, F), (C,) -> (B, T, C).  ``cache = (c1, act cache, c2, act)``."""
    if act != "gelu":
        return _ffn_forward_reference(x, w1, b1, w2, b2, act)
    C, F = x.shape[-1], w1.shape[0]
    x2 = x.reshape(-1, C)
    h = x2 @ w1.T  # (N, F)
    a, h = bias_gelu_forward(h, b1)  # h += b1; a = gelu(h)
    out = a @ w2.T  # (N, C)
    out += b2
    shape = x.shape[:-1]
    return out.reshape(*shape, C), ((x, w1), h.reshape(*shape, F), (a.reshape(*shape, F), w2), act)


def ffn_backward(dout, cache):
    """numba twin of ``minibert.layers.ffn.ffn_backward``.  (B, T, C) -> dx, dw1, db1, dw2, db2"""
    (x, w1), h, (a, w2), act = cache
    if act != "gelu":
        return _ffn_backward_reference(dout, cache)
    C, F = x.shape[-1], w1.shape[0]
    dout2 = dout.reshape(-1, C)
    # forward: out = a @ w2.T + b2
    da = dout2 @ w2  # (N, F)
    dw2 = dout2.T @ a.reshape(-1, F)
    db2 = dout2.sum(axis=0)
    # forward: a = gelu(h), h = x @ w1.T + b1
    dh, db1 = gelu_bias_backward(da, h.reshape(-1, F))
    dx = dh @ w1  # (N, C)
    dw1 = dh.T @ x.reshape(-1, C)
    return dx.reshape(x.shape), dw1, db1, dw2, db2
