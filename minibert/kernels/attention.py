"""numba twins of ``minibert/layers/attention.py`` (and of the softmax and dropout inside it).

The twin returns the reference's caches, ``AttentionCache`` and ``SDPACache``, so ``cache.sdpa.probs``
is still the attention probabilities (B, A, T, T) and either backward accepts either forward's cache.  What changes:

* one matmul for the three projections: ``x @ [Wq; Wk; Wv]^T`` -> (B*T, 3C), whose column slices
  *are* q, k and v (no copies), and one matmul for their three input gradients;
* scale, additive mask, softmax and the attention dropout in one jitted pass over the scores, one
  parallel task per (batch, head) (``attention_softmax_forward``), and likewise their backward;
  its NumPy reference is the middle of ``sdpa_forward`` (``tests/kernels/test_kernels.py`` composes it);
* the per-head products are BLAS calls as in the reference (``matmul`` over the heads), but write
  straight into the merged (B, T, C) layout through strided views: no ``merge_heads`` copy;
* every product goes through ``kernels/_blas.py``'s ``matmul``: the batch cut in one slab per thread,
  each on a one-thread OpenBLAS, so no OpenBLAS thread spins while the next kernel runs;
* the attention at the rows the pretraining heads read (``minibert/kernels/heads_rows.py``, the loss-only
  fast path) is built from this file's kernels.

A version that also did the per-head products in numba, one task per (batch, head) with a
register-blocked loop, was 2-5x faster than BLAS on a machine busy with other work (BLAS's
threads stall on these small products) but 1.3-2.1x slower on a quiet one (measured, see
``docs/performance.md``); we kept BLAS.
"""
import math

import numpy as np
from numba import prange

from ..layers.attention import AttentionCache, SDPACache
from ._blas import matmul
from ._vecmath import kernel, vexp
from .dropout import uniforms


@kernel(parallel=False)
def _copy(a, out):
    """out[...] = a for 2-D arrays.  (Written as a loop: a slice assignment inside ``prange`` becomes a
    nested parallel loop, which costs seconds of compilation and nothing at run time.)"""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = a[i, j]


@kernel(parallel=False)
def _softmax_dropout_head(p, mask, scale, u, p_drop, drop_scale, keep, dropped, dropout):
    """One (batch, head), in place: ``p`` (Tq, Tk) holds q k^T on entry and the probabilities on exit.

    mask (Tq|1, Tk) additive; with ``dropout``: u (Tq, Tk) uniforms in, keep and dropped (Tq, Tk) out.
    """
    Tq, Tk = p.shape
    for i in range(Tq):
        prow = p[i]
        mrow = mask[i if mask.shape[0] > 1 else 0]
        # reference: scores = (q @ k^T) * scale;  z = scores + mask_add
        zmax = prow[0] * scale + mrow[0]
        for j in range(Tk):
            z = prow[j] * scale + mrow[j]
            prow[j] = z
            zmax = max(zmax, z)
        # p = exp(z - max z) / sum exp(z - max z): the shift cancels, and exp cannot overflow
        total = prow.dtype.type(0)
        for j in range(Tk):
            e = vexp(prow[j] - zmax)
            prow[j] = e
            total += e
        for j in range(Tk):
            prow[j] = prow[j] / total
        if dropout:  # keep = u >= p_drop;  dropped = probs * keep * drop_scale
            urow, krow, drow = u[i], keep[i], dropped[i]
            for j in range(Tk):
                kj = urow[j] >= p_drop
                krow[j] = kj
                drow[j] = prow[j] * drop_scale if kj else 0.0


@kernel(parallel=False)
def _softmax_dropout_head_backward(g, p, keep, drop_scale, scale, dropout):
    """One (batch, head), in place: ``g`` (Tq, Tk) holds d(dropped) on entry and d(q k^T) on exit."""
    Tq, Tk = p.shape
    for i in range(Tq):
        grow, prow = g[i], p[i]
        # forward: dropped = probs * keep * drop_scale
        if dropout:
            krow = keep[i]
            for j in range(Tk):
                grow[j] = grow[j] * drop_scale if krow[j] else 0.0
        # forward: p_j = e_j / sum e  =>  dz_j = p_j (dp_j - sum_k dp_k p_k)
        dot = grow.dtype.type(0)
        for j in range(Tk):
            dot += grow[j] * prow[j]
        # forward: z = (q @ k^T) * scale + mask
        for j in range(Tk):
            grow[j] = prow[j] * (grow[j] - dot) * scale


@kernel(parallel=False)
def _softmax_head(s, b, a, mask, scale, u, p_drop, drop_scale, probs, dropped, keep, dropout, inplace):
    p = probs[b, a]
    if not inplace:
        _copy(s[b, a], p)
    m = mask[b if mask.shape[0] > 1 else 0, a if mask.shape[1] > 1 else 0]
    if dropout:
        _softmax_dropout_head(p, m, scale, u[b, a], p_drop, drop_scale, keep[b, a], dropped[b, a], True)
    else:
        _softmax_dropout_head(p, m, scale, u[0, 0], p_drop, drop_scale, keep[0, 0], p, False)


@kernel
def _softmax_forward(s, mask, scale, u, p_drop, drop_scale, probs, dropped, keep, dropout, inplace):
    """The 4-D driver: every (batch, head) in parallel.  s, probs, ... (B, A, Tq, Tk), mask
    (B|1, A|1, Tq|1, Tk).  ``inplace``: ``probs`` is ``s``."""
    B, A = s.shape[:2]
    for ba in prange(B * A):
        _softmax_head(s, ba // A, ba % A, mask, scale, u, p_drop, drop_scale, probs, dropped, keep, dropout,
                      inplace)


@kernel(parallel=False)
def _softmax_head_backward(ddropped, b, a, probs, keep, drop_scale, scale, dscores, dropout, inplace):
    g = dscores[b, a]
    if not inplace:
        _copy(ddropped[b, a], g)
    _softmax_dropout_head_backward(g, probs[b, a], keep[b, a] if dropout else keep[0, 0], drop_scale, scale,
                                   dropout)


@kernel
def _softmax_backward(ddropped, probs, keep, drop_scale, scale, dscores, dropout, inplace):
    """The 4-D driver of the backward.  ``inplace``: ``dscores`` is ``ddropped``."""
    B, A = probs.shape[:2]
    for ba in prange(B * A):
        _softmax_head_backward(ddropped, ba // A, ba % A, probs, keep, drop_scale, scale, dscores, dropout,
                               inplace)


_NO_U, _NO_KEEP = np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.bool_)  # dropout off


def _as4d(mask_add, dtype, B, Tk):
    if mask_add is None:
        return np.zeros((1, 1, 1, Tk), dtype)
    m = np.asarray(mask_add, dtype=dtype)
    return m.reshape((1,) * (4 - m.ndim) + m.shape)


def attention_softmax_forward(scores, mask_add, scale, dropout_p=0.0, rng=None, training=False, out=None,
                              draws=None):
    """Fused ``softmax(scores * scale + mask_add)`` and dropout, the middle of the reference's
    ``sdpa_forward`` (``minibert.layers.attention``): softmax, then dropout.

    scores (B, A, Tq, Tk) = q @ k^T (unscaled); mask (B, 1, 1, Tk) or broadcastable.
    Returns ``probs, dropped, drop_cache`` (``dropped is probs`` and ``drop_cache is None`` when dropout
    is off).  ``out=scores`` computes ``probs`` in place.  ``draws`` (B, A, Tq, Tk): the uniform numbers
    the dropout compares with ``dropout_p``, if not drawn here from ``rng``.
    """
    dtype = scores.dtype
    probs = np.empty_like(scores) if out is None else out
    dropout = bool(training and dropout_p != 0.0)
    if dropout:
        u = uniforms(rng, scores.shape) if draws is None else draws  # the same draws as the reference's dropout
        keep = np.empty(scores.shape, np.bool_)
        dropped = np.empty_like(scores)
        drop_scale = 1.0 / (1.0 - dropout_p)
    else:
        u, keep, dropped, drop_scale = _NO_U, _NO_KEEP, probs, 1.0
    _softmax_forward(scores, _as4d(mask_add, dtype, *scores.shape[::3]), dtype.type(scale), u,
                     np.float32(dropout_p), dtype.type(drop_scale), probs, dropped, keep, dropout, probs is scores)
    return probs, dropped, ((keep, drop_scale) if dropout else None)


def attention_softmax_backward(ddropped, probs, drop_cache, scale, out=None):
    """Fused backward of ``attention_softmax_forward``: (B, A, Tq, Tk) -> dscores (w.r.t. q @ k^T).
    ``out=ddropped`` works in place."""
    dscores = np.empty_like(ddropped) if out is None else out
    if drop_cache is None:
        keep, drop_scale, dropout = _NO_KEEP, 1.0, False
    else:
        (keep, drop_scale), dropout = drop_cache, True
    dtype = probs.dtype
    _softmax_backward(ddropped, probs, keep, dtype.type(drop_scale), dtype.type(scale), dscores, dropout,
                      dscores is ddropped)
    return dscores


def _heads(x2, B, T, A):
    """(B*T, C) view -> (B, A, T, D) view of the same memory."""
    C = x2.shape[-1]
    return x2.reshape(B, T, A, C // A).transpose(0, 2, 1, 3)


def attention_forward(x, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads,
                      dropout_p=0.0, rng=None, training=False):
    """numba twin of ``minibert.layers.attention.attention_forward``.

    (B, T, C), weights (C, C), biases (C,), mask (B, 1, 1, T) -> out (B, T, C);
    ``cache``: the reference's ``AttentionCache``; ``cache.sdpa.probs`` (B, A, T, T).
    """
    B, T, C = x.shape
    A = num_heads
    x2 = x.reshape(B * T, C)
    # q, k, v = x Wq^T + bq, x Wk^T + bk, x Wv^T + bv, as one product
    qkv = matmul(x2, np.concatenate((wq, wk, wv)).T)  # (B*T, 3C)
    qkv += np.concatenate((bq, bk, bv))
    q, k, v = (_heads(qkv[:, i * C:(i + 1) * C], B, T, A) for i in range(3))  # (B, A, T, D) views
    scale = 1.0 / math.sqrt(C // A)
    scores = matmul(q, k.transpose(0, 1, 3, 2))  # (B, A, T, T), unscaled: the scale is applied in the softmax
    probs, dropped, drop_cache = attention_softmax_forward(scores, mask_add, scale, dropout_p, rng, training,
                                                           out=scores)
    ctx = np.empty((B * T, C), x.dtype)  # heads merged: written through its (B, A, T, D) view
    matmul(dropped, v, out=_heads(ctx, B, T, A))
    out = matmul(ctx, wo.T)  # (B*T, C)
    out += bo
    cs = SDPACache(q, k, v, probs, dropped, drop_cache, scale)
    return out.reshape(B, T, C), AttentionCache((x, wq), (x, wk), (x, wv), cs, (ctx.reshape(B, T, C), wo), A)


def attention_backward(dout, cache):
    """numba twin of ``minibert.layers.attention.attention_backward``.

    (B, T, C) -> dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo
    """
    (x, wq), (_, wk), (_, wv), cs, (ctx, wo), A = cache
    q, k, v, probs, dropped, drop_cache, scale = cs
    B, T, C = x.shape
    dout2 = dout.reshape(B * T, C)
    # forward: out = ctx @ wo.T + bo
    dctx = _heads(matmul(dout2, wo), B, T, A)  # (B, A, T, D) view of (B*T, C)
    dwo = matmul(dout2.T, ctx.reshape(B * T, C))
    dbo = dout2.sum(axis=0)
    dqkv = np.empty((B * T, 3 * C), x.dtype)  # dq, dk, dv written through (B, A, T, D) views
    dq, dk, dv = (_heads(dqkv[:, i * C:(i + 1) * C], B, T, A) for i in range(3))
    # forward: ctx = dropped @ v
    ddropped = matmul(dctx, v.transpose(0, 1, 3, 2))  # (B, A, T, T)
    matmul(dropped.transpose(0, 1, 3, 2), dctx, out=dv)
    # forward: dropped = dropout(softmax(scores * scale + mask))
    dscores = attention_softmax_backward(ddropped, probs, drop_cache, scale, out=ddropped)
    # forward: scores = q @ k^T
    matmul(dscores, k, out=dq)
    matmul(dscores.transpose(0, 1, 3, 2), q, out=dk)
    # forward: qkv = x @ [wq; wk; wv]^T + [bq; bk; bv]
    dx = matmul(dqkv, np.concatenate((wq, wk, wv)))  # (B*T, C)
    dw = matmul(dqkv.T, x.reshape(B * T, C))  # (3C, C)
    db = dqkv.sum(axis=0)  # (3C,)
    return (dx.reshape(B, T, C), dw[:C], db[:C], dw[C:2 * C], db[C:2 * C], dw[2 * C:], db[2 * C:], dwo, dbo)
