"""The erf inside the exact GELU (``scipy.special.erf``) against the C library's ``math.erf``.

Tolerance: 1e-15 relative on erf.  A float64 ulp is 1.1e-16..2.2e-16 relative; SciPy's erf and the C
library's are each within a few ulps of the truth (measured against each other: at most 3 ulps,
4.3e-16), so 1e-15 leaves margin for that and nothing else: an erf evaluated in float32, or an
approximation such as the tanh form's, is off by 1e-8 or far more.  Through the layer the erf error
reaches the output multiplied by ``0.5 * x`` (forward) or ``0.5`` (backward), which is how it is checked.
"""
import math

import numpy as np

from minibert.layers import gelu as G

RTOL = 1e-15
rng = np.random.default_rng(0)
SQRT_HALF = 1.0 / math.sqrt(2.0)


def wide_grid():
    """From 0 to both tails (erf is +-1 in float64 beyond |x| ~ 8.3 here), dense, random and tiny inputs."""
    return np.concatenate([
        np.linspace(-40, 40, 200_001),
        rng.standard_normal(50_000),             # what GELU sees
        4 * rng.standard_normal(50_000),         # the tails, where erf saturates to +-1
        [5e-324, 1e-310, 1e-300, 1e-20, 1e-9, -1e-15, 0.0, -0.0],
    ])


def math_erf(x):
    return np.array([math.erf(v) for v in x])


def test_erf_of_the_layer_matches_math_erf_to_1e15_relative():
    z = wide_grid() * SQRT_HALF
    got, want = G.erf(z), math_erf(z)
    zero = want == 0
    assert np.array_equal(got[zero], want[zero])
    rel = np.abs(got[~zero] - want[~zero]) / np.abs(want[~zero])
    worst = np.flatnonzero(~zero)[np.argmax(rel)]
    assert rel.max() <= RTOL, f"erf({z[worst]!r}) = {got[worst]!r}, math.erf: {want[worst]!r}"


def test_exact_gelu_matches_the_formula_with_math_erf():
    x = wide_grid()
    cdf = 0.5 * (1.0 + math_erf(x * SQRT_HALF))
    out, cache = G.gelu_forward(x)
    # out = 0.5 x (1 + erf): an erf error e becomes 0.5 |x| e, everything else is the same arithmetic
    bad = np.abs(out - x * cdf) > RTOL * np.abs(x)
    assert not bad.any(), f"gelu({x[bad][0]!r}) = {out[bad][0]!r}, with math.erf: {(x * cdf)[bad][0]!r}"
    dout = rng.standard_normal(x.shape)
    dx = G.gelu_backward(dout, cache)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    want = dout * (cdf + x * pdf)
    bad = np.abs(dx - want) > RTOL * np.abs(dout)
    assert not bad.any(), f"at x = {x[bad][0]!r}: dx = {dx[bad][0]!r}, with math.erf: {want[bad][0]!r}"


def test_float32_stays_float32():
    x = (3 * rng.standard_normal((4, 5, 6))).astype(np.float32)
    assert G.erf(x).dtype == np.float32                    # SciPy's float32 loop: no float64 array
    out, cache = G.gelu_forward(x)
    dx = G.gelu_backward(np.ones_like(x), cache)
    assert out.dtype == np.float32 and dx.dtype == np.float32
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(out, G.gelu_forward(x64)[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, G.gelu_backward(np.ones_like(x64), x64), rtol=1e-6, atol=1e-7)
