"""Softmax cross-entropy, fused: ``loss = mean over counted rows of -log softmax(logits)[label]``.

Rows whose label is ``ignore_index`` (-100, PyTorch's and transformers' convention for "not
predicted") contribute neither to the loss nor to the count it is averaged over; their gradient is
zero.  Fusing log-softmax with the negative log-likelihood gives the famous
``dlogits = (softmax(logits) - onehot(label)) / count``, and never takes the log of a tiny
probability.  Derivation: ``docs/backward/cross_entropy.md``.

Shapes: ``N`` rows (e.g. masked positions), ``V`` classes.
"""
import numpy as np


def cross_entropy_forward(logits, labels, ignore_index=-100):
    """(N, V), (N,) int -> scalar loss.  ``cache = (probs (N, V), safe (N,), counted (N,) bool, count)``,
    ``safe`` being the labels with ignored rows replaced by 0.

    With no counted row the loss is defined as 0 (PyTorch returns NaN), so an empty batch of masked
    positions cannot poison training.
    """
    counted = labels != ignore_index  # (N,)
    count = int(counted.sum())
    z = logits - logits.max(axis=-1, keepdims=True)  # (N, V)
    logsumexp = np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (N, 1)
    logprobs = z - logsumexp  # (N, V)
    safe = np.where(counted, labels, 0)  # (N,) ignored rows read column 0, then get masked out
    nll = -logprobs[np.arange(len(labels)), safe]  # (N,)
    loss = nll[counted].sum() / max(count, 1)
    probs = np.exp(logprobs)
    return logits.dtype.type(loss), (probs, safe, counted, count)


def cross_entropy_backward(dloss, cache):
    """scalar -> dlogits (N, V)"""
    probs, safe, counted, count = cache
    # forward: loss = sum over counted n of -log p[n, label_n], divided by count
    dlogits = probs.copy()
    dlogits[np.arange(len(safe)), safe] -= 1.0
    dlogits *= (counted[:, None] * (dloss / max(count, 1))).astype(probs.dtype)
    return dlogits
