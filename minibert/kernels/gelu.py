"""numba twins of ``minibert/layers/gelu.py`` (exact GELU), and the fused bias + GELU that the FFN twin uses.

GELU needs erf.  The reference calls SciPy's ``erf`` and makes a few more NumPy passes over the array;
the twin does one pass.  float32 uses the vectorizable ``verf`` (absolute error < 5e-7, see
``_vecmath``), float64 the C library's ``math.erf`` (SciPy's to a few ulps: ``tests/test_erf.py``).

``bias_gelu_forward`` fuses the FFN's first bias into the GELU pass (``h += b1`` and ``a = gelu(h)``
in one jitted pass), and ``gelu_bias_backward`` fuses the GELU derivative with the bias gradient
``db1 = sum over rows of dh`` (both used by ``kernels/ffn.py``).  The constants below are those of the mathematics (sqrt(1/2),
1/sqrt(2 pi)), not settings, so numba may freeze them.
"""
import math

import numpy as np
from numba import prange

from ._vecmath import kernel, verf, vexp

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
