"""``vexp`` and ``verf``: exp and erf that LLVM can vectorize, for the float32 kernels.

A loop that calls the C library's ``exp`` or ``erf`` runs one element at a time (~5-15 ns each);
NumPy's own float32 ``exp`` uses AVX2 and is ~20x faster, so a jitted softmax that calls libm loses
to the NumPy reference.  These functions use only +, *, /, floor, min/max and one bit-cast, which
the compiler turns into 8-wide AVX2 (16-wide AVX-512) code inside the caller's loop.

* float32: ``vexp`` is Cephes' ``expf`` (range reduction ``x = n ln2 + r``, a degree-7 polynomial for
  ``e^r`` and ``2^n`` built from its exponent bits), within ~1 ulp of the true value (tested on
  [-87, 88]); results that would fall below the smallest normal float (~1e-38) may be flushed to 0,
  and anything below e^-88, the masked scores of a softmax among them, is exactly 0.  ``verf`` is
  the rational fit that Eigen and XLA use for float32 (``generic_fast_erf_float``): x P(x^2) / Q(x^2)
  on [-4, 4], +-1 beyond (erf(4) rounds to 1 in float32); one division and 12 multiply-adds, no exp.
  Absolute error < 5e-7 in float32 (4.5e-7 at worst on a dense grid, tested in
  ``tests/kernels/test_kernels.py``).  It replaced the *Numerical Recipes* ``erfcc`` fit, which needed an
  ``exp`` too: the GELU passes are 2-3x faster with it (``docs/performance.md``).
* float64: both are the C library's ``exp`` and ``erf`` (the accuracy path: every float64 parity test
  goes through it), so float64 results are those of the NumPy references (NumPy's ``exp``, SciPy's
  ``erf``) to a few ulps.

Which one a kernel gets is decided by the argument's type when numba compiles it (``overload``).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# How every kernel is compiled.  error_model="numpy": a float division by zero gives inf/nan as in
# NumPy instead of raising, which removes a branch per division and lets loops vectorize.
# fastmath "reassoc" lets a sum be split over the 8 lanes of a vector register (the order of the
# additions changes, by rounding only); "contract" allows fused multiply-adds.
FAST = {"reassoc", "contract"}


def kernel(fn=None, *, parallel=True, fastmath=FAST):
    """``numba.njit`` with the options every minibert kernel uses (cache=True among them)."""
    def wrap(f):
        return njit(parallel=parallel, cache=True, error_model="numpy", fastmath=fastmath)(f)
    return wrap(fn) if fn is not None else wrap

_f = np.float32
_LOG2E = _f(1.44269504088896341)
_LN2_HI = _f(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO, the high part exact in a few bits
_LN2_LO = _f(-2.12194440e-4)
_X_MAX = _f(88.3762626647949)
_X_MIN = _f(-88.0)
_EXP_P = tuple(_f(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                              1.6666665459e-1, 5.0000001201e-1))
# erf(x) ~ x (A1 + A3 x^2 + ... + A13 x^12) / (B0 + B2 x^2 + ... + B8 x^8) on [-4, 4]: Eigen's
# generic_fast_erf_float (also XLA's ErfImpl32); the fit itself is within 6.5e-8 of erf in float64
_ERF_NUM = tuple(_f(c) for c in (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04,
                                 -5.69250639462346e-05, -2.10102402082508e-06, 2.77068142495902e-08,
                                 -2.72614225801306e-10))
_ERF_DEN = tuple(_f(c) for c in (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03,
                                 -2.13374055278905e-04, -1.45660718464996e-05))
_ERF_X_MAX = _f(4)
_ONE, _HALF, _B127 = _f(1), _f(0.5), np.int32(127)
P0, P1, P2, P3, P4, P5 = _EXP_P
A1, A3, A5, A7, A9, A11, A13 = _ERF_NUM
B0, B2, B4, B6, B8 = _ERF_DEN


@intrinsic
def _bits_to_float32(typingctx, i):
    """The float32 whose bit pattern is the int32 ``i`` (C's ``*(float *)&i``)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


def vexp(x):
    """exp(x), elementwise in jitted code (see the module docstring)."""
    return math.exp(x)


def verf(x):
    """erf(x), elementwise in jitted code (see the module docstring)."""
    return math.erf(x)


@overload(vexp, jit_options={"cache": True, "error_model": "numpy"})
def _vexp(x):
    if x == types.float32:
        def impl(x):
            x = min(max(x, _X_MIN), _X_MAX)
            n = np.floor(x * _LOG2E + _HALF)  # x = n ln2 + r, |r| <= ln2 / 2
            r = x - n * _LN2_HI
            r = r - n * _LN2_LO
            y = ((((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5) * r * r + r) + _ONE  # e^r
            # 2^n from its exponent bits; n <= -127 gives the bit pattern 0, i.e. 0.0 (flushed)
            two_n = _bits_to_float32(np.int32(max(np.int32(n) + _B127, np.int32(0))) << np.int32(23))
            return y * two_n
        return impl
    return lambda x: math.exp(x)


@overload(verf, jit_options={"cache": True, "error_model": "numpy"})
def _verf(x):
    if x == types.float32:
        def impl(x):
            x = min(max(x, -_ERF_X_MAX), _ERF_X_MAX)  # erf(+-4) is +-1 in float32
            x2 = x * x
            num = x * (A1 + x2 * (A3 + x2 * (A5 + x2 * (A7 + x2 * (A9 + x2 * (A11 + x2 * A13))))))
            den = B0 + x2 * (B2 + x2 * (B4 + x2 * (B6 + x2 * B8)))
            return num / den
        return impl
    return lambda x: math.erf(x)
