"""The loss-only fast path of pretraining: compute only the rows the two heads read.

``BertForPreTraining`` is BERT as transformers defines it: every layer on every row, the MLM head on every
position, ``prediction_logits`` (B, T, V).  Training needs only the loss, and the loss reads the MLM head
at the P labelled positions and the NSP head at the B [CLS] rows (~16% of the rows of a pretraining
batch).  So the pretraining job asks for this fast path (``minibert.training.loop.Job.loss_only``):

    embeddings, layers 0 .. L-2        as the model, on every row (each row is a key of the next layer)
    the last layer                     keys and values on every row; queries, scores, softmax, context,
                                       output projection, residuals, LayerNorms and FFN on the n rows only
    pooler, NSP head                   on the B [CLS] rows
    MLM head, decoder                  on the P labelled rows (as google-research/bert's gather_indexes)

The loss and every gradient are the model's: "compute everything, then pick the rows" and this give the
same numbers, dropout included (the masks of the whole activations are drawn, and the rows' are used),
float64 to 1e-12 (``tests/kernels/test_heads_rows.py``).  A BERT-Tiny pretraining step (B=32, T=128,
V=8192) then costs 0.0127 TFLOP instead of the whole model's 0.0374 (``benchmarks/bench_step.py``): most
of the saving is the decoder's (B*T, V) logits.  Everything here is speed, not BERT: students read
``minibert/models/bert.py``, which never branches for it.

Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``A`` heads, ``D = C / A``, ``V`` vocab, ``P`` labelled
positions, ``n`` rows read by the heads (the P positions and the B [CLS] rows), ``m`` the most read rows of
one sequence.
"""
import math
from typing import NamedTuple, Optional

import numpy as np

from .. import layers
from ..layers.attention import SDPACache, merge_heads, sdpa_backward, split_heads
from ..layers.cross_entropy import IGNORE_INDEX
from ..layers.encoder_layer import REFERENCE_OPS, EncoderLayerCache, encoder_layer_forward
from ..layers.linear import linear_backward, linear_forward
from ..layers.softmax import attention_mask_to_additive, softmax_forward
from . import attention as twin
from ._blas import matmul
from .dropout import uniforms


# -- which rows ------------------------------------------------------------------------------------
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


def scatter_rows(d, rows, shape):
    """(n, C) -> (B, T, C) zeros holding ``d`` at the flat ``rows``: the backward of picking those rows."""
    full = np.zeros((shape[0] * shape[1], shape[2]), d.dtype)
    full[rows] = d
    return full.reshape(shape)


# -- the attention at some rows: NumPy, then its numba twin -----------------------------------------
class RowsAttentionCache(NamedTuple):
    """What ``rows_attention_backward`` needs; ``.sdpa.probs`` (B, A, m, T) are the read rows' probabilities."""
    query: tuple         # linear cache of q = x[b, pos] Wq^T + bq, (B, m, C)
    key: tuple           # linear cache of k, (B, T, C)
    value: tuple         # linear cache of v, (B, T, C)
    sdpa: SDPACache      # with q (B, A, m, D), probs and dropped (B, A, m, T)
    output: tuple        # linear cache of out = ctx Wo^T + bo, (n, C)
    num_heads: int       # A
    rows: np.ndarray     # (n,) sorted, distinct flat indices into B*T
    pos: np.ndarray      # (B, m) the positions of the queries
    real: np.ndarray     # (B*m,) bool: which queries are read rows (the others pad)


def rows_attention_forward(x, rows, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads,
                           dropout_p=0.0, rng=None, training=False):
    """``attention_forward(x, ...)[0].reshape(B * T, C)[rows]``, computing only the read rows' queries.
    (B, T, C), rows (n,), weights (C, C), biases (C,), mask (B, 1, 1|T, T) -> out (n, C), ``RowsAttentionCache``.

    Every row is still a key and a value.  A padding query (``real`` False) is computed and dropped."""
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


def rows_attention_forward_numba(x, rows, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads,
                                 dropout_p=0.0, rng=None, training=False):
    """numba twin of ``rows_attention_forward``, as ``kernels.attention.attention_forward`` is of the
    whole attention: k and v in one product, the fused softmax-dropout kernel, products on ``_blas``."""
    B, T, C = x.shape
    A = num_heads
    pos, real = query_positions(rows, B, T)  # (B, m), (B*m,)
    m = pos.shape[1]
    # k, v = x Wk^T + bk, x Wv^T + bv, as one product over every row
    kv = matmul(x.reshape(B * T, C), np.concatenate((wk, wv)).T)  # (B*T, 2C)
    kv += np.concatenate((bk, bv))
    k, v = (twin._heads(kv[:, i * C:(i + 1) * C], B, T, A) for i in range(2))  # (B, A, T, D) views
    xq = query_rows_of(x, pos).reshape(B * m, C)
    q2 = matmul(xq, wq.T)  # (B*m, C)
    q2 += bq
    q = twin._heads(q2, B, m, A)  # (B, A, m, D)
    scale = 1.0 / math.sqrt(C // A)
    scores = matmul(q, k.transpose(0, 1, 3, 2))  # (B, A, m, T), unscaled
    mask = None if mask_add is None else query_rows_of(mask_add, pos)  # a causal mask: the queries' rows
    draws = None
    if training and dropout_p != 0.0:  # attention_forward's draws for all (B, A, T, T), at the queries' rows
        draws = query_rows_of(uniforms(rng, (B, A, T, T)), pos)  # (B, A, m, T)
    probs, dropped, drop_cache = twin.attention_softmax_forward(scores, mask, scale, dropout_p, rng, training,
                                                                out=scores, draws=draws)
    ctx = np.empty((B * m, C), x.dtype)  # heads merged: written through its (B, A, m, D) view
    matmul(dropped, v, out=twin._heads(ctx, B, m, A))
    ctx = ctx[real]  # (n, C): the padding queries dropped
    out = matmul(ctx, wo.T)  # (n, C)
    out += bo
    cs = SDPACache(q, k, v, probs, dropped, drop_cache, scale)
    return out, RowsAttentionCache((xq.reshape(B, m, C), wq), (x, wk), (x, wv), cs, (ctx, wo), A, rows, pos, real)


def rows_attention_backward_numba(dout, cache):
    """numba twin of ``rows_attention_backward``: (n, C) -> dx (B, T, C), dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo"""
    (xq, wq), (x, wk), (_, wv), cs, (ctx, wo), A, rows, pos, real = cache
    q, k, v, probs, dropped, drop_cache, scale = cs
    B, T, C = x.shape
    m = pos.shape[1]
    # forward: out = ctx @ wo.T + bo, ctx the real queries' rows
    dctx = np.zeros((B * m, C), x.dtype)
    dctx[real] = matmul(dout, wo)  # a padding query gets no gradient
    dctx = twin._heads(dctx, B, m, A)  # (B, A, m, D) view
    dwo = matmul(dout.T, ctx)
    dbo = dout.sum(axis=0)
    dkv = np.empty((B * T, 2 * C), x.dtype)  # dk, dv written through (B, A, T, D) views
    dk, dv = (twin._heads(dkv[:, i * C:(i + 1) * C], B, T, A) for i in range(2))
    # forward: ctx = dropped @ v
    ddropped = matmul(dctx, v.transpose(0, 1, 3, 2))  # (B, A, m, T)
    matmul(dropped.transpose(0, 1, 3, 2), dctx, out=dv)
    # forward: dropped = dropout(softmax(scores * scale + mask))
    dscores = twin.attention_softmax_backward(ddropped, probs, drop_cache, scale, out=ddropped)
    # forward: scores = q @ k^T
    dq2 = np.empty((B * m, C), x.dtype)
    matmul(dscores, k, out=twin._heads(dq2, B, m, A))
    matmul(dscores.transpose(0, 1, 3, 2), q, out=dk)
    # forward: kv = x @ [wk; wv]^T + [bk; bv];  q = xq @ wq.T + bq
    dx = matmul(dkv, np.concatenate((wk, wv)))  # (B*T, C)
    dx[rows] += matmul(dq2[real], wq)  # the queries' input x[b, pos]: back to those rows (distinct when real)
    dw = matmul(dkv.T, x.reshape(B * T, C))  # (2C, C)
    db = dkv.sum(axis=0)  # (2C,)
    dwq = matmul(dq2.T, xq.reshape(B * m, C))
    dbq = dq2.sum(axis=0)
    return dx.reshape(B, T, C), dwq, dbq, dw[:C], db[:C], dw[C:], db[C:], dwo, dbo


def _rows_attention_of(ops):
    """The rows' attention pair for a backend's ``ops``: the twin's with the numba attention, the NumPy
    one with the reference's, None with any other (a student's attention: it then runs whole, and its
    rows are picked)."""
    fn = getattr(ops.attention_forward, "__wrapped__", ops.attention_forward)  # debug mode wraps kernels
    if fn is twin.attention_forward:
        return rows_attention_forward_numba, rows_attention_backward_numba
    if fn is layers.attention_forward:
        return rows_attention_forward, rows_attention_backward
    return None


# -- the last layer at some rows ---------------------------------------------------------------------
class RowsLayerCache(NamedTuple):
    """The cache of a layer of which only some rows of the output were computed (``rows_layer_forward``)."""
    layer: object             # EncoderLayerCache (its LayerNorm and FFN caches hold the rows only), or the
    #                           whole layer's own cache when ``whole``
    rows: np.ndarray          # (n,) distinct flat indices into B*T
    input_shape: tuple        # (B, T, C)
    whole: bool               # True: the whole layer ran and its output's rows were picked
    backward: object          # the backward of the layer that ran (``whole``) or of the rows' attention


def _rows_dropout_forward(K, v, rows, shape, p, rng, training):
    """Dropout of the rows (n, C) of a (B, T, C) activation with the masks the whole activation would
    get: they are drawn for all B*T rows (the same draws from ``rng``), and the rows' are used."""
    if not training or p == 0.0:
        return v, None
    out, cache = K.dropout_forward(scatter_rows(v, rows, shape), p, rng, training)  # (B, T, C)
    return out.reshape(-1, shape[-1])[rows], cache


def _rows_dropout_backward(K, d, rows, shape, cache):
    """(n, C) -> (n, C): the backward of ``_rows_dropout_forward``."""
    if cache is None:
        return d
    return K.dropout_backward(scatter_rows(d, rows, shape), cache).reshape(-1, shape[-1])[rows]


def rows_layer_forward(x, rows, layer, args, kwargs):
    """Encoder layer ``layer(x, *args, **kwargs)`` when only ``rows`` of its output are read.
    (B, T, C), rows (n,) distinct flat indices into B*T -> out (n, C), ``RowsLayerCache``: the whole
    layer's ``out.reshape(B * T, C)[rows]``, dropout included.

    The library's post-LN layer on kernels whose attention has a rows' version runs ``encoder_layer_forward``'s
    lines on the n rows; any other layer (pre-LN, a student's, a student's attention) runs whole."""
    (wq, bq, wk, bk, wv, bv, wo, bo, ln1_w, ln1_b, w1, b1, w2, b2, ln2_w, ln2_b,
     mask_add, num_heads, act, eps, hidden_dropout, attention_dropout) = args
    K = kwargs.get("ops") or REFERENCE_OPS
    pair = _rows_attention_of(K)
    B, T, C = x.shape
    if layer is not encoder_layer_forward or pair is None:
        out, cache = layer(x, *args, **kwargs)  # (B, T, C)
        return out.reshape(B * T, C)[rows], RowsLayerCache(cache, rows, x.shape, True, None)
    rng, training = kwargs.get("rng"), kwargs.get("training", False)
    a, c_att = pair[0](x, rows, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads, attention_dropout,
                       rng=rng, training=training)  # (n, C)
    a, c_d1 = _rows_dropout_forward(K, a, rows, (B, T, C), hidden_dropout, rng, training)  # (n, C)
    h, c_ln1 = K.layernorm_forward(a + x.reshape(B * T, C)[rows], ln1_w, ln1_b, eps)  # (n, C)
    f, c_ffn = K.ffn_forward(h, w1, b1, w2, b2, act)  # (n, C)
    f, c_d2 = _rows_dropout_forward(K, f, rows, (B, T, C), hidden_dropout, rng, training)  # (n, C)
    out, c_ln2 = K.layernorm_forward(f + h, ln2_w, ln2_b, eps)  # (n, C)
    return out, RowsLayerCache(EncoderLayerCache(c_att, c_d1, c_ln1, c_ffn, c_d2, c_ln2, K), rows, (B, T, C),
                               False, pair[1])


def rows_layer_backward(dout, cache, layer_backward):
    """(n, C) -> dx (B, T, C), then the 16 parameter gradients in ``encoder_layer_backward``'s order.
    ``layer_backward``: the whole layer's backward (used when the whole layer ran)."""
    c, rows, shape = cache.layer, cache.rows, cache.input_shape
    if cache.whole:  # forward: out = the whole layer's out at the rows
        return layer_backward(scatter_rows(dout, rows, shape), c)
    K = c.ops
    # forward: out = LayerNorm(f + h), f = dropout(FFN(h)), all (n, C)
    dsum2, dln2_w, dln2_b = K.layernorm_backward(dout, c.ffn_norm)
    df = _rows_dropout_backward(K, dsum2, rows, shape, c.ffn_dropout)
    dh, dw1, db1, dw2, db2 = K.ffn_backward(df, c.ffn)
    dh = dh + dsum2  # the residual
    # forward: h = LayerNorm(a + x[rows]), a = dropout(the attention's output at the rows)
    dsum1, dln1_w, dln1_b = K.layernorm_backward(dh, c.attention_norm)
    da = _rows_dropout_backward(K, dsum1, rows, shape, c.attention_dropout)  # (n, C)
    dx, *dattention = cache.backward(da, c.attention)
    dx = dx.reshape(-1, shape[-1])
    dx[rows] += dsum1  # the residual: rows the output did not read get no gradient
    return (dx.reshape(shape), *dattention, dln1_w, dln1_b, dw1, db1, dw2, db2, dln2_w, dln2_b)


# -- the loss of a BertForPreTraining, computing only what it reads -------------------------------------
class LossOnlyOutput(NamedTuple):
    loss: Optional[float]                  # mlm_loss + nsp_loss, as the model's ``out.loss``
    mlm_loss: Optional[float]
    nsp_loss: Optional[float]
    masked_logits: Optional[np.ndarray]    # (P, V): the model's prediction_logits at the labelled positions
    masked_positions: Optional[np.ndarray]  # (P,) their flat indices into B*T
    seq_relationship_logits: np.ndarray    # (B, 2)


class LossOnlyCache(NamedTuple):
    embeddings: object        # EmbeddingsCache
    layers: list              # L-1 x the layers' caches, then the last layer's RowsLayerCache
    final_norm: Optional[tuple]  # pre-LN's last LayerNorm, on the rows
    pooler: object            # PoolerCache
    mlm_head: Optional[tuple]  # MLMHeadCache on the P rows
    nsp: tuple
    mlm_loss: Optional[tuple]
    nsp_loss: Optional[tuple]
    rows: np.ndarray          # (n,)
    picked: np.ndarray        # (P,) where each labelled position is among the rows
    first: np.ndarray         # (B,) where each [CLS] row is among the rows
    shape: tuple              # (B, T, C)


def loss_forward(model, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                 next_sentence_label=None):
    """``model(...)``'s losses (a ``BertForPreTraining``), computing only the rows the heads read.
    -> ``LossOnlyOutput``, ``LossOnlyCache`` (for ``loss_backward``)."""
    bert, c = model.bert, model.config
    ids, tt, mask = bert.check_inputs(input_ids, token_type_ids, attention_mask)
    B, T = ids.shape
    labels, next_sentence_label = model.check_labels(labels, next_sentence_label, ids.shape)
    positions = (np.zeros(0, np.int64) if labels is None
                 else np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX))  # (P,)
    rows = np.union1d(positions, np.arange(B) * T)  # (n,) sorted, distinct: the labelled rows and [CLS]
    picked, first = np.searchsorted(rows, positions), np.searchsorted(rows, np.arange(B) * T)
    x, c_emb = bert.embeddings_forward(ids, tt)  # (B, T, C)
    mask_add = attention_mask_to_additive(mask, bert.dtype, causal=c.is_decoder)
    (forward, _), args, kwargs = bert.layer_function(c.num_hidden_layers - 1, mask_add)
    K = kwargs["ops"]  # the backend's kernels (``minibert.backend.ops``)
    caches = []
    for i in range(c.num_hidden_layers - 1):
        x, cache = bert.layer_forward(i, x, mask_add)  # (B, T, C)
        caches.append(cache)
    x, cache = rows_layer_forward(x, rows, forward, args, kwargs)  # (n, C)
    caches.append(cache)
    c_final = None
    if c.layer_norm_position == "pre":  # not BERT: the final LayerNorm, per row
        x, c_final = K.layernorm_forward(x, bert.params["encoder.final_layer_norm.weight"],
                                         bert.params["encoder.final_layer_norm.bias"], c.layer_norm_eps)
    pooled, c_pool = bert.pooler_forward(x[first])  # (B, C)
    logits = c_head = mlm_loss = c_mlm = nsp_loss = c_nspl = None
    if labels is not None:
        logits, c_head = model.mlm_head_forward(x[picked])  # (P, V)
        mlm_loss, c_mlm = K.cross_entropy_forward(logits, labels.reshape(-1)[positions])
    nsp_logits, c_nsp = model.nsp_head_forward(pooled)  # (B, 2)
    if next_sentence_label is not None:
        nsp_loss, c_nspl = K.cross_entropy_forward(nsp_logits, next_sentence_label)
    losses = [l for l in (mlm_loss, nsp_loss) if l is not None]
    out = LossOnlyOutput(sum(losses) if losses else None, mlm_loss, nsp_loss, logits,
                         positions if labels is not None else None, nsp_logits)
    return out, LossOnlyCache(c_emb, caches, c_final, c_pool, c_head, c_nsp, c_mlm, c_nspl, rows, picked, first,
                              (B, T, c.hidden_size))


def loss_backward(model, cache, dmlm=1.0, dnsp=1.0):
    """*Add* the gradients of ``loss_forward``'s loss into ``model.grads``: what ``model.backward`` adds
    after ``model(...)`` on the same batch."""
    bert, c = model.bert, model.config
    last = c.num_hidden_layers - 1
    (_, layer_backward), _, kwargs = bert.layer_function(last)
    K = kwargs["ops"]  # the backend's kernels (``minibert.backend.ops``)
    B, T, C = cache.shape
    dx = np.zeros((cache.rows.size, C), dtype=bert.dtype)  # (n, C)
    if cache.mlm_loss is not None:
        dx[cache.picked] = model.mlm_head_backward(K.cross_entropy_backward(dmlm, cache.mlm_loss), cache.mlm_head)
    if cache.nsp_loss is not None:
        dpooled = model.nsp_head_backward(K.cross_entropy_backward(dnsp, cache.nsp_loss), cache.nsp)
        dx[cache.first] += bert.pooler_backward(dpooled, cache.pooler)
    if cache.final_norm is not None:
        dx, dw, db = K.layernorm_backward(dx, cache.final_norm)
        bert._acc("encoder.final_layer_norm.weight", dw)
        bert._acc("encoder.final_layer_norm.bias", db)
    dx, *dparams = rows_layer_backward(dx, cache.layers[last], layer_backward)  # (B, T, C)
    bert.add_layer_grads(last, dparams)
    for i in reversed(range(last)):
        dx = bert.layer_backward(i, dx, cache.layers[i])
    bert.embeddings_backward(dx, cache.embeddings)


class LossOnly:
    """The loss-only fast path as the training loop calls it: ``out = path.forward(model, **batch)``,
    then ``path.backward(model, dmlm=..., dnsp=...)``, in place of ``model(**batch)`` and
    ``model.backward(...)``.  It keeps the last forward's cache, as a model does."""

    def __init__(self):
        self._cache = None

    def forward(self, model, **batch):
        out, self._cache = loss_forward(model, **batch)
        return out

    def backward(self, model, **upstream):
        if self._cache is None:
            raise ValueError("backward() called before forward()")
        loss_backward(model, self._cache, **upstream)

    def __repr__(self):
        return "LossOnly(the rows the pretraining heads read: minibert.kernels.heads_rows)"
