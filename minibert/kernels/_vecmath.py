"""``vexp`` and ``verf``: exp and erf that LLVM can vectorize, for the float32 kernels.

A loop that calls the C library's ``exp`` or ``erf`` runs one element at a time (~5-15 ns each);
NumPy's own float32 ``exp`` uses AVX2 and is ~20x faster, so a jitted softmax that calls libm loses
to the NumPy reference.  These functions use only +, *, /, floor, min/max and one bit-cast, which
the compiler turns into 8-wide AVX2 code inside the caller's loop.

* float32: ``vexp`` is Cephes' ``expf`` (range reduction ``x = n ln2 + r``, a degree-7 polynomial for
  ``e^r`` and ``2^n`` built from its exponent bits), within ~1 ulp of the true value (tested on
  [-87, 88]); results that would fall below the smallest normal float (~1e-38) may be flushed to 0,
  and anything below e^-88, the masked scores of a softmax among them, is exactly 0.  ``verf`` is ``1 - erfc`` with the
  Chebyshev fit of *Numerical Recipes* (``erfcc``: fractional error < 1.2e-7), absolute error
  < 5e-7 in float32 (tested in ``tests/test_kernels.py``).
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
_ERFC_C = tuple(_f(c) for c in (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
                               -1.13520398, 1.48851587, -0.82215223, 0.17087277))
_ONE, _HALF, _TWO, _ZERO, _B127 = _f(1), _f(0.5), _f(2), _f(0), np.int32(127)
P0, P1, P2, P3, P4, P5 = _EXP_P
E0, E1, E2, E3, E4, E5, E6, E7, E8, E9 = _ERFC_C


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
            z = abs(x)
            t = _ONE / (_ONE + _HALF * z)
            poly = E0 + t * (E1 + t * (E2 + t * (E3 + t * (E4 + t * (E5 + t * (E6 + t * (E7 + t * (E8 + t * E9))))))))
            erfc = t * vexp(-z * z + poly)  # erfc(|x|), fractional error < 1.2e-7
            e = _ONE - erfc
            return e if x >= _ZERO else -e
        return impl
    return lambda x: math.erf(x)
