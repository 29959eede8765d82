"""Position-wise feed-forward network: ``out = act(x W1^T + b1) W2^T + b2``.

BERT widens ``C -> F`` (``intermediate_size``, usually 4C), applies GELU, and narrows back ``F -> C``.
The dropout, residual and LayerNorm after it live in the encoder layer.
Shapes: ``B, T`` batch and sequence, ``C`` hidden, ``F`` intermediate.
Derivation: two linear layers (``docs/backward/linear.md``) around GELU (``docs/backward/gelu.md``).
"""
from typing import NamedTuple

from .gelu import ACTIVATIONS
from .linear import linear_backward, linear_forward


class FFNCache(NamedTuple):
    """What ``ffn_backward`` needs (the numba twin's cache has the same fields)."""
    linear1: tuple      # (x (B, T, C), w1 (F, C)): the cache of the widening linear layer
    act_input: object   # h (B, T, F): the activation's input, its cache
    linear2: tuple      # (a (B, T, F), w2 (C, F)): the cache of the narrowing linear layer
    act: str            # the activation's name (``config.hidden_act``)


def ffn_forward(x, w1, b1, w2, b2, act="gelu"):
    """(B, T, C), (F, C), (F,), (C, F), (C,) -> (B, T, C), ``FFNCache``."""
    act_forward, _ = ACTIVATIONS[act]
    h, c1 = linear_forward(x, w1, b1)  # (B, T, F)
    a, ca = act_forward(h)  # (B, T, F)
    out, c2 = linear_forward(a, w2, b2)  # (B, T, C)
    return out, FFNCache(c1, ca, c2, act)


def ffn_backward(dout, cache):
    """(B, T, C) -> dx, dw1, db1, dw2, db2"""
    c1, ca, c2, act = cache
    _, act_backward = ACTIVATIONS[act]
    da, dw2, db2 = linear_backward(dout, c2)  # forward: out = a @ w2.T + b2
    dh = act_backward(da, ca)  # forward: a = act(h)
    dx, dw1, db1 = linear_backward(dh, c1)  # forward: h = x @ w1.T + b1
    return dx, dw1, db1, dw2, db2


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_ffn`` runs them,
    and so does ``tests/layers/test_layers_gradcheck.py``."""
    from minibert.gradcheck import GradCase
    B, T, C, F = 2, 5, 12, 7
    params = dict(x=rng.standard_normal((B, T, C)), w1=rng.standard_normal((F, C)) * 0.5, b1=rng.standard_normal(F),
                  w2=rng.standard_normal((C, F)) * 0.5, b2=rng.standard_normal(C))
    return [GradCase(f"x (2, 5, 12), F = 7, act={act!r}", ffn_forward, ffn_backward, inputs=params,
                     args=dict(act=act)) for act in ("gelu", "gelu_new")]


def test_ffn():
    """Checked against centered differences in float64, with each form of GELU."""
    import numpy as np
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))


if __name__ == "__main__":
    test_ffn()
