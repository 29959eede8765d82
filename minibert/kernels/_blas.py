"""Matrix products cut into slabs, one slab per thread, each slab a one-thread OpenBLAS call made from
numba's own threads.

``matmul(a, b, out=None)`` is ``np.matmul(a, b, out=out)``: same shapes, same broadcasting rules for
what the twins pass it, the same BLAS underneath.  What changes is who runs it.

* NumPy's OpenBLAS splits a product over its own worker threads, and after each product those
  workers *spin* for about 2^28 cycles (~0.1 s) waiting for the next one.  Every numba kernel of a step
  follows a product (softmax after q k^T, GELU after x W1^T, cross-entropy after the MLM decoder), so
  it ran on cores that a spinning OpenBLAS thread was sharing.  OpenBLAS also hands each per-head
  product of attention (128 x 128 x 64, 64-128 of them per call) to its threads one by one.
* So the rows of ``a`` (or the matrices of a stack) are cut into one slab per thread, OpenBLAS is set
  to one thread for the call, and a numba ``prange`` loop calls OpenBLAS's ``cblas_sgemm`` (or
  ``dgemm``) once per slab, by its address (``_gemm``).  No OpenBLAS worker ever gets work.
* The slabs run on the same threads as every other kernel (numba's OpenMP threads,
  ``minibert/kernels/__init__.py``).  Those wait for the next kernel spinning a little before they
  sleep, so starting one costs a few microseconds.  The pool of Python threads this replaced cost
  ~170 us per product on the AMD VM of docs/performance.md, waking a sleeping thread each time.

Each output element is the same dot product over the whole inner axis as in ``np.matmul`` (OpenBLAS
cuts the rows too when it threads a product), so results match it to rounding.  Measured in
docs/performance.md ("Products on our threads", "One pool of threads").

When NumPy's BLAS is not the 64-bit-integer OpenBLAS NumPy's wheels ship (MKL, Accelerate, a system
BLAS), one thread is asked for, or an operand is not a BLAS layout, ``matmul`` is plain ``np.matmul``.
"""
import ctypes
import glob
import math
import os

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from ._vecmath import kernel

# below this many multiply-adds a product is not worth cutting: OpenBLAS itself runs it on one thread
SMALL = 1 << 18
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's enums
forked_from_openmp = False  # set in a child forked after numba's OpenMP threads ran (kernels/__init__.py)


def _openblas():
    """``(get_num_threads, set_num_threads, {float32: sgemm address, float64: dgemm address})`` of the
    OpenBLAS inside NumPy's wheel, or None.

    NumPy >= 2 ships ``libscipy_openblas64_*.so`` (symbols ``scipy_openblas_*64_``, ``scipy_cblas_*64_``);
    NumPy 1.2x shipped ``libopenblas64_p-*.so`` (``openblas_*64_``, ``cblas_*64_``).  Both take 64-bit
    integers (the ``64_`` suffix), which is what ``_gemm`` passes."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "lib*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, cblas in (("scipy_openblas", "scipy_cblas"), ("openblas", "cblas")):
            names = (f"{prefix}_get_num_threads64_", f"{prefix}_set_num_threads64_", f"{cblas}_sgemm64_",
                     f"{cblas}_dgemm64_")
            get, set_, sgemm, dgemm = (getattr(lib, n, None) for n in names)
            if None in (get, set_, sgemm, dgemm):
                continue
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            address = {np.dtype(np.float32): ctypes.cast(sgemm, ctypes.c_void_p).value,
                       np.dtype(np.float64): ctypes.cast(dgemm, ctypes.c_void_p).value}
            return get, set_, address
    return None


_LIB = _openblas()
OPENBLAS = _LIB[:2] if _LIB else None  # (get_num_threads, set_num_threads)


def threads():
    """How many slabs: numba's thread count (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``)."""
    return numba.get_num_threads()


@intrinsic
def _gemm(typingctx, fn, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc):
    """``cblas_?gemm(RowMajor, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc)`` through the
    function's address ``fn`` (int64), with ``a``, ``b``, ``c`` addresses (int64).  An address given at
    run time, not a ctypes object, keeps the calling kernel in numba's on-disk cache."""
    sig = types.void(fn, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        real = context.get_value_type(signature.args[6])  # float or double
        i32, i64, ptr = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real,
                                               ptr, i64])
        f, ta_, tb_, M_, N_, K_, alpha_, a_, lda_, b_, ldb_, beta_, c_, ldc_ = args
        builder.call(builder.inttoptr(f, fnty.as_pointer()),
                     [ir.Constant(i32, ROW_MAJOR), builder.trunc(ta_, i32), builder.trunc(tb_, i32), M_, N_, K_,
                      alpha_, builder.inttoptr(a_, ptr), lda_, builder.inttoptr(b_, ptr), ldb_, beta_,
                      builder.inttoptr(c_, ptr), ldc_])
        return context.get_dummy_value()
    return sig, codegen


@kernel
def _gemm_slabs(fn, ta, tb, M, N, K, one, zero, a, lda, b, ldb, c, ldc, lead, sa, sb, sc, slabs, row_a, row_c):
    """Every product of a stack, each cut into ``slabs`` slabs of rows, all in parallel.

    a, b, c: addresses of the first matrices; lead (L,) the stack's leading shape, sa/sb/sc (L,) their
    byte strides (L = 0 for a 2-D product); row_a, row_c: the byte strides of a row of a and of c."""
    n_matrices = 1
    for d in range(lead.size):
        n_matrices *= lead[d]
    for work in prange(n_matrices * slabs):
        matrix, slab = work // slabs, work % slabs
        off_a = off_b = off_c = 0
        rest = matrix
        for d in range(lead.size - 1, -1, -1):  # the matrix's index along each leading axis
            i = rest % lead[d]
            rest //= lead[d]
            off_a += i * sa[d]
            off_b += i * sb[d]
            off_c += i * sc[d]
        lo, hi = M * slab // slabs, M * (slab + 1) // slabs
        if hi > lo:
            _gemm(fn, ta, tb, hi - lo, N, K, one, a + off_a + lo * row_a, lda, b + off_b, ldb, zero,
                  c + off_c + lo * row_c, ldc)


def _layout(x):
    """(trans, leading dimension) of the last two axes of ``x`` as BLAS reads a matrix, or None.

    Rows contiguous: (NO_TRANS, row stride); columns contiguous: the transpose of such a matrix,
    (TRANS, column stride).  Strides in elements; a view of heads (B, A, T, D) of a (B*T, C) array
    is (NO_TRANS, C), and its ``transpose(0, 1, 3, 2)`` is (TRANS, C)."""
    r, c = x.shape[-2:]
    s0, s1 = x.strides[-2], x.strides[-1]
    if s0 % x.itemsize or s1 % x.itemsize:
        return None
    s0, s1 = s0 // x.itemsize, s1 // x.itemsize
    if s1 == 1 and s0 >= max(1, c):
        return NO_TRANS, s0
    if s0 == 1 and s1 >= max(1, r):
        return TRANS, s1
    return None


def matmul(a, b, out=None):
    """``np.matmul(a, b, out=out)`` run as one slab per thread, each on a one-thread OpenBLAS.

    2-D: a (M, K) @ b (K, N) -> (M, N), cut along M.  Stacks: a (S, ..., M, K) @ b (S, ..., K, N)
    with the same leading axes -> (S, ..., M, N), one matrix at a time, the matrices shared among the
    threads.  ``a``, ``b`` and ``out`` may be strided views (transposes, heads of a merged (B*T, C)
    array) that BLAS can read; others are copied.
    """
    n = threads()
    if (_LIB is None or forked_from_openmp or n < 2 or a.ndim < 2 or a.ndim != b.ndim or a.dtype != b.dtype
            or a.dtype not in _LIB[2] or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]):
        return np.matmul(a, b, out=out)  # NumPy's own result, or its own error naming the shapes
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    if math.prod(a.shape[:-2]) * M * K * N < SMALL or K == 0:
        return np.matmul(a, b, out=out)
    shape = a.shape[:-1] + (N,)
    if out is not None and (out.shape != shape or out.dtype != a.dtype or np.may_share_memory(out, a)
                            or np.may_share_memory(out, b)):
        return np.matmul(a, b, out=out)  # NumPy copies what overlaps; the slabs would read what they wrote
    if _layout(a) is None:
        a = np.ascontiguousarray(a)
    if _layout(b) is None:
        b = np.ascontiguousarray(b)
    target = out
    if out is None or _layout(out) is None or _layout(out)[0] != NO_TRANS:
        target = np.empty(shape, a.dtype)
    (ta, lda), (tb, ldb), (_, ldc) = _layout(a), _layout(b), _layout(target)
    lead = np.array(a.shape[:-2], np.int64)
    strides = [np.array(x.strides[:-2], np.int64) for x in (a, b, target)]
    slabs = n if a.ndim == 2 else 1  # a stack has enough matrices to share
    get_threads, set_threads, address = _LIB
    before = get_threads()
    set_threads(1)
    try:
        _gemm_slabs(address[a.dtype], ta, tb, M, N, K, a.dtype.type(1), a.dtype.type(0), a.ctypes.data, lda,
                    b.ctypes.data, ldb, target.ctypes.data, ldc, lead, *strides, slabs, a.strides[-2],
                    target.strides[-2])
    finally:
        set_threads(before)
    if target is not out and out is not None:
        out[...] = target
        return out
    return target
