"""tanh, used by BERT's pooler.  Cache the output: ``d tanh(x)/dx = 1 - tanh(x)^2``.

Derivation (and the pooler around it): ``docs/backward/tanh_pooler.md``.
"""
import numpy as np


def tanh_forward(x):
    """(...) -> (...), ``cache = out``"""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    out = cache
    # forward: out = tanh(x)
    return dout * (1.0 - out * out)
