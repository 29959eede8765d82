"""numba twins of ``minibert/layers/gelu.py`` (exact GELU), and the fused bias + GELU that the FFN twin uses.

GELU needs erf.  The reference calls SciPy's ``erf`` and makes a few more NumPy passes over the array;
the twin does one pass.  float32 uses the vectorizable ``verf`` (absolute error < 5e-7, see
``_vecmath``), float64 the C library's ``math.erf`` (SciPy's to a few ulps: ``tests/layers/test_erf.py``).

``bias_gelu_forward`` fuses the FFN's first bias into the GELU pass (``h += b1`` and ``a = gelu(h)``
in one jitted pass), and ``gelu_bias_backward`` fuses the GELU derivative with the bias gradient
``db1 = sum over rows of dh`` (both used by ``kernels/ffn.py``).  The constants below are those of the mathematics (sqrt(1/2),
1/sqrt(2 pi)), not settings, so numba may freeze them.

Each parallel task takes a block of ``ROWS`` rows and hands it to a serial kernel (``_*_rows``):
compiled on its own, with C-contiguous blocks, the inner loop vectorizes; written inline in the
``prange`` body it did not (bias + GELU on 4096 x 512, 2 threads: 4.5 ms inline, 2.7 ms in blocks, the same
erf; ``docs/performance.md``, issue 17).
"""
import math

import numpy as np
from numba import prange

from ._vecmath import kernel, verf, vexp

SQRT_HALF = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
ROWS = 64  # rows per block: a parallel task, and one partial sum of the bias gradient


@kernel(parallel=False)
def _bias_gelu_rows(h, b, out):
    """One block: h (n, F) += b (F,) in place; out = gelu(h).  Computed in h's dtype (see ``_vecmath``)."""
    n, F = h.shape
    one, half, sqrt_half = h.dtype.type(1), h.dtype.type(0.5), h.dtype.type(SQRT_HALF)
    for i in range(n):
        for f in range(F):
            x = h[i, f] + b[f]
            h[i, f] = x
            # out = x * Phi(x),  Phi(x) = 0.5 (1 + erf(x / sqrt 2))
            out[i, f] = half * x * (one + verf(x * sqrt_half))


@kernel
def _bias_gelu_forward(h, b, out):
    """h (N, F) += b; out = gelu(h): blocks of ``ROWS`` rows in parallel."""
    N = h.shape[0]
    for blk in prange((N + ROWS - 1) // ROWS):
        lo, hi = blk * ROWS, min(N, (blk + 1) * ROWS)
        _bias_gelu_rows(h[lo:hi], b, out[lo:hi])


@kernel(parallel=False)
def _gelu_backward_rows(dout, h, dh, db):
    """One block: dh = dout * gelu'(h), all (n, F); db (F,) float64 = dh summed over the block's rows."""
    n, F = h.shape
    one, half, sqrt_half = h.dtype.type(1), h.dtype.type(0.5), h.dtype.type(SQRT_HALF)
    inv_sqrt_2pi = h.dtype.type(INV_SQRT_2PI)
    for f in range(F):
        db[f] = 0.0
    for i in range(n):
        for f in range(F):
            x = h[i, f]
            # forward: out = x * Phi(x)  =>  dout/dx = Phi(x) + x * phi(x), phi the normal pdf
            cdf = half * (one + verf(x * sqrt_half))
            pdf = inv_sqrt_2pi * vexp(-half * x * x)
            dh[i, f] = dout[i, f] * (cdf + x * pdf)
        for f in range(F):  # a loop of its own: inside the one above, the float64 sum stops vectorizing
            db[f] += dh[i, f]


@kernel
def _gelu_backward(dout, h, dh, db_part):
    """dh = dout * gelu'(h), all (N, F); db_part (blocks, F): row blk = dh summed over block blk."""
    N = h.shape[0]
    for blk in prange(db_part.shape[0]):
        lo, hi = blk * ROWS, min(N, (blk + 1) * ROWS)
        _gelu_backward_rows(dout[lo:hi], h[lo:hi], dh[lo:hi], db_part[blk])


def _blocks(n_rows):
    return (n_rows + ROWS - 1) // ROWS


def gelu_forward(x):
    """numba twin of ``minibert.layers.gelu.gelu_forward``.  (...) -> (...), ``cache = x``"""
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1] if x.ndim else 1)  # (N, F)
    out = np.empty(x2.shape, x.dtype)
    _bias_gelu_forward(x2.copy(), np.zeros(x2.shape[1], x.dtype), out)  # a copy: the fused pass writes h + b
    return out.reshape(x.shape), x


def gelu_backward(dout, cache):
    """numba twin of ``minibert.layers.gelu.gelu_backward``.  (...) -> dx (...)"""
    x = cache
    h2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1] if x.ndim else 1)  # (N, F)
    dx = np.empty(h2.shape, x.dtype)
    db_part = np.empty((_blocks(h2.shape[0]), h2.shape[1]))  # unused here
    _gelu_backward(np.ascontiguousarray(dout, dtype=x.dtype).reshape(h2.shape), h2, dx, db_part)
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
    db_part = np.empty((_blocks(h.shape[0]), h.shape[1]))
    # a new array for dh: were it dout itself, the compiler's overlap check would fail at run time and
    # fall back to the one-element-at-a-time loop (4x slower, measured)
    dh = np.empty_like(dout)
    _gelu_backward(dout, h, dh, db_part)
    return dh, db_part.sum(0).astype(h.dtype)
