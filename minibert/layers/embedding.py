"""Embedding lookup: ``out = W[ids]``.  Its backward is a scatter-add.

A token id that occurs several times in a batch reads the same row several times, so that row's
gradient is the *sum* of the upstream gradients at all those positions.  ``dW[ids] += dout`` would be
wrong (NumPy's fancy-index assignment keeps only the last write for a repeated index);
``np.add.at`` accumulates every one.  Derivation: ``docs/backward/embedding.md``.
Exercise 6 of ``minibert exercises``: the code under each ``# TODO``, checked by ``test_embedding``.

Shapes: ``B, T`` batch and sequence, ``V`` rows (vocabulary), ``C`` hidden size.
"""
import numpy as np


def embedding_forward(ids, w):
    """(B, T) int, (V, C) -> (B, T, C).  Returns ``out, cache`` with ``cache = (ids, V)``."""
    # TODO: look up one row of w per id.
    #   hint: NumPy's integer-array indexing does it in one expression, for any shape of ids.
    ### BEGIN SOLUTION
    out = w[ids]  # (B, T, C)
    ### END SOLUTION
    return out, (ids, w.shape[0])


def embedding_backward(dout, cache, padding_idx=None):
    """(B, T, C) -> dw (V, C).

    ``padding_idx``: as in ``torch.nn.Embedding(padding_idx=...)`` (which transformers' BERT uses for
    the word embeddings), the gradient of that row is kept at zero.
    """
    ids, V = cache
    C = dout.shape[-1]
    dw = np.zeros((V, C), dtype=dout.dtype)
    # forward: out[b, t] = w[ids[b, t]] (a row lookup); every position adds its gradient into the row it read
    # TODO: scatter-add dout into dw, then zero the padding row if padding_idx is given.
    #   hint: dw[ids] += dout looks right and is wrong for a repeated id: try it with ids = [[3, 3]].
    #   hint: np.add.at(target, indices, values) accumulates every one (flatten ids and dout first).
    ### BEGIN SOLUTION
    np.add.at(dw, ids.reshape(-1), dout.reshape(-1, C))
    if padding_idx is not None:
        dw[padding_idx] = 0
    ### END SOLUTION
    return dw


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_embedding`` runs them,
    and so do ``tests/layers/test_layers_gradcheck.py`` and the grader (``minibert exercises check``, on your
    functions).  Each ``GradCase``: a title, the pair, the inputs the gradients are taken of, and the
    other arguments."""
    from minibert.gradcheck import GradCase
    ids = np.array([[3, 1, 3, 3, 0], [1, 4, 4, 2, 3], [0, 0, 6, 3, 1]])  # 3 used five times, 6 once, 5 never
    return [GradCase("ids (3, 5) with repeated ids, w (7, 12)", embedding_forward, embedding_backward,
                     inputs=dict(w=rng.standard_normal((7, 12))), args=dict(ids=ids))]


def test_embedding():
    """The exercise's check, in float64 with repeated ids; the error is printed next to its expected range."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))
    ### BEGIN HIDDEN TESTS
    ids = np.array([[3, 1, 3, 3, 0], [1, 4, 4, 2, 3]])  # 3 appears four times
    out, cache = embedding_forward(ids, np.random.default_rng(1).standard_normal((6, 12)))
    dw = embedding_backward(np.ones_like(out), cache, padding_idx=0)
    assert np.all(dw[0] == 0), "the padding row gets no gradient"
    assert np.all(dw[3] == 4) and np.all(dw[5] == 0), "a row gets one contribution per use, unused rows none"
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_embedding()
