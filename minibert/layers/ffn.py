"""Position-wise feed-forward network: ``out = act(x W1^T + b1) W2^T + b2``.

BERT widens ``C -> F`` (``intermediate_size``, usually 4C), applies GELU, and narrows back ``F -> C``.
The dropout, residual and LayerNorm after it live in the encoder layer.
Shapes: ``B, T`` batch and sequence, ``C`` hidden, ``F`` intermediate.
Derivation: two linear layers (``docs/backward/linear.md``) around GELU (``docs/backward/gelu.md``).
"""
from .gelu import ACTIVATIONS
from .linear import linear_backward, linear_forward


def ffn_forward(x, w1, b1, w2, b2, act="gelu"):
    """(B, T, C), (F, C), (F,), (C, F), (C,) -> (B, T, C).  ``cache = (c1, act cache, c2, act)``."""
    act_forward, _ = ACTIVATIONS[act]
    h, c1 = linear_forward(x, w1, b1)  # (B, T, F)
    a, ca = act_forward(h)  # (B, T, F)
    out, c2 = linear_forward(a, w2, b2)  # (B, T, C)
    return out, (c1, ca, c2, act)


def ffn_backward(dout, cache):
    """(B, T, C) -> dx, dw1, db1, dw2, db2"""
    c1, ca, c2, act = cache
    _, act_backward = ACTIVATIONS[act]
    da, dw2, db2 = linear_backward(dout, c2)  # forward: out = a @ w2.T + b2
    dh = act_backward(da, ca)  # forward: a = act(h)
    dx, dw1, db1 = linear_backward(dh, c1)  # forward: h = x @ w1.T + b1
    return dx, dw1, db1, dw2, db2
