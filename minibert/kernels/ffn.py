"""numba twin of ``minibert/layers/ffn.py``: ``out = gelu(x W1^T + b1) W2^T + b2``.

The two products are BLAS (``kernels/_blas.py``: one slab per thread); the first bias and the GELU are one jitted pass (``bias_gelu_forward``), and
in the backward the GELU derivative and the bias gradient ``db1`` are one pass too
(``gelu_bias_backward``, both in ``kernels/gelu.py``).  Activations other than exact GELU run the
reference.  Shapes: ``N = B*T`` rows, ``C`` hidden, ``F`` intermediate.
"""
from ..layers.ffn import FFNCache
from ..layers.ffn import ffn_backward as _ffn_backward_reference
from ..layers.ffn import ffn_forward as _ffn_forward_reference
from ._blas import matmul
from .gelu import bias_gelu_forward, gelu_bias_backward


def ffn_forward(x, w1, b1, w2, b2, act="gelu"):
    """numba twin of ``minibert.layers.ffn.ffn_forward`` (exact GELU; other activations use the
    reference).  (B, T, C), (F, C), (F,), (C, F), (C,) -> (B, T, C).  ``FFNCache``."""
    if act != "gelu":
        return _ffn_forward_reference(x, w1, b1, w2, b2, act)
    C, F = x.shape[-1], w1.shape[0]
    x2 = x.reshape(-1, C)
    h = matmul(x2, w1.T)  # (N, F)
    a, h = bias_gelu_forward(h, b1)  # h += b1; a = gelu(h)
    out = matmul(a, w2.T)  # (N, C)
    out += b2
    shape = x.shape[:-1]
    return out.reshape(*shape, C), FFNCache((x, w1), h.reshape(*shape, F), (a.reshape(*shape, F), w2), act)


def ffn_backward(dout, cache):
    """numba twin of ``minibert.layers.ffn.ffn_backward``.  (B, T, C) -> dx, dw1, db1, dw2, db2"""
    (x, w1), h, (a, w2), act = cache
    if act != "gelu":
        return _ffn_backward_reference(dout, cache)
    C, F = x.shape[-1], w1.shape[0]
    dout2 = dout.reshape(-1, C)
    # forward: out = a @ w2.T + b2
    da = matmul(dout2, w2)  # (N, F)
    dw2 = matmul(dout2.T, a.reshape(-1, F))
    db2 = dout2.sum(axis=0)
    # forward: a = gelu(h), h = x @ w1.T + b1
    dh, db1 = gelu_bias_backward(da, h.reshape(-1, F))
    dx = matmul(dh, w1)  # (N, C)
    dw1 = matmul(dh.T, x.reshape(-1, C))
    return dx.reshape(x.shape), dw1, db1, dw2, db2
