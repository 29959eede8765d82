"""Twin of ``minibert/layers/linear.py`` without numba: the work is BLAS products, run through
``kernels/_blas.py``'s ``matmul`` (one slab per thread, each on a one-thread OpenBLAS), and the
bias is added in place instead of making the temporary of ``x @ w.T + b``."""
from ._blas import matmul


def linear_forward(x, w, b):
    """Twin of ``minibert.layers.linear.linear_forward``.  (..., I), (O, I), (O,) -> (..., O)"""
    O, I = w.shape
    out = matmul(x.reshape(-1, I), w.T).reshape(*x.shape[:-1], O)  # (..., O)
    out += b
    return out, (x, w)


def linear_backward(dout, cache):
    """Twin of ``minibert.layers.linear.linear_backward``.  (..., O) -> dx (..., I), dw (O, I), db (O,)"""
    x, w = cache
    O, I = w.shape
    dout2 = dout.reshape(-1, O)  # (N, O)
    # forward: out = x @ w.T + b
    dx = matmul(dout2, w).reshape(*dout.shape[:-1], I)  # (..., I)
    dw = matmul(dout2.T, x.reshape(-1, I))  # (O, I): summed over the N rows
    db = dout2.sum(axis=0)  # (O,)
    return dx, dw, db
