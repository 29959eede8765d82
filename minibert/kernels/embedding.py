"""numba twin of ``minibert/layers/embedding.py``'s backward: the scatter-add ``dW[ids] += dout``.

Two positions with the same token id add into the same row, so threads cannot split the positions
between them without racing.  They split the *columns* instead: each thread owns a slice of the C
features of every row and walks all positions in order, so the sums are formed in the same order as
``np.add.at`` forms them (the result is bit-identical to the reference).
"""
import numpy as np
from numba import prange

from ._vecmath import kernel


_COLS = 32  # columns per parallel task


@kernel
def _scatter_add(ids, dout, dw, cols):
    """dw[ids[n]] += dout[n] for n in order.  ids (N,), dout (N, C), dw (V, C)."""
    N, C = dout.shape
    for blk in prange((C + cols - 1) // cols):
        c0 = blk * cols
        c1 = min(C, c0 + cols)
        for n in range(N):
            row = ids[n]
            for c in range(c0, c1):
                dw[row, c] += dout[n, c]


def embedding_backward(dout, cache, padding_idx=None):
    """numba twin of ``minibert.layers.embedding.embedding_backward``.  (B, T, C) -> dw (V, C).

    ``padding_idx``: the gradient of that row is kept at zero (as ``torch.nn.Embedding``).
    """
    ids, V = cache
    C = dout.shape[-1]
    dw = np.zeros((V, C), dtype=dout.dtype)
    _scatter_add(np.ascontiguousarray(ids).reshape(-1), np.ascontiguousarray(dout).reshape(-1, C), dw, _COLS)
    if padding_idx is not None:
        dw[padding_idx] = 0
    return dw
