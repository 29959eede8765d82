"""Linear (fully connected) layer: ``out = x @ W.T + b``.

The weight uses PyTorch's ``(out_features, in_features)`` layout, so a minibert state dict and a
transformers state dict hold the very same arrays.  Derivation: ``docs/backward/linear.md``.

Shapes: ``N`` = any leading dims (e.g. ``B, T``), ``I`` = in features, ``O`` = out features.
"""
import numpy as np


def linear_forward(x, w, b):
    """(..., I), (O, I), (O,) -> (..., O)

    Returns ``out, cache`` with ``cache = (x, w)``: the input is needed for ``dW`` and the weight for
    ``dx``; both are references, not copies.
    """
    out = x @ w.T + b  # (..., O)
    return out, (x, w)


def linear_backward(dout, cache):
    """(..., O) -> dx (..., I), dw (O, I), db (O,)"""
    x, w = cache
    O, I = w.shape
    # forward: out = x @ w.T + b
    dx = dout @ w  # (..., I)
    dout2 = dout.reshape(-1, O)  # (N, O)
    dw = dout2.T @ x.reshape(-1, I)  # (O, I): every row of x contributes, so sum over N
    db = dout2.sum(axis=0)  # (O,): the bias was broadcast over N, so its gradient sums over N
    return dx, dw, db
