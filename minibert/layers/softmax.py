"""Numerically stable softmax over the last axis, with an optional additive mask.

    z = x + mask_add;  p = exp(z - max(z)) / sum(exp(z - max(z)))

Subtracting the row max changes nothing mathematically (it cancels) but keeps ``exp`` from
overflowing.  BERT's padding mask is additive: 0 where a key may be attended to and a huge negative
number (``finfo(dtype).min``, as transformers uses) where it is padding, so its probability is 0.
Derivation: ``docs/backward/softmax.md``.
Exercise 2 of ``minibert exercises``: the code under each ``# TODO``, checked by ``test_softmax``.
"""
import numpy as np


def softmax_forward(x, mask_add=None):
    """(..., K) [+ mask broadcastable to it] -> p (..., K).  ``cache = p``"""
    z = x if mask_add is None else x + mask_add
    # TODO: p = softmax(z) over the last axis, without overflow.
    #   hint: subtract each row's maximum before exp (keepdims=True keeps the axis for broadcasting);
    #         it cancels in the ratio. Try x = [1000., 1001.] with and without it.
    ### BEGIN SOLUTION
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=-1, keepdims=True)
    ### END SOLUTION
    return p, p


def softmax_backward(dp, cache):
    """(..., K) -> dx (..., K).  The mask is a constant, so it has no gradient."""
    p = cache
    # forward: p_i = e_i / sum_j e_j
    # TODO: dx, from dp and the cached p alone.
    #   hint: differentiate p_i with respect to z_j for one row, the cases i = j and i != j apart
    #         (log p_i is easier to differentiate than p_i).
    #   hint: never build that K x K matrix: its product with dp needs one inner product per row,
    #         <dp, p> (sum over the last axis, keepdims=True).
    ### BEGIN SOLUTION
    dx = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    ### END SOLUTION
    return dx


def attention_mask_to_additive(attention_mask, dtype, causal=False):
    """(B, T) of 1 (attend) / 0 (padding) -> (B, 1, 1, T) additive mask, as transformers builds it.

    With ``causal=True`` (transformers' ``is_decoder``): (B, 1, T, T), where query i may attend to key j
    only if j <= i *and* j is not padding; transformers combines the two as booleans, then writes 0 where
    allowed and ``finfo(dtype).min`` elsewhere (``masking_utils.eager_mask``), and so does this.  Adding two
    additive masks instead would overflow to -inf where both forbid a key."""
    m = np.asarray(attention_mask)
    if not causal:
        m = m.astype(dtype)
        return ((1.0 - m) * np.finfo(dtype).min)[:, None, None, :].astype(dtype)
    T = m.shape[-1]
    allowed = np.tril(np.ones((T, T), dtype=bool))[None, None] & (m != 0)[:, None, None, :]  # (B, 1, T, T)
    return np.where(allowed, 0.0, np.finfo(dtype).min).astype(dtype)


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_softmax`` runs them,
    and so do ``tests/layers/test_layers_gradcheck.py`` and the grader (``minibert exercises check``, on your
    functions).  Each ``GradCase``: a title, the pair, the inputs the gradients are taken of, and the
    other arguments."""
    from minibert.gradcheck import GradCase
    mask = attention_mask_to_additive(np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), np.float64)
    cases = [GradCase("attention scores (2, 3, 5, 5) with padded keys", softmax_forward, softmax_backward,
                      inputs=dict(x=rng.standard_normal((2, 3, 5, 5)) * 2), args=dict(mask_add=mask))]
    ### BEGIN HIDDEN TESTS
    cases.append(GradCase("no mask, x (3, 7)", softmax_forward, softmax_backward,
                          inputs=dict(x=rng.standard_normal((3, 7)))))
    ### END HIDDEN TESTS
    return cases


def test_softmax():
    """The exercise's checks, in float64 with a padding mask; each error is printed next to its expected range."""
    from minibert.gradcheck import check_cases
    rng = np.random.default_rng(0)
    check_cases(gradcheck_cases(rng))
    ### BEGIN HIDDEN TESTS
    p, _ = softmax_forward(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]])  # no overflow
    mask = attention_mask_to_additive(np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), np.float64)
    p, _ = softmax_forward(rng.standard_normal((2, 3, 5, 5)), mask)
    assert np.all(p[0, :, :, 3:] == 0), "masked keys must get exactly zero probability"
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-14)
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_softmax()
