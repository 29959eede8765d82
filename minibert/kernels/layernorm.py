"""numba twins of ``minibert/layers/layernorm.py``: same signatures, same caches, same results.

Each row (one token, C features) is independent, so the forward runs rows in parallel (``prange``)
and does the three passes of the reference (mean, variance, normalise) while the row sits in cache.
The statistics accumulate in float64 whatever the input dtype, and are stored in the input dtype,
as the reference stores them.

The backward needs ``dw`` and ``db``, sums over *all* rows; threads cannot add into one shared
``(C,)`` array without racing, so rows are cut into fixed blocks of ``_ROWS`` rows, each block sums
into its own row of a ``(blocks, C)`` scratch array, and the blocks are added at the end.  The block
size does not depend on the thread count, so the result is the same on 1 core or 64.
"""
import numpy as np
from numba import prange

from ._vecmath import kernel

_ROWS = 256  # rows per block in the parameter-gradient reductions


@kernel
def _layernorm_forward(x, w, b, eps, out, mean, rstd):
    """Twin of the body of ``layernorm_forward``.  x, out (N, C); w, b (C,); mean, rstd (N,)."""
    N, C = x.shape
    for i in prange(N):
        s = 0.0
        for c in range(C):
            s += x[i, c]
        m = s / C  # mean = x.mean(-1)
        s = 0.0
        for c in range(C):
            d = x[i, c] - m
            s += d * d
        r = 1.0 / np.sqrt(s / C + eps)  # rstd = 1 / sqrt(var + eps)
        mean[i] = m
        rstd[i] = r
        for c in range(C):
            out[i, c] = (x[i, c] - m) * r * w[c] + b[c]  # out = norm * w + b


@kernel
def _layernorm_backward(dout, x, w, mean, rstd, dx, dw_part, db_part, rows):
    """Twin of the body of ``layernorm_backward``.  dout, x, dx (N, C); dw_part, db_part (blocks, C)."""
    N, C = x.shape
    for blk in prange(dw_part.shape[0]):
        for c in range(C):
            dw_part[blk, c] = 0.0
            db_part[blk, c] = 0.0
        for i in range(blk * rows, min(N, (blk + 1) * rows)):
            m = mean[i]
            r = rstd[i]
            # forward: out = norm * w + b
            mean_dnorm = 0.0
            mean_dnorm_norm = 0.0
            for c in range(C):
                norm = (x[i, c] - m) * r  # recomputed, not cached
                dnorm = dout[i, c] * w[c]
                mean_dnorm += dnorm
                mean_dnorm_norm += dnorm * norm
                db_part[blk, c] += dout[i, c]
                dw_part[blk, c] += dout[i, c] * norm
            mean_dnorm /= C
            mean_dnorm_norm /= C
            # forward: norm = (x - mean) * rstd; three paths: direct, through mean, through rstd
            for c in range(C):
                norm = (x[i, c] - m) * r
                dx[i, c] = r * (dout[i, c] * w[c] - mean_dnorm - norm * mean_dnorm_norm)


def _rows(a):
    """(..., C) -> a C-contiguous (N, C) view (a copy only if ``a`` is not contiguous)."""
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def layernorm_forward(x, w, b, eps=1e-12):
    """numba twin of ``minibert.layers.layernorm.layernorm_forward``.

    (..., C), (C,), (C,) -> (..., C).  ``cache = (x, w, mean (...,), rstd (...,))``.
    """
    x2 = _rows(x)  # (N, C)
    out = np.empty(x2.shape, x.dtype)
    mean = np.empty(x2.shape[0], x.dtype)
    rstd = np.empty(x2.shape[0], x.dtype)
    _layernorm_forward(x2, w, b.astype(x.dtype, copy=False), float(eps), out, mean, rstd)
    return out.reshape(x.shape), (x, w, mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1]))


def layernorm_backward(dout, cache):
    """numba twin of ``minibert.layers.layernorm.layernorm_backward``.  (..., C) -> dx, dw (C,), db (C,)"""
    x, w, mean, rstd = cache
    C = x.shape[-1]
    x2, d2 = _rows(x), _rows(dout)  # (N, C)
    N = x2.shape[0]
    blocks = (N + _ROWS - 1) // _ROWS
    dx = np.empty(x2.shape, dout.dtype)
    dw_part = np.empty((blocks, C))  # float64 partial sums, one row per block of rows
    db_part = np.empty((blocks, C))
    _layernorm_backward(d2, x2, w, mean.reshape(-1), rstd.reshape(-1), dx, dw_part, db_part, _ROWS)
    return dx.reshape(x.shape), dw_part.sum(0).astype(dout.dtype), db_part.sum(0).astype(dout.dtype)
