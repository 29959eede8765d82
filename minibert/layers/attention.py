"""Multi-head self-attention, as in BERT (transformers' ``BertSelfAttention`` + the output dense).

    q, k, v = x Wq^T + bq, x Wk^T + bk, x Wv^T + bv          # (B, T, C) each, split into A heads of D
    scores  = q k^T / sqrt(D) + mask_add                      # (B, A, T, T)
    probs   = softmax(scores)  -> dropout                     # (B, A, T, T)
    ctx     = probs v, heads merged back                      # (B, T, C)
    out     = ctx Wo^T + bo                                   # (B, T, C)

The residual, its dropout and LayerNorm live in the encoder layer (``minibert/models/bert.py``).
Derivation, piece by piece: ``docs/backward/attention.md``.
Exercise 8 of ``minibert exercises`` (after the "backprop ninja" one, ``minibert/classroom/attention_ninja.py``):
the code under each ``# TODO``, checked by ``test_attention``.

Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``A`` heads, ``D = C / A`` head size.
"""
import math
from typing import NamedTuple

import numpy as np

from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .softmax import softmax_backward, softmax_forward


class SDPACache(NamedTuple):
    """What ``sdpa_backward`` needs."""
    q: np.ndarray        # (B, A, T, D)
    k: np.ndarray        # (B, A, T, D)
    v: np.ndarray        # (B, A, T, D)
    probs: np.ndarray    # (B, A, T, T) the attention probabilities, softmax(scores)
    dropped: np.ndarray  # (B, A, T, T) the probabilities after dropout (``probs`` itself when it is off)
    dropout: object      # the dropout cache (None when dropout is off)
    scale: float         # 1 / sqrt(D)


class AttentionCache(NamedTuple):
    """What ``attention_backward`` needs; ``.sdpa.probs`` are the attention probabilities."""
    query: tuple         # linear cache of q = x Wq^T + bq
    key: tuple           # linear cache of k
    value: tuple         # linear cache of v
    sdpa: SDPACache
    output: tuple        # linear cache of out = ctx Wo^T + bo
    num_heads: int       # A


def split_heads(x, A):
    """(B, T, C) -> (B, A, T, D)"""
    B, T, C = x.shape
    return x.reshape(B, T, A, C // A).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, A, T, D) -> (B, T, C)"""
    B, A, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, A * D)


def sdpa_forward(q, k, v, mask_add=None, dropout_p=0.0, rng=None, training=False):
    """Scaled dot-product attention.  (B, A, T, D) x3, mask (B, 1, 1, T) -> ctx (B, A, T, D).

    ``cache``: an ``SDPACache``.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(0, 1, 3, 2)) * q.dtype.type(scale)  # (B, A, T, T)
    probs, _ = softmax_forward(scores, mask_add)  # (B, A, T, T)
    dropped, drop_cache = dropout_forward(probs, dropout_p, rng, training)
    ctx = dropped @ v  # (B, A, T, D)
    return ctx, SDPACache(q, k, v, probs, dropped, drop_cache, scale)


def sdpa_backward(dctx, cache):
    """(B, A, T, D) -> dq, dk, dv (B, A, T, D) each"""
    q, k, v, probs, dropped, drop_cache, scale = cache
    # forward: ctx = dropped @ v
    # TODO: ddropped (B, A, T, T) and dv (B, A, T, D).
    #   hint: a matrix product per (batch, head): the same two rules as the linear layer's.
    #   hint: v.transpose(0, 1, 3, 2) swaps the last two axes only; which probabilities multiplied v?
    ### BEGIN SOLUTION
    ddropped = dctx @ v.transpose(0, 1, 3, 2)  # (B, A, T, T)
    dv = dropped.transpose(0, 1, 3, 2) @ dctx  # (B, A, T, D)
    ### END SOLUTION
    # forward: dropped = dropout(probs)  (the backward reuses the forward's mask)
    dprobs = dropout_backward(ddropped, drop_cache)
    # forward: probs = softmax(scores + mask_add);  scores = (q @ k^T) * scale
    # TODO: dscores, then dq and dk (B, A, T, D).
    #   hint: softmax_backward(dprobs, probs) gives the gradient of the masked scores; the mask is a constant.
    #   hint: the scale is a constant factor. Then q k^T is a matrix product: mind which side needs
    #         the transpose (with T x T scores both shapes fit, so a missing transpose still runs).
    ### BEGIN SOLUTION
    dscores = softmax_backward(dprobs, probs)  # (B, A, T, T)
    dscores = dscores * q.dtype.type(scale)
    dq = dscores @ k  # (B, A, T, D)
    dk = dscores.transpose(0, 1, 3, 2) @ q  # (B, A, T, D)
    ### END SOLUTION
    return dq, dk, dv


def attention_forward(x, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads,
                      dropout_p=0.0, rng=None, training=False):
    """(B, T, C), weights (C, C), biases (C,), mask (B, 1, 1, T) -> out (B, T, C).

    ``cache``: an ``AttentionCache`` (the linear and sdpa caches and the number of heads);
    ``cache.sdpa.probs`` are the attention probabilities (B, A, T, T), which the model exposes for plots.
    """
    q, cq = linear_forward(x, wq, bq)  # (B, T, C)
    k, ck = linear_forward(x, wk, bk)
    v, cv = linear_forward(x, wv, bv)
    ctx, cs = sdpa_forward(split_heads(q, num_heads), split_heads(k, num_heads),
                           split_heads(v, num_heads), mask_add, dropout_p, rng, training)
    out, co = linear_forward(merge_heads(ctx), wo, bo)  # (B, T, C)
    return out, AttentionCache(cq, ck, cv, cs, co, num_heads)


def attention_backward(dout, cache):
    """(B, T, C) -> dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo"""
    cq, ck, cv, cs, co, A = cache
    # TODO: undo the forward from the last line up, with linear_backward, split_heads/merge_heads
    #       and sdpa_backward.
    #   hint: the backward of merge_heads is split_heads, and the other way round (a permutation).
    #   hint: x feeds three projections, so dx is the sum of three paths: forget one and every entry
    #         of dx is wrong.
    ### BEGIN SOLUTION
    # forward: out = merge_heads(ctx) @ wo.T + bo
    dctx, dwo, dbo = linear_backward(dout, co)
    # forward: ctx = sdpa(split_heads(q), split_heads(k), split_heads(v))
    dq, dk, dv = sdpa_backward(split_heads(dctx, A), cs)
    # forward: q, k, v = x @ w.T + b; x feeds all three, so its gradient is the sum of three paths
    dx, dwq, dbq = linear_backward(merge_heads(dq), cq)
    dxk, dwk, dbk = linear_backward(merge_heads(dk), ck)
    dxv, dwv, dbv = linear_backward(merge_heads(dv), cv)
    dx += dxk
    dx += dxv
    ### END SOLUTION
    return dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_attention`` runs
    them, and so do ``tests/layers/test_layers_gradcheck.py`` and the grader (``minibert exercises check``, on
    your functions).  Each ``GradCase``: a title, the pair, the inputs the gradients are taken of, the
    other arguments, and the gradients that are exactly zero.

    ``dbk`` is exactly 0 for every input: ``q . (k_j + bk) = q . k_j + q . bk`` adds the same number
    to every score of a row, and softmax ignores such a shift (docs/backward/attention.md).  Its
    relative error would compare two rounding noises, so it is checked to be 0 instead.
    """
    from minibert.gradcheck import GradCase
    from minibert.layers.softmax import attention_mask_to_additive
    B, T, C, A = 2, 5, 12, 3
    mask = attention_mask_to_additive(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), np.float64)
    qkv = {n: rng.standard_normal((B, A, T, C // A)) for n in ("q", "k", "v")}
    weights = {n: rng.standard_normal(s) * 0.5 for n, s in zip(
        ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"], [(C, C), (C,)] * 4)}
    x = rng.standard_normal((B, T, C))
    cases = [
        GradCase("scaled dot-product attention, q k v (2, 3, 5, 4), padded keys", sdpa_forward, sdpa_backward,
                 inputs=qkv, args=dict(mask_add=mask)),
        GradCase("multi-head layer, x (2, 5, 12), 3 heads, padded keys", attention_forward, attention_backward,
                 inputs=dict(x=x, **weights), args=dict(mask_add=mask, num_heads=A), zero=("dbk",)),
    ]
    ### BEGIN HIDDEN TESTS
    dropout = dict(dropout_p=0.3, rng=np.random.default_rng(5), training=True)  # the same mask on every call
    cases += [
        GradCase("scaled dot-product attention with attention dropout 0.3", sdpa_forward, sdpa_backward,
                 inputs=qkv, args=dict(mask_add=mask, **dropout)),
        GradCase("multi-head layer with attention dropout 0.3", attention_forward, attention_backward,
                 inputs=dict(x=x, **weights), args=dict(mask_add=mask, num_heads=A, **dropout), zero=("dbk",)),
        GradCase("a batch of one padded sequence, x (1, 5, 12)", attention_forward, attention_backward,
                 inputs=dict(x=rng.standard_normal((1, T, C)), **weights),
                 args=dict(mask_add=mask[1:], num_heads=A), zero=("dbk",)),
    ]
    ### END HIDDEN TESTS
    return cases


def test_attention():
    """The exercise's checks, in float64 with a padded sequence; each error is printed next to its
    expected range (``dbk``, exactly 0, next to its bound: see ``gradcheck_cases``)."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))


if __name__ == "__main__":
    test_attention()
