"""Inverted dropout: in training zero each element with probability ``p`` and scale the survivors by
``1 / (1 - p)`` so the expected value is unchanged; in evaluation it is the identity.

The keep-mask is drawn from the caller's ``numpy.random.Generator`` (same seed, same masks) and kept
in the cache for the backward, which applies the very same mask.  Derivation: ``docs/backward/dropout.md``.
"""
import numpy as np


def dropout_forward(x, p, rng, training=True):
    """(...) -> (...).  ``cache = (keep (...) bool, scale)`` or ``None`` when dropout is off."""
    if not training or p == 0.0:
        return x, None
    keep = rng.random(x.shape, dtype=np.float32) >= p  # (...) bool
    scale = 1.0 / (1.0 - p)
    return x * keep * x.dtype.type(scale), (keep, scale)


def dropout_backward(dout, cache):
    if cache is None:
        return dout
    keep, scale = cache
    # forward: out = x * keep * scale
    return dout * keep * dout.dtype.type(scale)


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_dropout`` runs them,
    and so does ``tests/layers/test_layers_gradcheck.py``."""
    from minibert.gradcheck import GradCase
    return [GradCase("p = 0.2, x (3, 4, 6), the same mask on every call", dropout_forward, dropout_backward,
                     inputs=dict(x=rng.standard_normal((3, 4, 6))),
                     args=dict(p=0.2, rng=np.random.default_rng(3), training=True))]


def test_dropout():
    """Checked against centered differences in float64."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))


if __name__ == "__main__":
    test_dropout()
