"""numba twins of ``minibert/layers/dropout.py``.

Randomness: the twin draws its uniform numbers from the caller's ``numpy.random.Generator`` exactly
as the reference does (``rng.random(shape, dtype=float32)``), so for the same generator state both
backends drop the very same elements; only the compare-and-scale is jitted (one pass instead of
three).  Drawing the numbers was most of the cost: for NumPy's default generator (PCG64) ``uniforms``
makes the very same numbers in jitted code on every thread (``_pcg64.py``), ~2-4x faster.
``keep`` is cached as a bool array, as in the reference.
"""
import numpy as np
from numba import prange

from ._pcg64 import fill_uniforms
from ._vecmath import kernel

_scratch = np.empty(0, np.float32)


def uniforms(rng, shape):
    """``rng.random(shape, dtype=float32)``: the same numbers, and ``rng`` left in the same state.

    The numbers go into a reused scratch buffer (valid until the next call); a PCG64 generator
    (``default_rng``'s) is run by ``_pcg64.fill_uniforms`` on all threads, any other by NumPy."""
    global _scratch
    n = int(np.prod(shape))
    if _scratch.size < n:
        _scratch = np.empty(n, np.float32)
    u = _scratch[:n]
    if type(rng.bit_generator) is np.random.PCG64:
        fill_uniforms(rng.bit_generator, u)
    else:
        rng.random(dtype=np.float32, out=u)
    return u.reshape(shape)


@kernel
def _dropout_forward(x, u, p, scale, out, keep):
    """Twin of ``keep = u >= p; out = x * keep * scale`` on flat arrays (p float32, scale x.dtype)."""
    for i in prange(x.size):
        k = u[i] >= p
        keep[i] = k
        out[i] = x[i] * scale if k else 0.0


@kernel
def _dropout_backward(dout, keep, scale, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] * scale if keep[i] else 0.0


def dropout_forward(x, p, rng, training=True):
    """numba twin of ``minibert.layers.dropout.dropout_forward``.

    (...) -> (...).  ``cache = (keep (...) bool, scale)`` or ``None`` when dropout is off.
    """
    if not training or p == 0.0:
        return x, None
    u = uniforms(rng, x.shape)  # the reference's draws
    scale = 1.0 / (1.0 - p)
    out = np.empty(x.shape, x.dtype)
    keep = np.empty(x.shape, np.bool_)
    # the reference compares float32 u with p as float32 (NumPy casts the Python float to u's dtype)
    _dropout_forward(np.ascontiguousarray(x).reshape(-1), u.reshape(-1), np.float32(p), x.dtype.type(scale),
                     out.reshape(-1), keep.reshape(-1))
    return out, (keep, scale)


def dropout_backward(dout, cache):
    """numba twin of ``minibert.layers.dropout.dropout_backward``."""
    if cache is None:
        return dout
    keep, scale = cache
    # forward: out = x * keep * scale
    dx = np.empty(dout.shape, dout.dtype)
    _dropout_backward(np.ascontiguousarray(dout).reshape(-1), keep.reshape(-1), dout.dtype.type(scale),
                      dx.reshape(-1))
    return dx
