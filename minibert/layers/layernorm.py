"""Layer normalisation over the last axis (BERT: ``eps = 1e-12``).

    mean = x.mean(-1);  rstd = 1 / sqrt(var(x) + eps);  norm = (x - mean) * rstd;  out = norm * w + b

We cache the small per-row statistics ``mean`` and ``rstd`` (B, T) and recompute the large ``norm``
(B, T, C) in the backward, as llm.c does.  Derivation: ``docs/backward/layernorm.md``.
Exercise 3 of ``minibert exercises``: the code under each ``# TODO``, checked by ``test_layernorm``.
"""
import numpy as np


def layernorm_forward(x, w, b, eps=1e-12):
    """(..., C), (C,), (C,) -> (..., C).  ``cache = (x, w, mean (...,), rstd (...,))``."""
    # TODO: mean, rstd (both of shape (...,)) and out (..., C).
    #   hint: the variance is the *biased* one (divide by C, not C - 1), as in BERT and PyTorch.
    #   hint: mean and rstd drop the last axis; use mean[..., None] to broadcast them back over C.
    ### BEGIN SOLUTION
    mean = x.mean(axis=-1)  # (...,)
    xc = x - mean[..., None]  # (..., C)
    var = (xc * xc).mean(axis=-1)  # (...,) biased variance, as in BERT and PyTorch
    rstd = 1.0 / np.sqrt(var + eps)  # (...,)
    out = xc * rstd[..., None] * w + b  # (..., C)
    ### END SOLUTION
    return out, (x, w, mean, rstd)


def layernorm_backward(dout, cache):
    """(..., C) -> dx (..., C), dw (C,), db (C,)"""
    x, w, mean, rstd = cache
    C = x.shape[-1]
    norm = (x - mean[..., None]) * rstd[..., None]  # (..., C) recomputed, not cached
    # forward: out = norm * w + b
    # TODO: dw and db (both (C,)), and dnorm (..., C).
    #   hint: w and b are shared by every row (every position of every sequence): their gradients
    #         add up the contributions of all rows. Flatten the rows with .reshape(-1, C).
    ### BEGIN SOLUTION
    db = dout.reshape(-1, C).sum(axis=0)
    dw = (dout * norm).reshape(-1, C).sum(axis=0)
    dnorm = dout * w  # (..., C)
    ### END SOLUTION
    # forward: norm = (x - mean) * rstd, where mean and rstd both depend on every x in the row.
    # TODO: dx (..., C) from dnorm, norm and rstd.
    #   hint: three paths from x_i to the loss: directly, through the mean, through rstd.
    #   hint: differentiate mean and rstd with respect to one x_i first (rstd through var).
    #   hint: collect the terms: two row sums over C appear (keepdims=True keeps them broadcastable).
    ### BEGIN SOLUTION
    dx = rstd[..., None] * (dnorm
                            - dnorm.mean(axis=-1, keepdims=True)
                            - norm * (dnorm * norm).mean(axis=-1, keepdims=True))
    ### END SOLUTION
    return dx, dw, db


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_layernorm`` runs them,
    and so do ``tests/layers/test_layers_gradcheck.py`` and the grader (``minibert exercises check``, on your
    functions).  Each ``GradCase``: a title, the pair, the inputs the gradients are taken of, and the
    other arguments."""
    from minibert.gradcheck import GradCase
    w, b = 1 + 0.5 * rng.standard_normal(12), rng.standard_normal(12)  # ones and zeros would hide bugs
    cases = [GradCase("x (2, 5, 12) with mean 1.5 and std 3, non-trivial w and b", layernorm_forward,
                      layernorm_backward, inputs=dict(x=rng.standard_normal((2, 5, 12)) * 3 + 1.5, w=w, b=b))]
    ### BEGIN HIDDEN TESTS
    cases.append(GradCase("one row, x (1, 12)", layernorm_forward, layernorm_backward,
                          inputs=dict(x=rng.standard_normal((1, 12)), w=w, b=b)))
    ### END HIDDEN TESTS
    return cases


def test_layernorm():
    """The exercise's checks, in float64 with a non-trivial gain and bias (ones and zeros hide bugs)."""
    from minibert.gradcheck import check_cases
    rng = np.random.default_rng(0)
    check_cases(gradcheck_cases(rng))
    ### BEGIN HIDDEN TESTS
    out, _ = layernorm_forward(rng.standard_normal((2, 5, 12)) * 3 + 1.5, np.ones(12), np.zeros(12))
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(-1), 1, rtol=1e-9)  # the biased variance, as BERT
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_layernorm()
