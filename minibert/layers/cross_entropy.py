"""Softmax cross-entropy, fused: ``loss = mean over counted rows of -log softmax(logits)[label]``.

Rows whose label is ``ignore_index`` (-100, PyTorch's and transformers' convention for "not
predicted") contribute neither to the loss nor to the count it is averaged over; their gradient is
zero.  Fusing log-softmax with the negative log-likelihood gives the famous
``dlogits = (softmax(logits) - onehot(label)) / count``, and never takes the log of a tiny
probability.  Derivation: ``docs/backward/cross_entropy.md``.
Exercise 5 of ``minibert exercises``: the code under each ``# TODO``, checked by ``test_cross_entropy``.

Shapes: ``N`` rows (e.g. masked positions), ``V`` classes.
"""
import numpy as np

IGNORE_INDEX = -100  # transformers' label for "not predicted": the loss skips it


def cross_entropy_forward(logits, labels, ignore_index=IGNORE_INDEX):
    """(N, V), (N,) int -> scalar loss.  ``cache = (probs (N, V), safe (N,), counted (N,) bool, count)``,
    ``safe`` being the labels with ignored rows replaced by 0.

    With no counted row the loss is defined as 0 (PyTorch returns NaN), so an empty batch of masked
    positions cannot poison training.
    """
    counted = labels != ignore_index  # (N,)
    count = int(counted.sum())
    safe = np.where(counted, labels, 0)  # (N,) ignored rows read column 0, then get masked out
    # TODO: logprobs (N, V) = log softmax(logits), computed stably; then
    #       loss = sum over counted rows of -logprobs[n, label_n], divided by max(count, 1).
    #   hint: log softmax(z) = z - log(sum(exp(z))): subtract the row max first, as in softmax.
    #   hint: pick one entry per row with logprobs[np.arange(N), safe]; keep only the counted rows.
    ### BEGIN SOLUTION
    z = logits - logits.max(axis=-1, keepdims=True)  # (N, V)
    logsumexp = np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (N, 1)
    logprobs = z - logsumexp  # (N, V)
    nll = -logprobs[np.arange(len(labels)), safe]  # (N,)
    loss = nll[counted].sum() / max(count, 1)
    ### END SOLUTION
    probs = np.exp(logprobs)
    return logits.dtype.type(loss), (probs, safe, counted, count)


def cross_entropy_backward(dloss, cache):
    """scalar -> dlogits (N, V)"""
    probs, safe, counted, count = cache
    # forward: loss = sum over counted n of -log p[n, label_n], divided by count
    # TODO: dlogits (N, V).
    #   hint: for one row, differentiate -log p_label = -z_label + log(sum_k exp(z_k)) with respect to z_j.
    #   hint: then scale by dloss / max(count, 1), and zero the rows that were not counted.
    #   hint: copy probs before changing it: the cache must survive a second backward.
    ### BEGIN SOLUTION
    dlogits = probs.copy()
    dlogits[np.arange(len(safe)), safe] -= 1.0
    dlogits *= (counted[:, None] * (dloss / max(count, 1))).astype(probs.dtype)
    ### END SOLUTION
    return dlogits


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_cross_entropy`` runs them,
    and so do ``tests/layers/test_layers_gradcheck.py`` and the grader (``minibert exercises check``, on your
    functions).  Each ``GradCase``: a title, the pair, the inputs the gradients are taken of, and the
    other arguments."""
    from minibert.gradcheck import GradCase
    labels = rng.integers(0, 11, size=10)
    labels[[1, 4, 5]] = IGNORE_INDEX  # not predicted
    cases = [GradCase("logits (10, 11), 3 rows ignored (label -100)", cross_entropy_forward, cross_entropy_backward,
                      inputs=dict(logits=rng.standard_normal((10, 11)) * 2), args=dict(labels=labels))]
    ### BEGIN HIDDEN TESTS
    cases.append(GradCase("every row counted", cross_entropy_forward, cross_entropy_backward,
                          inputs=dict(logits=rng.standard_normal((10, 11)) * 2),
                          args=dict(labels=rng.integers(0, 11, size=10))))
    cases.append(GradCase("every row ignored: loss 0, gradient 0", cross_entropy_forward, cross_entropy_backward,
                          inputs=dict(logits=rng.standard_normal((10, 11)) * 2),
                          args=dict(labels=np.full(10, IGNORE_INDEX)), zero=("dlogits",)))
    ### END HIDDEN TESTS
    return cases


def test_cross_entropy():
    """The exercise's checks, in float64 with some ignored rows; each error is printed next to its expected range."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))
    ### BEGIN HIDDEN TESTS
    loss, _ = cross_entropy_forward(np.zeros((4, 11)), np.array([1, 2, 3, -100]))
    np.testing.assert_allclose(loss, np.log(11), rtol=1e-14)  # uniform logits: ln V, averaged over 3 rows
    loss, _ = cross_entropy_forward(np.ones((4, 11)), np.full(4, -100))
    assert loss == 0, "no counted row: loss 0"
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_cross_entropy()
