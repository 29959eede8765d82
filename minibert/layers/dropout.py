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
