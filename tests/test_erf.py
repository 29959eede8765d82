"""``minibert.layers.erf.erf``, the NumPy port of fdlibm's erf, against ``math.erf`` (the C library's).

Tolerance: relative error <= 1e-15.  A float64 ulp is 2**-52 ~ 2.2e-16 of a number in [1, 2), so
between 1.1e-16 and 2.2e-16 relative; the port and the C library are each within 1 ulp of the true
value, so they may differ by 2 ulps (~4.4e-16), and 1e-15 (4.5 to 9 ulps) leaves margin for that
and nothing else: a mistyped coefficient or a wrong region formula is off by 1e-10 or far more.
The ulp tests below pin it down further (measured: never more than 1 ulp, ~98% bit-identical).
"""
import math

import numpy as np
import pytest

from minibert.layers.erf import _BLOCK, _EDGES, erf

RTOL = 1e-15
rng = np.random.default_rng(0)


def math_erf(x):
    return np.array([math.erf(v) for v in np.ravel(x)]).reshape(np.shape(x))


def ulps(got, want):
    """|got - want| in units in the last place of ``want``."""
    return np.abs(got - want) / np.spacing(np.abs(want))


def around_edges():
    """Every region edge of fdlibm's erf, its two float64 neighbours, on both sides of 0."""
    edges = np.array(_EDGES)
    pts = np.concatenate([np.nextafter(edges, 0), edges, np.nextafter(edges, np.inf)])
    return np.concatenate([pts, -pts])


def test_matches_math_erf_to_1e15_relative():
    x = np.concatenate([
        np.linspace(-10, 10, 400_001),           # dense grid: every region, several blocks
        rng.standard_normal(100_000),            # what GELU sees
        3 * rng.standard_normal(100_000),        # heavier use of the erfc regions
        around_edges(),
        [5e-324, 1e-320, 1e-310, 2.2250738585072014e-308, 1e-300, 1e-100, 1e-20, 1e-9, -1e-15],
    ])
    got, want = erf(x), math_erf(x)
    assert got.dtype == np.float64 and got.shape == x.shape
    zero = want == 0                             # only at x = 0: must be exact
    assert np.array_equal(got[zero], want[zero])
    rel = np.abs(got[~zero] - want[~zero]) / np.abs(want[~zero])
    worst = np.flatnonzero(~zero)[np.argmax(rel)]
    assert rel.max() <= RTOL, f"erf({x[worst]!r}) = {got[worst]!r}, math.erf: {want[worst]!r}"
    assert ulps(got, want).max() <= 1
    assert np.mean(got == want) > 0.95          # mostly the very same double


def test_within_one_ulp_of_correctly_rounded_value():
    """Against mpmath at 120 bits, rounded once to float64: the truth, not another libm."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 120
    # uniformly spread in each region, so that the narrow ones get their share
    x = np.concatenate([rng.uniform(lo, hi, 400) for lo, hi in
                        zip((1e-12, *_EDGES[:-1], 6.0), (*_EDGES[1:], 6.0, 10.0))])
    want = np.array([float(mpmath.erf(mpmath.mpf(v))) for v in x])
    assert ulps(erf(x), want).max() <= 1


def test_odd_symmetry_is_exact():
    x = np.concatenate([np.linspace(0, 10, 100_001), np.abs(rng.standard_normal(10_000)),
                        around_edges(), [5e-324, 1e-300, np.inf]])
    assert np.array_equal(erf(-x), -erf(x))
    assert np.array_equal(np.signbit(erf(-x)), ~np.signbit(erf(x)))   # including -0.0


def test_monotone_across_region_edges():
    x = np.sort(np.concatenate([np.linspace(-7, 7, 200_001), around_edges()]))
    assert np.all(np.diff(erf(x)) >= 0)


def test_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 6.0, -6.0, 27.0, 1e300,
                  np.finfo(np.float64).max, -np.finfo(np.float64).max])
    got = erf(x)
    assert got[0] == 0 and not np.signbit(got[0])
    assert got[1] == 0 and np.signbit(got[1])
    assert got[2] == 1 and got[3] == -1
    assert np.isnan(got[4]) and np.isnan(got[5])
    assert np.array_equal(got[6:], [1, -1, 1, 1, 1, -1])      # exactly +-1, no 1 - tiny left over
    assert erf(np.array([np.nan, 0.5, np.nan]))[1] == math.erf(0.5)   # NaN does not leak sideways


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.longdouble])
def test_floating_dtype_is_preserved(dtype):
    x64 = np.linspace(-4, 4, 1001)
    x = x64.astype(dtype)
    got = erf(x)
    assert got.dtype == dtype
    # computed in float64, rounded once at the end
    assert np.array_equal(got, erf(x.astype(np.float64)).astype(dtype))


def test_float32_matches_math_erf_rounded_to_float32():
    x = rng.standard_normal(10_000).astype(np.float32)
    got = erf(x)
    want = math_erf(x.astype(np.float64)).astype(np.float32)
    assert got.dtype == np.float32
    assert np.array_equal(got, want)


def test_integer_bool_and_python_inputs_give_float64():
    assert erf(np.arange(-3, 4)).dtype == np.float64
    assert np.array_equal(erf(np.arange(-3, 4)), math_erf(np.arange(-3.0, 4.0)))
    assert erf(np.array([True, False])).dtype == np.float64
    assert erf([0.5, 1]).tolist() == [math.erf(0.5), math.erf(1.0)]
    s = erf(0.5)                                 # a 0-d input gives a scalar, like np.exp
    assert np.ndim(s) == 0 and s == math.erf(0.5)


def test_shapes_and_layouts():
    x = rng.standard_normal((3, 1, 5, 7))
    assert erf(x).shape == x.shape
    assert np.array_equal(erf(x), erf(x.ravel()).reshape(x.shape))
    strided = rng.standard_normal((40, 30))[::3, ::-2]              # not contiguous
    assert np.array_equal(erf(strided), erf(strided.copy()))
    assert erf(np.empty((0, 4))).shape == (0, 4)
    long = rng.standard_normal(2 * _BLOCK + 17)                      # blocks and a ragged end
    assert np.array_equal(erf(long), np.concatenate([erf(long[:100]), erf(long[100:])]))


def test_input_is_not_modified():
    x = rng.standard_normal(1000)
    before = x.copy()
    erf(x)
    assert np.array_equal(x, before)


def test_rejects_complex():
    with pytest.raises(TypeError):
        erf(np.array([1 + 1j]))
