"""Numerically stable softmax over the last axis, with an optional additive mask.

    z = x + mask_add;  p = exp(z - max(z)) / sum(exp(z - max(z)))

Subtracting the row max changes nothing mathematically (it cancels) but keeps ``exp`` from
overflowing.  BERT's padding mask is additive: 0 where a key may be attended to and a huge negative
number (``finfo(dtype).min``, as transformers uses) where it is padding, so its probability is 0.
Derivation: ``docs/backward/softmax.md``.
"""
import numpy as np


def softmax_forward(x, mask_add=None):
    """(..., K) [+ mask broadcastable to it] -> p (..., K).  ``cache = p``"""
    z = x if mask_add is None else x + mask_add
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=-1, keepdims=True)
    return p, p


def softmax_backward(dp, cache):
    """(..., K) -> dx (..., K).  The mask is a constant, so it has no gradient."""
    p = cache
    # forward: p_i = e_i / sum_j e_j  =>  dx_i = p_i * (dp_i - sum_j dp_j p_j)
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def attention_mask_to_additive(attention_mask, dtype):
    """(B, T) of 1 (attend) / 0 (padding) -> (B, 1, 1, T) additive mask, as transformers builds it."""
    m = np.asarray(attention_mask).astype(dtype)
    return ((1.0 - m) * np.finfo(dtype).min)[:, None, None, :].astype(dtype)
