"""numba twins of ``minibert/layers/dropout.py``.

Randomness: the twin draws its uniform numbers from the caller's ``numpy.random.Generator`` exactly
as the reference does (``rng.random(shape, dtype=float32)``), so for the same generator state both
backends drop the very same elements; only the compare-and-scale is jitted (one pass instead of
three).  Drawing the numbers is most of the cost; ``uniforms`` halves it without changing them.
``keep`` is cached as a bool array, as in the reference.
"""
import concurrent.futures

import numba
import numpy as np
from numba import prange

from ._vecmath import kernel

_scratch = np.empty(0, np.float32)
_PARALLEL_MIN = 1 << 19  # below this many numbers, one thread draws them all (measured)
_pool = None
_ahead = None  # a reused Generator: creating one seeds it from the OS, ~50 us


def uniforms(rng, shape):
    """``rng.random(shape, dtype=float32)``: the same numbers, and ``rng`` left in the same state.

    Two speed-ups that change nothing in the result: the numbers go into a reused scratch buffer
    (valid until the next call), and for a large draw from a PCG64 generator (``default_rng``'s) two
    threads share the work.  PCG64 can jump ahead (``advance``): a copy of the generator, moved past
    the first half's draws, makes the second half while ``rng`` makes the first; ``rng`` then takes
    the copy's final state.  A float32 uses half of one 64-bit draw (the low half first, the high
    half kept for the next call, ``has_uint32``), so the first half gets an even count.
    """
    global _scratch, _pool, _ahead
    n = int(np.prod(shape))
    if _scratch.size < n:
        _scratch = np.empty(n, np.float32)
    u = _scratch[:n]
    bitgen = rng.bit_generator
    if n < _PARALLEL_MIN or type(bitgen) is not np.random.PCG64 or numba.get_num_threads() < 2:
        rng.random(dtype=np.float32, out=u)
        return u.reshape(shape)
    start = 0
    if bitgen.state["has_uint32"]:  # a half draw is pending: it is the first number
        rng.random(dtype=np.float32, out=u[:1])
        start = 1
    first = ((n - start) // 2) & ~1  # even: the first half ends on a whole draw
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="minibert-rng")
        _ahead = np.random.Generator(np.random.PCG64(0))
    ahead = _ahead
    ahead.bit_generator.state = bitgen.state
    ahead.bit_generator.advance(first // 2)  # past the first half's 64-bit draws
    second = _pool.submit(ahead.random, dtype=np.float32, out=u[start + first:])  # NumPy releases the GIL
    rng.random(dtype=np.float32, out=u[start:start + first])
    second.result()
    bitgen.state = ahead.bit_generator.state
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
