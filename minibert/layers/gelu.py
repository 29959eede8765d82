"""GELU activation, in both forms BERT code uses, each with its own matching backward.

* ``gelu`` (exact; what BERT and transformers call ``"gelu"``):
  ``out = x * Phi(x)``, ``Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))`` the standard normal CDF.
* ``gelu_tanh`` (transformers' ``"gelu_new"``, GPT-2's approximation):
  ``out = 0.5 * x * (1 + tanh(u))``, ``u = sqrt(2/pi) * (x + 0.044715 x^3)``.

Using one form's forward with the other's backward is a classic silent bug (the outputs differ by up to
~5e-4, the derivatives by ~9e-4), so each pair sits together and is gradient-checked separately.  The cache is the input
``x``; everything else is recomputed.  Derivation: ``docs/backward/gelu.md``.
Exercise 4 of ``minibert exercises``: the code under each ``# TODO``, checked by ``test_gelu``.
"""
import math

import numpy as np
from scipy.special import erf  # NumPy has none; SciPy's is a compiled loop per dtype (float32 in, float32 out)

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715


def gelu_forward(x):
    """(...) -> (...), ``cache = x``"""
    # TODO: out = x * Phi(x), with Phi(x) = 0.5 * (1 + erf(x / sqrt(2))).
    #   hint: use the constants above (_SQRT_HALF is 1/sqrt(2)).
    ### BEGIN SOLUTION
    out = 0.5 * x * (1.0 + erf(x * _SQRT_HALF))
    ### END SOLUTION
    return out.astype(x.dtype, copy=False), x


def gelu_backward(dout, cache):
    """(...) -> dx (...)"""
    x = cache
    # forward: out = x * Phi(x)
    # TODO: dx = dout * d(x Phi(x))/dx.
    #   hint: product rule; Phi' is the standard normal density phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    ### BEGIN SOLUTION
    cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    dx = dout * (cdf + x * pdf)
    ### END SOLUTION
    return dx.astype(x.dtype, copy=False)


def gelu_tanh_forward(x):
    """(...) -> (...), ``cache = x``"""
    # TODO: out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
    ### BEGIN SOLUTION
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x ** 3)
    out = 0.5 * x * (1.0 + np.tanh(u))
    ### END SOLUTION
    return out.astype(x.dtype, copy=False), x


def gelu_tanh_backward(dout, cache):
    """(...) -> dx (...)"""
    x = cache
    # forward: out = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
    # TODO: dx = dout * d out/dx for *this* form (not the exact one: they differ by ~1e-3).
    #   hint: product rule again, and d tanh(u)/dx = (1 - tanh(u)^2) du/dx.
    ### BEGIN SOLUTION
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x ** 3)
    t = np.tanh(u)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_C * x * x)
    dx = dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
    ### END SOLUTION
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


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_gelu`` runs them,
    and so do ``tests/layers/test_layers_gradcheck.py`` and the grader (``minibert exercises check``, on your
    functions).  Each ``GradCase``: a title, the pair, the inputs the gradients are taken of."""
    from minibert.gradcheck import GradCase
    x = rng.standard_normal((2, 5, 7)) * 2.5  # about [-7, 7]: both tails
    return [GradCase("exact GELU, x (2, 5, 7)", gelu_forward, gelu_backward, inputs=dict(x=x)),
            GradCase("tanh GELU, the same x", gelu_tanh_forward, gelu_tanh_backward, inputs=dict(x=x))]


def test_gelu():
    """The exercise's checks: both forms in float64, on inputs wide enough to reach both tails."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))
    ### BEGIN HIDDEN TESTS
    grid = np.linspace(-3, 3, 101)
    gap = np.abs(gelu_forward(grid)[0] - gelu_tanh_forward(grid)[0]).max()
    assert 1e-4 < gap < 1e-2, f"the two forms should differ by ~5e-4, got {gap:.1e}"
    np.testing.assert_allclose(gelu_forward(np.array([0.0, 1.0]))[0], [0.0, 0.8413447460685429], rtol=1e-14)
    assert gelu_forward(grid.astype(np.float32))[0].dtype == np.float32, "keep the input dtype"
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_gelu()
