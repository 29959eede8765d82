"""Linear (fully connected) layer: ``out = x @ W.T + b``.

The weight uses PyTorch's ``(out_features, in_features)`` layout, so a minibert state dict and a
transformers state dict hold the very same arrays.  Derivation: ``docs/backward/linear.md``.
Exercise 1 of ``minibert exercises``: the code under each ``# TODO``, checked by ``test_linear``.

Shapes: ``N`` = any leading dims (e.g. ``B, T``), ``I`` = in features, ``O`` = out features.
"""
import numpy as np


def linear_forward(x, w, b):
    """(..., I), (O, I), (O,) -> (..., O)

    Returns ``out, cache`` with ``cache = (x, w)``: the input is needed for ``dW`` and the weight for
    ``dx``; both are references, not copies.
    """
    # TODO: the forward, out[n, o] = sum_i x[n, i] w[o, i] + b[o], for any number of leading dims in x.
    #   hint: @ treats every axis but the last two as a batch axis; b broadcasts over rows.
    ### BEGIN SOLUTION
    out = x @ w.T + b  # (..., O)
    ### END SOLUTION
    return out, (x, w)


def linear_backward(dout, cache):
    """(..., O) -> dx (..., I), dw (O, I), db (O,)"""
    x, w = cache
    O, I = w.shape
    # forward: out[n, o] = sum_i x[n, i] w[o, i] + b[o]
    # TODO: the three gradients dx, dw, db.
    #   hint: write one element, out[n, o] = sum_i x[n, i] w[o, i] + b[o], and differentiate it.
    #   hint: each gradient has the shape of what it is the gradient of: let the shapes pick the product.
    #   hint: every row n used the same w and b, so dw and db sum over all rows: reshape dout to (N, O)
    #         and x to (N, I) first (x may be (B, T, I)).
    ### BEGIN SOLUTION
    dx = dout @ w  # (..., I)
    dout2 = dout.reshape(-1, O)  # (N, O)
    dw = dout2.T @ x.reshape(-1, I)  # (O, I): every row of x contributes, so sum over N
    db = dout2.sum(axis=0)  # (O,): the bias was broadcast over N, so its gradient sums over N
    ### END SOLUTION
    return dx, dw, db


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_linear`` runs them,
    and so do ``tests/layers/test_layers_gradcheck.py`` and the grader (``minibert exercises check``, on your
    functions).  Each ``GradCase``: a title, the pair, the inputs the gradients are taken of."""
    from minibert.gradcheck import GradCase
    w, b = rng.standard_normal((7, 12)), rng.standard_normal(7)
    cases = [GradCase("x (2, 5, 12), w (7, 12), b (7,)", linear_forward, linear_backward,
                      inputs=dict(x=rng.standard_normal((2, 5, 12)), w=w, b=b))]
    ### BEGIN HIDDEN TESTS
    cases.append(GradCase("a 2-D input: x (3, 12)", linear_forward, linear_backward,
                          inputs=dict(x=rng.standard_normal((3, 12)), w=w, b=b)))
    ### END HIDDEN TESTS
    return cases


def test_linear():
    """The exercise's checks, in float64; each relative error is printed next to its expected range."""
    from minibert.gradcheck import check_cases
    rng = np.random.default_rng(0)
    check_cases(gradcheck_cases(rng))
    ### BEGIN HIDDEN TESTS
    x, w, b = rng.standard_normal((3, 12)), rng.standard_normal((7, 12)), rng.standard_normal(7)
    np.testing.assert_allclose(linear_forward(x, w, b)[0], x @ w.T + b, rtol=1e-13)
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_linear()
