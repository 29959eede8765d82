"""GELU activation, in both forms BERT code uses, each with its own matching backward.

* ``gelu`` (exact; what BERT and transformers call ``"gelu"``):
  ``out = x * Phi(x)``, ``Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))`` the standard normal CDF.
* ``gelu_tanh`` (transformers' ``"gelu_new"``, GPT-2's approximation):
  ``out = 0.5 * x * (1 + tanh(u))``, ``u = sqrt(2/pi) * (x + 0.044715 x^3)``.

Using one form's forward with the other's backward is a classic silent bug (the outputs differ by up to
~5e-4, the derivatives by ~9e-4), so each pair sits together and is gradient-checked separately.  The cache is the input
``x``; everything else is recomputed.  Derivation: ``docs/backward/gelu.md``.
"""
import math

import numpy as np

from .erf import erf

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715


def gelu_forward(x):
    """(...) -> (...), ``cache = x``"""
    out = 0.5 * x * (1.0 + erf(x * _SQRT_HALF))
    return out.astype(x.dtype, copy=False), x


def gelu_backward(dout, cache):
    """(...) -> dx (...)"""
    x = cache
    # forward: out = x * Phi(x)  =>  dout/dx = Phi(x) + x * phi(x), phi the normal pdf
    cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return (dout * (cdf + x * pdf)).astype(x.dtype, copy=False)


def gelu_tanh_forward(x):
    """(...) -> (...), ``cache = x``"""
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x ** 3)
    out = 0.5 * x * (1.0 + np.tanh(u))
    return out.astype(x.dtype, copy=False), x


def gelu_tanh_backward(dout, cache):
    """(...) -> dx (...)"""
    x = cache
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x ** 3)
    t = np.tanh(u)
    # forward: out = 0.5 x (1 + tanh(u));  d tanh(u)/dx = (1 - t^2) * du/dx
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_C * x * x)
    dx = dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
    return dx.astype(x.dtype, copy=False)


def relu_forward(x):
    """(...) -> (...), ``cache = x``"""
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    x = cache
    return dout * (x > 0)


# hidden_act name (transformers' names) -> (forward, backward)
ACTIVATIONS = {
    "gelu": (gelu_forward, gelu_backward),
    "gelu_new": (gelu_tanh_forward, gelu_tanh_backward),
    "gelu_pytorch_tanh": (gelu_tanh_forward, gelu_tanh_backward),
    "relu": (relu_forward, relu_backward),
}
