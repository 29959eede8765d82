"""Matrix products cut into slabs, one slab per thread, each slab on a one-thread OpenBLAS.

``matmul(a, b, out=None)`` is ``np.matmul(a, b, out=out)``: same shapes, same broadcasting rules for
what the twins pass it, the same BLAS underneath.  What changes is who runs it.  NumPy's OpenBLAS
splits a product over its own worker threads, and after each product those workers *spin* for about
2^28 cycles (~0.1 s) waiting for the next one.  Every numba kernel of a step follows a product
(softmax after q k^T, GELU after x W1^T, cross-entropy after the MLM decoder), so it ran on cores
that a spinning OpenBLAS thread was sharing: the 641 x 8192 cross-entropy took 8 ms right after the
decoder's product and 4.8 ms after a pause (AMD EPYC, 2 threads).  OpenBLAS also hands each
per-head product of attention (128 x 128 x 64, 64-128 of them per call) to its threads one by one.

Here the rows of ``a`` (or the leading axis of a stack of matrices) are cut into one slab per thread
(numba's thread count, so one knob sets both), OpenBLAS is set to one thread for the duration of the
call, and our threads run one slab each.  No OpenBLAS worker ever gets work, so none spins; ours wait
on a lock, which costs nothing.  Each output element is the same dot product over the whole inner
axis as before (OpenBLAS cuts the rows too when it threads a product), so results match
``np.matmul`` to rounding.  Measured in docs/performance.md ("Products on our threads").

When NumPy's BLAS is not the OpenBLAS NumPy's wheels ship (MKL, Accelerate, a system BLAS), or one
thread is asked for, ``matmul`` is plain ``np.matmul``.
"""
import ctypes
import glob
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# below this many multiply-adds a product is not worth cutting: OpenBLAS itself runs it on one thread
SMALL = 1 << 18


def _openblas_thread_setters():
    """(get_num_threads, set_num_threads) of the OpenBLAS inside NumPy's wheel, or None.

    NumPy >= 2 ships ``libscipy_openblas64_*.so`` (symbols ``scipy_openblas_*64_``); NumPy 1.2x
    shipped ``libopenblas64_p-*.so`` (``openblas_*64_``)."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "lib*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    set_.restype, set_.argtypes = None, [ctypes.c_int]
                    return get, set_
    return None


OPENBLAS = _openblas_thread_setters()
_pool, _pool_size = None, 0
_pool_lock = threading.Lock()


def _workers(n):
    """A pool of ``n`` threads (made once, remade if numba's thread count changes)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(n, thread_name_prefix="minibert-matmul"), n
        return _pool


def _forget_pool_in_child():
    """A forked child has none of its parent's threads: it makes its own pool on first use."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def threads():
    """How many slabs: numba's thread count (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``)."""
    return numba.get_num_threads()


def _slabs(size, n):
    """[lo, hi) bounds cutting ``range(size)`` into ``n`` nearly equal parts."""
    bounds = [size * i // n for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def matmul(a, b, out=None):
    """``np.matmul(a, b, out=out)`` run as one slab per thread, each on a one-thread OpenBLAS.

    2-D: a (M, K) @ b (K, N) -> (M, N), cut along M.  Stacks: a (S, ..., M, K) @ b (S, ..., K, N)
    with the same leading axes -> (S, ..., M, N), cut along S.  ``a``, ``b`` and ``out`` may be
    strided views (transposes, heads of a merged (B*T, C) array): each slab is a view of them.
    """
    n = threads()
    if OPENBLAS is None or n < 2 or a.ndim < 2 or b.ndim < 2 or a.ndim != b.ndim:
        return np.matmul(a, b, out=out)
    if a.ndim > 2 and a.shape[:-2] != b.shape[:-2]:
        return np.matmul(a, b, out=out)  # broadcasting stacks: not used by the twins
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    cut = a.shape[0]  # rows of a 2-D product, or the first stack axis
    if cut < n or math.prod(a.shape[:-2]) * M * K * N < SMALL:
        return np.matmul(a, b, out=out)
    shape = a.shape[:-1] + (N,)
    if out is None:
        out = np.empty(shape, np.result_type(a, b))
    elif out.shape != shape:
        return np.matmul(a, b, out=out)  # NumPy's own error names the shapes
    if a.ndim == 2:
        parts = [(a[lo:hi], b, out[lo:hi]) for lo, hi in _slabs(cut, n)]
    else:
        parts = [(a[lo:hi], b[lo:hi], out[lo:hi]) for lo, hi in _slabs(cut, n)]
    get_threads, set_threads = OPENBLAS
    before = get_threads()
    set_threads(1)
    try:
        futures = [_workers(n - 1).submit(np.matmul, x, y, out=o) for x, y, o in parts[1:]]
        x, y, o = parts[0]
        try:
            np.matmul(x, y, out=o)  # this thread runs the first slab
        finally:
            errors = [f.exception() for f in futures]  # waits for every slab, even after an error
    finally:
        set_threads(before)
    for error in errors:
        if error is not None:
            raise error
    return out
