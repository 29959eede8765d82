"""Embedding lookup: ``out = W[ids]``.  Its backward is a scatter-add.

A token id that occurs several times in a batch reads the same row several times, so that row's
gradient is the *sum* of the upstream gradients at all those positions.  ``dW[ids] += dout`` would be
wrong (NumPy's fancy-index assignment keeps only the last write for a repeated index);
``np.add.at`` accumulates every one.  Derivation: ``docs/backward/embedding.md``.

Shapes: ``B, T`` batch and sequence, ``V`` rows (vocabulary), ``C`` hidden size.
"""
import numpy as np


def embedding_forward(ids, w):
    """(B, T) int, (V, C) -> (B, T, C).  Returns ``out, cache`` with ``cache = (ids, V)``."""
    out = w[ids]  # (B, T, C)
    return out, (ids, w.shape[0])


def embedding_backward(dout, cache, padding_idx=None):
    """(B, T, C) -> dw (V, C).

    ``padding_idx``: as in ``torch.nn.Embedding(padding_idx=...)`` (which transformers' BERT uses for
    the word embeddings), the gradient of that row is kept at zero.
    """
    ids, V = cache
    C = dout.shape[-1]
    dw = np.zeros((V, C), dtype=dout.dtype)
    # forward: out = w[ids]; every position adds its gradient into the row it read
    np.add.at(dw, ids.reshape(-1), dout.reshape(-1, C))
    if padding_idx is not None:
        dw[padding_idx] = 0
    return dw
