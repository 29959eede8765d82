"""Self-attention when only some rows of its output are read: the last encoder layer under the
pretraining heads, which read the masked positions and [CLS] (~16% of the rows of a batch).

Every row is still a key and a value, so k and v are computed for all B*T rows.  The query of an
unread row, its T scores, its context and its output projection are not computed:

    k, v   = x Wk^T + bk, x Wv^T + bv                         # (B, T, C): every row
    q      = x[b, pos] Wq^T + bq                              # (B, m, C): the read rows of each sequence
    scores = q k^T / sqrt(D) + mask_add                       # (B, A, m, T)
    probs  = softmax(scores) -> dropout                       # (B, A, m, T)
    ctx    = probs v, heads merged, the real rows picked      # (n, C)
    out    = ctx Wo^T + bo                                    # (n, C)

``pos`` (B, m) holds each sequence's read positions, padded to the longest count ``m`` by repeating
position 0; a padding query is computed and dropped, and gets no gradient.  The output is
``attention_forward``'s ``out.reshape(B * T, C)[rows]``, dropout included: the uniform numbers are drawn
for the whole (B, A, T, T), as ``attention_forward`` draws them, and the read rows' are used, so both
drop the same probabilities (``tests/test_model.py`` checks the gradients too).

Not an exercise: the model calls it in place of ``attention_forward`` for the last layer when the
backend provides it (the NumPy references and the numba twins do; a module of your own layers runs
your ``attention_forward`` on every row instead).  Its backward reuses ``sdpa_backward``, whose lines
do not care that the queries are fewer than the keys.

Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``A`` heads, ``D = C / A``, ``n`` read rows, ``m`` the
most read rows of one sequence.
"""
import math
from typing import NamedTuple

import numpy as np

from .attention import SDPACache, merge_heads, sdpa_backward, split_heads
from .linear import linear_backward, linear_forward
from .softmax import softmax_forward


class RowsAttentionCache(NamedTuple):
    """What ``rows_attention_backward`` needs; ``.sdpa.probs`` (B, A, m, T) are the read rows'
    probabilities."""
    query: tuple         # linear cache of q = x[b, pos] Wq^T + bq, (B, m, C)
    key: tuple           # linear cache of k, (B, T, C)
    value: tuple         # linear cache of v, (B, T, C)
    sdpa: SDPACache      # with q (B, A, m, D), probs and dropped (B, A, m, T)
    output: tuple        # linear cache of out = ctx Wo^T + bo, (n, C)
    num_heads: int       # A
    rows: np.ndarray     # (n,) sorted, distinct flat indices into B*T
    pos: np.ndarray      # (B, m) the positions of the queries
    real: np.ndarray     # (B*m,) bool: which queries are read rows (the others pad)


def query_positions(rows, B, T):
    """rows (n,) sorted, distinct flat indices into B*T -> pos (B, m) int, real (B*m,) bool.

    ``pos[b, :count_b]`` are the read positions of sequence b in order, the rest 0 (padding), so that
    ``(b * T + pos)[real]`` is ``rows`` again."""
    seq, t = np.divmod(rows, T)
    counts = np.bincount(seq, minlength=B)  # (B,)
    m = max(int(counts.max()), 1) if counts.size else 1
    real = np.arange(m)[None, :] < counts[:, None]  # (B, m)
    pos = np.zeros((B, m), dtype=np.int64)
    pos[real] = t  # row-major order of (B, m) is the order of ``rows``
    return pos, real.reshape(-1)


def query_rows_of(a, pos):
    """(B, ..., T, K) -> (B, ..., m, K): the rows ``pos`` (B, m) of each sequence along the axis T, e.g.
    x (B, T, C) -> (B, m, C), a causal mask (B, 1, T, T) -> (B, 1, m, T), dropout's numbers (B, A, T, T)
    -> (B, A, m, T).  An axis of length 1 there (a padding mask (B, 1, 1, T)) broadcasts: ``a`` itself."""
    B, T, K = a.shape[0], a.shape[-2], a.shape[-1]
    if T == 1:
        return a
    H = math.prod(a.shape[1:-2])  # the axes between, e.g. the heads
    index = (np.arange(B)[:, None, None] * H + np.arange(H)[:, None]) * T + pos[:, None, :]  # (B, H, m)
    return np.ascontiguousarray(a).reshape(B * H * T, K)[index].reshape(a.shape[:-2] + (pos.shape[1], K))


def rows_attention_forward(x, rows, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads,
                           dropout_p=0.0, rng=None, training=False):
    """(B, T, C), rows (n,), weights (C, C), biases (C,), mask (B, 1, 1|T, T) -> out (n, C),
    ``RowsAttentionCache``: ``attention_forward(x, ...)[0].reshape(B * T, C)[rows]``."""
    B, T, C = x.shape
    A = num_heads
    pos, real = query_positions(rows, B, T)  # (B, m), (B*m,)
    m = pos.shape[1]
    k, ck = linear_forward(x, wk, bk)  # (B, T, C): every row is a key
    v, cv = linear_forward(x, wv, bv)  # (B, T, C) and a value
    q, cq = linear_forward(query_rows_of(x, pos), wq, bq)  # (B, m, C): the read rows' queries
    q, k, v = split_heads(q, A), split_heads(k, A), split_heads(v, A)  # (B, A, m|T, D)
    scale = 1.0 / math.sqrt(C // A)
    scores = (q @ k.transpose(0, 1, 3, 2)) * q.dtype.type(scale)  # (B, A, m, T)
    # a causal mask (B, 1, T, T) has a row per query: the read rows'; a padding mask (B, 1, 1, T) broadcasts
    mask = None if mask_add is None else query_rows_of(mask_add, pos)
    probs, _ = softmax_forward(scores, mask)  # (B, A, m, T)
    dropped, drop_cache = probs, None
    if training and dropout_p != 0.0:  # attention_forward's draws for all (B, A, T, T), at the read rows
        u = query_rows_of(rng.random((B, A, T, T), dtype=np.float32), pos)
        keep = u >= dropout_p  # (B, A, m, T)
        drop_scale = 1.0 / (1.0 - dropout_p)
        dropped, drop_cache = probs * keep * probs.dtype.type(drop_scale), (keep, drop_scale)
    ctx = merge_heads(dropped @ v).reshape(B * m, C)[real]  # (n, C): the padding queries dropped
    out, co = linear_forward(ctx, wo, bo)  # (n, C)
    return out, RowsAttentionCache(cq, ck, cv, SDPACache(q, k, v, probs, dropped, drop_cache, scale), co, A,
                                   rows, pos, real)


def rows_attention_backward(dout, cache):
    """(n, C) -> dx (B, T, C), dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo"""
    cq, ck, cv, cs, co, A, rows, pos, real = cache
    B, m = pos.shape
    # forward: out = ctx @ wo.T + bo, ctx = merge_heads(...)[real]
    dctx_rows, dwo, dbo = linear_backward(dout, co)  # (n, C)
    dctx = np.zeros((B * m, dout.shape[-1]), dout.dtype)
    dctx[real] = dctx_rows  # a padding query gets no gradient
    dq, dk, dv = sdpa_backward(split_heads(dctx.reshape(B, m, -1), A), cs)
    dxq, dwq, dbq = linear_backward(merge_heads(dq), cq)  # (B, m, C)
    dx, dwk, dbk = linear_backward(merge_heads(dk), ck)  # (B, T, C)
    dxv, dwv, dbv = linear_backward(merge_heads(dv), cv)
    dx += dxv
    # forward: the queries' input was x[b, pos]: its gradient goes back to those rows (distinct when real)
    dx = dx.reshape(-1, dx.shape[-1])
    dx[rows] += dxq.reshape(B * m, -1)[real]
    return dx.reshape(dxv.shape), dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo


def gradcheck_cases(rng):
    """The gradient checks of this pair, float64 inputs drawn from ``rng`` (``tests/test_layers_gradcheck.py``
    runs them).  ``dbk`` is exactly 0, as in ``attention_forward`` (softmax ignores a shift)."""
    from minibert.gradcheck import GradCase
    from minibert.layers.softmax import attention_mask_to_additive
    B, T, C, A = 2, 5, 12, 3
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    weights = {n: rng.standard_normal(s) * 0.5 for n, s in zip(
        ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"], [(C, C), (C,)] * 4)}
    x = rng.standard_normal((B, T, C))
    rows = np.array([0, 2, 3, 5, 7])  # 3 read rows in the first sequence, 2 in the second (one padding query)
    return [
        GradCase("rows 0, 2, 3 | 0, 2 of x (2, 5, 12), 3 heads, padded keys", rows_attention_forward,
                 rows_attention_backward, inputs=dict(x=x, **weights),
                 args=dict(rows=rows, mask_add=attention_mask_to_additive(mask, np.float64), num_heads=A),
                 zero=("dbk",)),
        GradCase("the same with attention dropout 0.3 and a causal mask", rows_attention_forward,
                 rows_attention_backward, inputs=dict(x=x, **weights),
                 args=dict(rows=rows, mask_add=attention_mask_to_additive(mask, np.float64, causal=True),
                           num_heads=A, dropout_p=0.3, rng=np.random.default_rng(5), training=True),
                 zero=("dbk",)),
    ]
