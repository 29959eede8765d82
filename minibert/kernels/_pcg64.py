"""NumPy's PCG64 in numba: the very float32 numbers ``rng.random(n, dtype=np.float32)`` returns, made
by all threads at once, 2-3x faster than NumPy makes them (``docs/performance.md``).

Dropout must draw the reference's numbers from the caller's generator, so that both backends drop the
same elements.  NumPy makes them one at a time through a function pointer (2.5-4.5 ns each here); this
module runs the same generator in jitted code:

* PCG64 (O'Neill's XSL-RR 128/64, NumPy's default bit generator) is a 128-bit linear congruential
  generator ``state = state * MULT + inc (mod 2^128)``; each step outputs 64 bits,
  ``rotr64(hi ^ lo, hi >> 58)`` of the new state.  numba has no 128-bit integers, so a state is two
  uint64 halves ``(hi, lo)`` and the products are assembled from 64-bit ones.
* A float32 uses 32 of those bits, the low half of a draw first, then the high half
  (``has_uint32``/``uinteger`` in the generator's state hold a pending high half): ``u = (u32 >> 8) * 2^-24``.
* An LCG can jump ahead: ``advance(state, k)`` is k steps in O(log k) products.  Each parallel task
  jumps straight to the start of its own chunk of numbers, so the threads never wait on each other
  and the numbers do not depend on the thread count.

``tests/kernels/test_kernels.py`` checks the numbers and the generator's final state against NumPy's, bit for bit.
"""
import numpy as np
from numba import prange

from ._vecmath import kernel

_U64 = np.uint64
MASK64 = (1 << 64) - 1
MULT = 0x2360ED051FC65DA44385DF649FCCF645  # PCG_DEFAULT_MULTIPLIER_128, as in NumPy's pcg64.h
_MULT_HI, _MULT_LO = _U64(MULT >> 64), _U64(MULT & MASK64)
_M32, _S32, _S58, _ONE, _ZERO = _U64(0xFFFFFFFF), _U64(32), _U64(58), _U64(1), _U64(0)
_S8, _S63, _S64 = _U64(8), _U64(63), _U64(64)
_TWO_M24 = np.float32(2.0 ** -24)
CHUNK = 1 << 15  # numbers per parallel task (even: a task starts on a whole 64-bit draw)
LANES = 8  # independent runs inside a task
SUB = CHUNK // LANES


@kernel(parallel=False)
def _mulhi(a, b):
    """The high 64 bits of the 128-bit product of two uint64."""
    a_lo, a_hi, b_lo, b_hi = a & _M32, a >> _S32, b & _M32, b >> _S32
    lo_lo, lo_hi, hi_lo = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo
    mid = (lo_lo >> _S32) + (lo_hi & _M32) + (hi_lo & _M32)
    return a_hi * b_hi + (lo_hi >> _S32) + (hi_lo >> _S32) + (mid >> _S32)


@kernel(parallel=False)
def _mul(a_hi, a_lo, b_hi, b_lo):
    """(a * b) mod 2^128, as (hi, lo)."""
    return _mulhi(a_lo, b_lo) + a_lo * b_hi + a_hi * b_lo, a_lo * b_lo


@kernel(parallel=False)
def _add(a_hi, a_lo, b_hi, b_lo):
    """(a + b) mod 2^128, as (hi, lo)."""
    lo = a_lo + b_lo
    return a_hi + b_hi + (_ONE if lo < a_lo else _ZERO), lo


@kernel(parallel=False)
def _advance(s_hi, s_lo, inc_hi, inc_lo, steps):
    """The state ``steps`` LCG steps on (Brown's jump-ahead, as pcg_advance_lcg_128)."""
    acc_m_hi, acc_m_lo, acc_p_hi, acc_p_lo = _ZERO, _ONE, _ZERO, _ZERO
    cur_m_hi, cur_m_lo, cur_p_hi, cur_p_lo = _MULT_HI, _MULT_LO, inc_hi, inc_lo
    while steps > 0:
        if steps & 1:
            acc_m_hi, acc_m_lo = _mul(acc_m_hi, acc_m_lo, cur_m_hi, cur_m_lo)
            acc_p_hi, acc_p_lo = _mul(acc_p_hi, acc_p_lo, cur_m_hi, cur_m_lo)
            acc_p_hi, acc_p_lo = _add(acc_p_hi, acc_p_lo, cur_p_hi, cur_p_lo)
        m1_hi, m1_lo = _add(cur_m_hi, cur_m_lo, _ZERO, _ONE)
        cur_p_hi, cur_p_lo = _mul(m1_hi, m1_lo, cur_p_hi, cur_p_lo)
        cur_m_hi, cur_m_lo = _mul(cur_m_hi, cur_m_lo, cur_m_hi, cur_m_lo)
        steps >>= 1
    s_hi, s_lo = _mul(acc_m_hi, acc_m_lo, s_hi, s_lo)
    return _add(s_hi, s_lo, acc_p_hi, acc_p_lo)


@kernel(parallel=False)
def _draw(s_hi, s_lo, inc_hi, inc_lo):
    """One PCG64 step: the new state (hi, lo) and its 64-bit output."""
    s_hi, s_lo = _mul(s_hi, s_lo, _MULT_HI, _MULT_LO)
    s_hi, s_lo = _add(s_hi, s_lo, inc_hi, inc_lo)
    x, rot = s_hi ^ s_lo, s_hi >> _S58
    return s_hi, s_lo, (x >> rot) | (x << ((_S64 - rot) & _S63))  # rotr64(x, rot)


@kernel(parallel=False)
def _to_float(u32):
    return np.float32(u32 >> _S8) * _TWO_M24


@kernel(parallel=False)
def _fill_chunk(s_hi, s_lo, inc_hi, inc_lo, out):
    """out (n,) float32: the next n numbers from the state (hi, lo), starting on a whole draw.
    Returns the high half of the last draw (the pending number when n is odd).

    A step waits for the one before it (~20 cycles of dependent multiplies), so ``LANES``
    independent runs, each jumped ahead to its own ``SUB`` numbers, go on side by side."""
    n = out.size
    if n < LANES * SUB:  # the last, short chunk: one run
        pending = _ZERO
        for i in range(0, n, 2):
            s_hi, s_lo, draw = _draw(s_hi, s_lo, inc_hi, inc_lo)
            out[i] = _to_float(draw & _M32)
            pending = draw >> _S32
            if i + 1 < n:
                out[i + 1] = _to_float(pending)
        return pending
    hi, lo = np.empty(LANES, np.uint64), np.empty(LANES, np.uint64)
    for lane in range(LANES):
        hi[lane], lo[lane] = _advance(s_hi, s_lo, inc_hi, inc_lo, _U64(lane * (SUB // 2)))
    last = _ZERO
    for i in range(0, SUB, 2):
        for lane in range(LANES):
            hi[lane], lo[lane], draw = _draw(hi[lane], lo[lane], inc_hi, inc_lo)
            out[lane * SUB + i] = _to_float(draw & _M32)
            last = draw >> _S32
            out[lane * SUB + i + 1] = _to_float(last)
    return last  # the last lane's: the chunk's last draw


@kernel
def _fill(s_hi, s_lo, inc_hi, inc_lo, out, pending):
    """out (n,) float32 from the state (hi, lo), chunk by chunk in parallel; pending[0] = the high half
    of the last draw."""
    n = out.size
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        c_hi, c_lo = _advance(s_hi, s_lo, inc_hi, inc_lo, _U64(c * (CHUNK // 2)))
        last = _fill_chunk(c_hi, c_lo, inc_hi, inc_lo, out[c * CHUNK:min(n, (c + 1) * CHUNK)])
        if c == n_chunks - 1:
            pending[0] = last




def fill_uniforms(bitgen, out):
    """``out[:] = Generator(bitgen).random(out.size, dtype=float32)`` for a PCG64 ``bitgen``, leaving it
    in the same state as that call would.  out (n,) float32, C-contiguous."""
    state = bitgen.state
    start = 0
    if state["has_uint32"] and out.size:  # a half draw is pending: it is the first number
        out[0] = np.float32(state["uinteger"] >> 8) * _TWO_M24
        start, state["has_uint32"] = 1, 0
    n = out.size - start
    if n == 0:
        bitgen.state = state
        return out
    s, inc = state["state"]["state"], state["state"]["inc"]
    pending = np.zeros(1, np.uint64)
    _fill(_U64(s >> 64), _U64(s & MASK64), _U64(inc >> 64), _U64(inc & MASK64), out[start:], pending)
    bitgen.state = state
    bitgen.advance((n + 1) // 2)  # the draws made (advance clears any pending half)
    state = bitgen.state
    # as NumPy leaves it: the high half of the last draw, pending if n is odd, spent if even
    state["has_uint32"], state["uinteger"] = n % 2, int(pending[0])
    bitgen.state = state
    return out
