"""BERT assembled from the layers, exactly as google-research/bert and transformers define it.

    embeddings  x = LayerNorm(word[ids] + token_type[segs] + position[0..T)) -> dropout
    L x layer   x = LayerNorm(x + dropout(Attention(x)))          (post-LN, as in the paper)
                x = LayerNorm(x + dropout(FFN(x)))
                (layer_norm_position="pre", an experiment, NOT BERT: x = x + dropout(Attention(LN(x))),
                 x = x + dropout(FFN(LN(x))) per layer, then x = LN(x) once after the last; lesson 07d)
    pooler      pooled = tanh(x[:, 0] Wp^T + bp)                  (the [CLS] position)
    MLM head    logits = LayerNorm(act(h Wt^T + bt)) E^T + b      (E: the word embeddings, tied)
    NSP head    nsp = pooled Wn^T + bn                            (2-way: is B the next sentence?)

A model is a thin object over a ``params`` dict and a ``grads`` dict with identical keys (the
transformers parameter names); ``forward`` runs the layer functions and keeps their caches,
``backward`` runs the backward functions in reverse and *accumulates* into ``grads``.
Kernels are looked up in ``minibert.backend.ops`` (NumPy references or numba twins).  What a forward
keeps for its backward is a ``NamedTuple`` per part (``EmbeddingsCache``, ``EncoderLayerCache``, ...),
so no code reaches into another's cache by position.

Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``A`` heads, ``F`` intermediate, ``V`` vocab,
``P`` number of predicted (labelled) positions.
"""
import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from .. import backend
from ..layers.cross_entropy import IGNORE_INDEX
from ..layers.encoder_layer import PARAMETERS as LAYER_PARAMETERS
from ..layers.encoder_layer import REFERENCE_OPS, EncoderLayerCache
from ..layers.encoder_layer import encoder_layer_backward, encoder_layer_forward
from ..layers.gelu import ACTIVATIONS
from ..layers.pre_ln_encoder_layer import pre_ln_encoder_layer_backward, pre_ln_encoder_layer_forward
from ..layers.rows_attention import RowsAttentionCache
from ..layers.softmax import attention_mask_to_additive
from .module import Module, as_int_array, check_config, check_dtype, shape_of

# the pre-LN stack's final LayerNorm (layer_norm_position="pre" only; not BERT, no transformers name: such a
# model is never exported to transformers, see minibert.files.save_pretrained)
FINAL_NORM = "encoder.final_layer_norm"


def _experiments(config):
    """The repr's note of a model that is not BERT: ", pre-LN (not BERT)" or ""."""
    return ", pre-LN (not BERT)" if config.layer_norm_position == "pre" else ""


@dataclass
class BertModelOutput:
    last_hidden_state: np.ndarray          # (B, T, C)
    pooler_output: Optional[np.ndarray]    # (B, C)
    attentions: Optional[list] = None      # L x (B, A, T, T) when output_attentions=True

    def __repr__(self):
        return f"BertModelOutput(last_hidden_state={shape_of(self.last_hidden_state)}, " \
               f"pooler_output={shape_of(self.pooler_output)})"


@dataclass
class BertForPreTrainingOutput:
    loss: Optional[float]                  # mlm_loss + nsp_loss (those that were asked for)
    prediction_logits: np.ndarray          # (B, T, V) without labels; (P, V) at labelled positions with them
    seq_relationship_logits: np.ndarray    # (B, 2)
    mlm_loss: Optional[float] = None
    nsp_loss: Optional[float] = None
    masked_positions: Optional[np.ndarray] = None  # (P,) flat indices into B*T of the rows of prediction_logits
    # (B, T, C); None with labels: the last layer then computes only the rows the heads read (the labelled
    # positions and [CLS]; ``BertForPreTraining.last_layer_rows_only``): ask ``model.bert`` for all of them
    last_hidden_state: Optional[np.ndarray] = None
    attentions: Optional[list] = None

    def __repr__(self):
        loss = "None" if self.loss is None else f"{float(self.loss):.4f}"
        return (f"BertForPreTrainingOutput(loss={loss}, prediction_logits={shape_of(self.prediction_logits)}, "
                f"seq_relationship_logits={shape_of(self.seq_relationship_logits)})")


class EmbeddingsCache(NamedTuple):
    word: tuple          # embedding cache of the word ids (B, T)
    token_type: tuple    # embedding cache of the segment ids (B, T)
    position: tuple      # embedding cache of the positions 0..T-1, (1, T)
    norm: tuple          # LayerNorm cache
    dropout: object      # dropout cache (None when dropout is off)


class BertModelCache(NamedTuple):
    embeddings: EmbeddingsCache
    layers: list              # L x EncoderLayerCache (the last: a RowsLayerCache when ``rows`` were given)
    pooler_dense: Optional[tuple]   # linear cache of the pooler, None without a pooler
    pooler_tanh: Optional[object]
    batch_shape: tuple        # (B, T)
    final_norm: Optional[tuple] = None  # LayerNorm cache of the pre-LN stack's last LN (None: post-LN, BERT)
    rows: Optional[np.ndarray] = None   # (n,) the rows of the output that were computed (None: all B*T)


class RowsLayerCache(NamedTuple):
    """The cache of a layer of which only some rows of the output were computed (``rows_layer_forward``)."""
    layer: EncoderLayerCache  # the layer's own cache; its LayerNorm and FFN caches hold the rows only
    rows: np.ndarray          # (n,) distinct flat indices into B*T
    input_shape: tuple        # (B, T, C)
    whole: bool               # True: the whole layer ran and its output was gathered (another layer's pair)

    @property
    def attention(self):
        """The attention's cache, as ``EncoderLayerCache.attention``: a ``RowsAttentionCache`` when only the
        rows' queries ran (its ``.sdpa.probs`` (B, A, m, T)), else the whole attention's."""
        return self.layer.attention


def rows_layer_forward(x, rows, wq, bq, wk, bk, wv, bv, wo, bo, ln1_w, ln1_b, w1, b1, w2, b2, ln2_w, ln2_b,
                       mask_add, num_heads, act="gelu", eps=1e-12, hidden_dropout=0.0, attention_dropout=0.0,
                       rng=None, training=False, ops=None, every_query=False):
    """``encoder_layer_forward`` when only ``rows`` of its output are read: the last layer under the
    pretraining heads, which read the masked positions and [CLS] (~16% of the rows of a batch).

    (B, T, C), rows (n,) distinct flat indices into B*T -> out (n, C), ``RowsLayerCache``.  ``out`` is
    the full layer's ``out.reshape(B * T, C)[rows]``, dropout included (the same masks are drawn), and
    so are the gradients (``tests/test_model.py``).

    Every row is still a key and a value of the attention.  The rest is per row: the queries, scores,
    contexts and output projection of the attention (``rows_attention_forward``, when ``ops`` has it;
    else the attention runs on every row and its rows are picked), the residual, both LayerNorms and the
    FFN.  These are the lines of ``encoder_layer_forward`` on the n rows.  ``every_query``: run the
    attention on every row all the same (to keep every query's probabilities: ``output_attentions``).
    """
    K = REFERENCE_OPS if ops is None else ops
    drop = dict(rng=rng, training=training)
    B, T, C = x.shape
    attention_args = (wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads, attention_dropout)
    if hasattr(K, "rows_attention_forward") and not every_query:
        a, c_att = K.rows_attention_forward(x, rows, *attention_args, **drop)  # (n, C)
    else:
        a, c_att = K.attention_forward(x, *attention_args, **drop)  # (B, T, C)
        a = a.reshape(B * T, C)[rows]  # (n, C): the rows the output needs
    a, c_d1 = _rows_dropout_forward(K, a, rows, (B, T, C), hidden_dropout, rng, training)  # (n, C)
    h, c_ln1 = K.layernorm_forward(a + x.reshape(B * T, C)[rows], ln1_w, ln1_b, eps)  # (n, C)
    f, c_ffn = K.ffn_forward(h, w1, b1, w2, b2, act)  # (n, C)
    f, c_d2 = _rows_dropout_forward(K, f, rows, (B, T, C), hidden_dropout, rng, training)  # (n, C)
    out, c_ln2 = K.layernorm_forward(f + h, ln2_w, ln2_b, eps)  # (n, C)
    return out, RowsLayerCache(EncoderLayerCache(c_att, c_d1, c_ln1, c_ffn, c_d2, c_ln2, ops), rows,
                               (B, T, C), whole=False)


def _scatter(d, rows, shape):
    """(n, C) -> (B, T, C) zeros holding ``d`` at the flat ``rows``: the backward of picking those rows."""
    full = np.zeros((shape[0] * shape[1], shape[2]), d.dtype)
    full[rows] = d
    return full.reshape(shape)


def _rows_dropout_forward(K, v, rows, shape, p, rng, training):
    """Dropout of the rows (n, C) of a (B, T, C) activation with the masks the whole activation would
    get: they are drawn for all B*T rows (the same draws from ``rng``), and the rows' are used."""
    if not training or p == 0.0:
        return v, None
    out, cache = K.dropout_forward(_scatter(v, rows, shape), p, rng, training)  # (B, T, C)
    return out.reshape(-1, shape[-1])[rows], cache


def _rows_dropout_backward(K, d, rows, shape, cache):
    """(n, C) -> (n, C): the backward of ``_rows_dropout_forward``."""
    if cache is None:
        return d
    return K.dropout_backward(_scatter(d, rows, shape), cache).reshape(-1, shape[-1])[rows]


def rows_layer_backward(dout, cache):
    """(n, C) -> dx (B, T, C), then the 16 parameter gradients in ``encoder_layer_backward``'s order."""
    c, rows, shape = cache.layer, cache.rows, cache.input_shape
    K = REFERENCE_OPS if c.ops is None else c.ops
    # forward: out = LayerNorm(f + h), f = dropout(FFN(h)), all (n, C)
    dsum2, dln2_w, dln2_b = K.layernorm_backward(dout, c.ffn_norm)
    df = _rows_dropout_backward(K, dsum2, rows, shape, c.ffn_dropout)
    dh, dw1, db1, dw2, db2 = K.ffn_backward(df, c.ffn)
    dh = dh + dsum2  # the residual
    # forward: h = LayerNorm(a + x[rows]), a = dropout(the attention's output at the rows)
    dsum1, dln1_w, dln1_b = K.layernorm_backward(dh, c.attention_norm)
    da = _rows_dropout_backward(K, dsum1, rows, shape, c.attention_dropout)  # (n, C)
    if isinstance(c.attention, RowsAttentionCache):
        dx, *dattention = K.rows_attention_backward(da, c.attention)
    else:  # forward: the attention ran on every row and its rows were picked
        dx, *dattention = K.attention_backward(_scatter(da, rows, shape), c.attention)
    dx = dx.reshape(-1, shape[-1])
    dx[rows] += dsum1  # the residual: rows the output did not read get no gradient
    return (dx.reshape(shape), *dattention, dln1_w, dln1_b, dw1, db1, dw2, db2, dln2_w, dln2_b)


class BertModel(Module):
    """The BERT encoder + pooler.  ``out.last_hidden_state`` (B, T, C), ``out.pooler_output`` (B, C).

    Its state dict uses transformers' ``BertModel`` names (no ``bert.`` prefix).
    """

    def __init__(self, config, seed=0, dtype=np.float32, add_pooling_layer=True):
        super().__init__()
        check_config(config)
        self.config = config
        self.dtype = check_dtype(dtype)
        self.add_pooling_layer = add_pooling_layer
        self._init_rng = np.random.default_rng(seed)
        self.dropout_rng = np.random.default_rng([seed, 1])  # separate stream: init and masks don't interact
        self._cache = None
        C, F = config.hidden_size, config.intermediate_size
        self._new_param("embeddings.word_embeddings.weight", (config.vocab_size, C), "normal")
        self._new_param("embeddings.position_embeddings.weight", (config.max_position_embeddings, C), "normal")
        self._new_param("embeddings.token_type_embeddings.weight", (config.type_vocab_size, C), "normal")
        # transformers' nn.Embedding(padding_idx=pad_token_id) starts the padding row at zero
        self.params["embeddings.word_embeddings.weight"][config.pad_token_id] = 0
        self._new_param("embeddings.LayerNorm.weight", (C,), "ones")
        self._new_param("embeddings.LayerNorm.bias", (C,), "zeros")
        for i in range(config.num_hidden_layers):
            pre = f"encoder.layer.{i}."
            for proj in ("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense"):
                self._new_param(pre + proj + ".weight", (C, C), "normal")
                self._new_param(pre + proj + ".bias", (C,), "zeros")
            self._new_param(pre + "attention.output.LayerNorm.weight", (C,), "ones")
            self._new_param(pre + "attention.output.LayerNorm.bias", (C,), "zeros")
            self._new_param(pre + "intermediate.dense.weight", (F, C), "normal")
            self._new_param(pre + "intermediate.dense.bias", (F,), "zeros")
            self._new_param(pre + "output.dense.weight", (C, F), "normal")
            self._new_param(pre + "output.dense.bias", (C,), "zeros")
            self._new_param(pre + "output.LayerNorm.weight", (C,), "ones")
            self._new_param(pre + "output.LayerNorm.bias", (C,), "zeros")
        if config.layer_norm_position == "pre":  # not BERT: the pre-LN stack's last sum gets one LayerNorm
            self._new_param(FINAL_NORM + ".weight", (C,), "ones")
            self._new_param(FINAL_NORM + ".bias", (C,), "zeros")
        if add_pooling_layer:
            self._new_param("pooler.dense.weight", (C, C), "normal")
            self._new_param("pooler.dense.bias", (C,), "zeros")

    def __repr__(self):
        c = self.config
        return (f"BertModel(L={c.num_hidden_layers}, C={c.hidden_size}, A={c.num_attention_heads}, "
                f"F={c.intermediate_size}, V={c.vocab_size}, params={self.num_parameters():,}, "
                f"dtype={self.dtype.name}, {'train' if self.training else 'eval'}{_experiments(c)})")

    # -- input checking --------------------------------------------------------------------------
    def check_inputs(self, input_ids, token_type_ids=None, attention_mask=None):
        """Validate and normalise the inputs; returns int64 (B, T) arrays.  Raises a clear error."""
        c = self.config
        ids = as_int_array("input_ids", input_ids)
        if ids.ndim != 2:
            hint = " (a single sequence: pass input_ids[None])" if ids.ndim == 1 else ""
            raise ValueError(f"input_ids must be 2-D (batch, sequence), got shape {ids.shape}{hint}")
        B, T = ids.shape
        if B == 0 or T == 0:
            raise ValueError(f"input_ids must be non-empty, got shape {ids.shape}")
        if T > c.max_position_embeddings:
            raise ValueError(f"input_ids has sequence length {T}, longer than max_position_embeddings="
                             f"{c.max_position_embeddings}: truncate the input")
        if ids.min() < 0 or ids.max() >= c.vocab_size:
            bad = ids[(ids < 0) | (ids >= c.vocab_size)][0]
            raise ValueError(f"input_ids must be in [0, vocab_size={c.vocab_size}), got {bad}")
        if token_type_ids is None:
            tt = np.zeros_like(ids)
        else:
            tt = as_int_array("token_type_ids", token_type_ids, ids.shape)
            if tt.min() < 0 or tt.max() >= c.type_vocab_size:
                raise ValueError(f"token_type_ids must be in [0, type_vocab_size={c.type_vocab_size}), "
                                 f"got values {sorted(set(np.unique(tt).tolist()))}")
        if attention_mask is None:
            mask = np.ones_like(ids)
        else:
            mask = np.asarray(attention_mask)
            if mask.shape != ids.shape:
                raise ValueError(f"attention_mask must have shape {ids.shape} (like input_ids), got {mask.shape}")
            if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
                raise ValueError("attention_mask must hold only 1 (attend) and 0 (padding)")
        return ids, tt, mask

    # -- forward / backward ----------------------------------------------------------------------
    def forward(self, input_ids, token_type_ids=None, attention_mask=None, output_attentions=False, rows=None):
        """(B, T) ids [, (B, T) segment ids, (B, T) 1/0 mask] -> BertModelOutput

        ``rows`` (n,) sorted, distinct flat indices into B*T: compute only these rows of the output,
        ``last_hidden_state`` (n, C); with a pooler they must include every [CLS] row ``b * T``.  The
        last layer then runs its per-row part on those rows only (``rows_layer_forward``): what
        ``BertForPreTraining`` does, since its heads read only the masked positions and [CLS]."""
        ids, tt, mask = self.check_inputs(input_ids, token_type_ids, attention_mask)
        K, c, p = backend.ops, self.config, self.params
        B, T = ids.shape
        first = None  # where each [CLS] row is among the output's rows
        if rows is not None:
            rows = np.asarray(rows)
            if rows.ndim != 1 or rows.dtype.kind not in "iu" or (np.diff(rows) <= 0).any() or (
                    rows.size and (rows[0] < 0 or rows[-1] >= B * T)):
                raise ValueError(f"rows must be sorted, distinct flat indices into B*T = {B * T}, got {rows}")
            if self.add_pooling_layer:
                cls_rows = np.arange(B) * T
                first = np.searchsorted(rows, cls_rows)
                if (first >= rows.size).any() or (rows[np.minimum(first, rows.size - 1)] != cls_rows).any():
                    raise ValueError("rows must include every [CLS] row b * T: the pooler reads them")
        drop = dict(rng=self.dropout_rng, training=self.training)
        eps = c.layer_norm_eps

        backend.scope = "embeddings forward"
        positions = np.arange(T)[None]  # (1, T): every row has positions 0..T-1
        we, c_word = K.embedding_forward(ids, p["embeddings.word_embeddings.weight"])  # (B, T, C)
        te, c_type = K.embedding_forward(tt, p["embeddings.token_type_embeddings.weight"])  # (B, T, C)
        pe, c_pos = K.embedding_forward(positions, p["embeddings.position_embeddings.weight"])  # (1, T, C)
        x, c_norm = K.layernorm_forward(we + te + pe, p["embeddings.LayerNorm.weight"],
                                        p["embeddings.LayerNorm.bias"], eps)  # (B, T, C)
        x, c_drop = K.dropout_forward(x, c.hidden_dropout_prob, **drop)
        embeddings = EmbeddingsCache(c_word, c_type, c_pos, c_norm, c_drop)
        # (B, 1, 1, T); with is_decoder, (B, 1, T, T): query i sees keys j <= i only (not BERT: lesson 07c)
        mask_add = attention_mask_to_additive(mask, self.dtype, causal=c.is_decoder)

        layer_caches = []
        for i in range(c.num_hidden_layers):
            x, cache = self._layer_forward(i, x, mask_add, rows if i == c.num_hidden_layers - 1 else None,
                                           every_query=output_attentions)
            layer_caches.append(cache)
        c_final = None
        if c.layer_norm_position == "pre":  # not BERT: normalise the residual stream once, at the top
            backend.scope = "encoder.final_layer_norm forward"
            x, c_final = K.layernorm_forward(x, p[FINAL_NORM + ".weight"], p[FINAL_NORM + ".bias"], eps)  # (B, T, C)

        pooled = c_pd = c_pt = None
        backend.scope = "pooler forward"
        if self.add_pooling_layer:
            cls = x[:, 0] if rows is None else x[first]  # (B, C)
            h, c_pd = K.linear_forward(cls, p["pooler.dense.weight"], p["pooler.dense.bias"])  # (B, C)
            pooled, c_pt = K.tanh_forward(h)
        self._cache = BertModelCache(embeddings, layer_caches, c_pd, c_pt, ids.shape, c_final, rows)
        attentions = [lc.attention.sdpa.probs for lc in layer_caches] if output_attentions else None
        return BertModelOutput(x, pooled, attentions)

    def _layer_forward(self, i, x, mask_add, rows=None, every_query=False):
        """One post-LN encoder layer: ``backend.ops.encoder_layer_forward`` when the backend is a module that
        defines one (``set_backend(module)``), else ``minibert/layers/encoder_layer.py``'s; either way on
        the backend's kernels (``ops=backend.ops``).  (B, T, C) -> (B, T, C), ``EncoderLayerCache``.
        With ``rows``: -> (n, C), ``RowsLayerCache`` (``rows_layer_forward`` for the library's post-LN
        layer; any other layer runs on every row, and its output's rows are picked).  ``every_query``: its
        attention runs on every row (``output_attentions`` asks for every query's probabilities)."""
        K, c, p = backend.ops, self.config, self.params
        pre = f"encoder.layer.{i}."
        backend.scope = f"encoder.layer.{i} forward"
        # pre-LN (not BERT) always runs layers/pre_ln_encoder_layer.py's pair, on the backend's kernels; a
        # set_backend(module)'s own encoder_layer_forward is the post-LN capstone, so it is not used then
        layer = (pre_ln_encoder_layer_forward if c.layer_norm_position == "pre"
                 else getattr(K, "encoder_layer_forward", encoder_layer_forward))
        args = (*(p[pre + name] for name in LAYER_PARAMETERS.values()), mask_add, c.num_attention_heads,
                c.hidden_act, c.layer_norm_eps, c.hidden_dropout_prob, c.attention_probs_dropout_prob)
        kwargs = dict(rng=self.dropout_rng, training=self.training, ops=K)
        if rows is None:
            return layer(x, *args, **kwargs)
        if layer is encoder_layer_forward:
            return rows_layer_forward(x, rows, *args, **kwargs, every_query=every_query)
        out, cache = layer(x, *args, **kwargs)
        return out.reshape(-1, out.shape[-1])[rows], RowsLayerCache(cache, rows, x.shape, whole=True)

    def _layer_backward(self, i, dout, cache):
        """``encoder_layer_backward`` (``backend.ops``'s if the backend defines one); *adds* the layer's
        parameter gradients into ``grads`` and returns the gradient of the layer's input, (B, T, C)."""
        pre = f"encoder.layer.{i}."
        backend.scope = f"encoder.layer.{i} backward"
        layer = (pre_ln_encoder_layer_backward if self.config.layer_norm_position == "pre"
                 else getattr(backend.ops, "encoder_layer_backward", encoder_layer_backward))
        if isinstance(cache, RowsLayerCache) and not cache.whole:
            layer = rows_layer_backward
        elif isinstance(cache, RowsLayerCache):  # forward: out = the whole layer's out at the rows
            dout, cache = _scatter(dout, cache.rows, cache.input_shape), cache.layer
        dx, *dparams = layer(dout, cache)
        for name, g in zip(LAYER_PARAMETERS.values(), dparams):
            self._acc(pre + name, g)
        return dx

    def backward(self, d_last_hidden_state=None, d_pooler_output=None):
        """*Add* d(loss)/d(params) into ``grads``, given the upstream gradients of the outputs,
        (B, T, C) (or (n, C) after ``forward(rows=...)``) and/or (B, C).  Gradients accumulate:
        ``zero_grad()`` clears them."""
        if self._cache is None:
            raise ValueError("backward() called before forward(): run the model on a batch first")
        K, c = backend.ops, self.config
        cache = self._cache
        B, T = cache.batch_shape
        shape = (B, T, c.hidden_size) if cache.rows is None else (cache.rows.size, c.hidden_size)
        if d_last_hidden_state is None:
            dx = np.zeros(shape, dtype=self.dtype)
        else:
            dx = np.array(d_last_hidden_state, dtype=self.dtype)  # a copy: we add into it
            if dx.shape != shape:
                raise ValueError(f"d_last_hidden_state must have shape {shape}, got {dx.shape}")
        backend.scope = "pooler backward"
        if d_pooler_output is not None:
            if cache.pooler_dense is None:
                raise ValueError("d_pooler_output given, but this BertModel has no pooler")
            # forward: pooled = tanh(x[:, 0] @ Wp.T + bp)
            dh = K.tanh_backward(np.asarray(d_pooler_output, dtype=self.dtype), cache.pooler_tanh)
            dfirst, dw, db = K.linear_backward(dh, cache.pooler_dense)
            self._acc("pooler.dense.weight", dw)
            self._acc("pooler.dense.bias", db)
            if cache.rows is None:
                dx[:, 0] += dfirst
            else:  # forward: cls = x[first], the [CLS] rows among the output's rows
                dx[np.searchsorted(cache.rows, np.arange(B) * T)] += dfirst
        if cache.final_norm is not None:
            # forward: x = LayerNorm(x) after the last pre-LN layer
            backend.scope = "encoder.final_layer_norm backward"
            dx, dw, db = K.layernorm_backward(dx, cache.final_norm)
            self._acc(FINAL_NORM + ".weight", dw)
            self._acc(FINAL_NORM + ".bias", db)
        for i in reversed(range(c.num_hidden_layers)):
            dx = self._layer_backward(i, dx, cache.layers[i])
        # forward: x = dropout(LayerNorm(word + token_type + position))
        backend.scope = "embeddings backward"
        emb = cache.embeddings
        dx = K.dropout_backward(dx, emb.dropout)
        demb, dw, db = K.layernorm_backward(dx, emb.norm)  # (B, T, C)
        self._acc("embeddings.LayerNorm.weight", dw)
        self._acc("embeddings.LayerNorm.bias", db)
        self._acc("embeddings.word_embeddings.weight", K.embedding_backward(demb, emb.word, c.pad_token_id))
        self._acc("embeddings.token_type_embeddings.weight", K.embedding_backward(demb, emb.token_type))
        # the (1, T, C) position embeddings were broadcast over the batch: their gradient sums over it
        self._acc("embeddings.position_embeddings.weight",
                  K.embedding_backward(demb.sum(axis=0, keepdims=True), emb.position))


class BertWithHead(Module):
    """The one base of every "encoder + head" model (the pretraining model and the three fine-tuning
    heads): a ``BertModel`` child ``self.bert`` (parameters named ``bert.*``), its config and dtype, and
    the head's own parameters, drawn from a stream of their own (``head_stream``) so that the encoder's
    initialisation is the same as a bare ``BertModel``'s of the same seed."""

    add_pooling_layer = True
    head_stream = 3

    def __init__(self, config, seed=0, dtype=np.float32):
        super().__init__()
        check_config(config)
        self.config = config
        self.dtype = check_dtype(dtype)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, seed=seed, dtype=dtype, add_pooling_layer=self.add_pooling_layer)
        self.children = {"bert.": self.bert}
        self._init_rng = np.random.default_rng([seed, self.head_stream])
        self._cache = None

    @property
    def dropout_rng(self):
        """The generator every dropout mask of this model is drawn from (the encoder's; checkpointed)."""
        return self.bert.dropout_rng

    @dropout_rng.setter
    def dropout_rng(self, rng):
        self.bert.dropout_rng = rng

    def _classifier_dropout(self):
        """The dropout before a classification layer: ``classifier_dropout``, else ``hidden_dropout_prob``."""
        c = self.config
        return c.hidden_dropout_prob if c.classifier_dropout is None else c.classifier_dropout

    def __repr__(self):
        c = self.config
        return (f"{type(self).__name__}(L={c.num_hidden_layers}, C={c.hidden_size}, A={c.num_attention_heads}, "
                f"K={c.num_labels}, V={c.vocab_size}, params={self.num_parameters():,}, "
                f"dtype={self.dtype.name}, {'train' if self.training else 'eval'}{_experiments(c)})")

    # -- the losses, for gradient accumulation ---------------------------------------------------
    # ``out.loss = sum(weight * term)``, each term a mean over some count of predictions.  Splitting a
    # batch into micro-batches, micro-batch i must enter term k with upstream gradient
    # ``weight_k * count_ik / count_k`` for the sum of the micro-batch gradients to be the whole
    # batch's gradient (``minibert.training.loop.training_step``).
    loss_weights = {"loss": 1.0}

    def loss_counts(self, input_ids=None, labels=None, **_):
        """{term: how many predictions its mean runs over} for a batch (before running it)."""
        return {"loss": 0 if labels is None else int((np.asarray(labels) != IGNORE_INDEX).sum())}

    def loss_terms(self, out):
        """{term: its value} of an output."""
        return {"loss": out.loss}

    def _check_backward(self):
        if self._cache is None:
            raise ValueError("backward() called before forward(): run the model on a batch first")
        if not self._cache.has_loss:
            raise ValueError(f"backward() needs a loss: pass {self._label_names} to forward()")


class PreTrainingCache(NamedTuple):
    positions: Optional[np.ndarray]   # (P,) flat indices of the labelled positions (None without labels)
    picked: Optional[np.ndarray]      # (P,) the labelled positions' rows in the encoder's output, flattened
    transform_dense: tuple            # linear cache of the MLM transform
    transform_act: object             # activation cache
    transform_norm: tuple             # LayerNorm cache
    decoder: tuple                    # linear cache of the (tied) decoder, (P, C) -> (P, V)
    nsp: tuple                        # linear cache of the NSP classifier, (B, C) -> (B, 2)
    mlm_loss: Optional[tuple]         # cross-entropy cache (None without labels)
    nsp_loss: Optional[tuple]         # cross-entropy cache (None without next_sentence_label)
    hidden_shape: tuple               # of the encoder's output: (B, T, C), or (n, C) when it computed n rows

    @property
    def has_loss(self):
        return self.mlm_loss is not None or self.nsp_loss is not None


class BertForPreTraining(BertWithHead):
    """BERT with its two pretraining heads: masked LM (tied decoder) and next-sentence prediction.

    ``out = model(input_ids, token_type_ids, attention_mask, labels, next_sentence_label)``;
    ``labels`` (B, T) holds the original token at predicted positions and -100 elsewhere;
    ``next_sentence_label`` (B,) is 0 when B follows A, 1 when B is random.  ``out.loss`` is the MLM
    cross-entropy averaged over labelled positions plus the NSP cross-entropy averaged over the batch.
    With labels, the MLM head runs only on the labelled positions (the decoder, P x C x V, is the
    largest matmul of a step), so ``prediction_logits`` is then (P, V).

    With labels the last encoder layer, too, computes only the rows the heads read: the labelled positions
    and [CLS] (``rows_layer_forward``; the same numbers, 17% fewer FLOPs in a BERT-Tiny step).  Set
    ``last_layer_rows_only = False`` to run it on every row (the capstone does, so that its two runs are
    the same operations in the same order).
    """

    head_stream = 2
    last_layer_rows_only = True
    _label_names = "labels and/or next_sentence_label"
    loss_weights = {"mlm": 1.0, "nsp": 1.0}  # out.loss = mlm_loss + nsp_loss

    def loss_counts(self, input_ids=None, labels=None, next_sentence_label=None, **_):
        """{"mlm": labelled positions P, "nsp": sequences B} of a batch: what each loss averages over."""
        return {"mlm": 0 if labels is None else int((np.asarray(labels) != IGNORE_INDEX).sum()),
                "nsp": 0 if next_sentence_label is None else int(np.size(next_sentence_label))}

    def loss_terms(self, out):
        return {"mlm": out.mlm_loss, "nsp": out.nsp_loss}

    def __init__(self, config, seed=0, dtype=np.float32):
        super().__init__(config, seed=seed, dtype=dtype)
        C = config.hidden_size
        self._new_param("cls.predictions.bias", (config.vocab_size,), "zeros")
        self._new_param("cls.predictions.transform.dense.weight", (C, C), "normal")
        self._new_param("cls.predictions.transform.dense.bias", (C,), "zeros")
        self._new_param("cls.predictions.transform.LayerNorm.weight", (C,), "ones")
        self._new_param("cls.predictions.transform.LayerNorm.bias", (C,), "zeros")
        self._new_param("cls.seq_relationship.weight", (2, C), "normal")
        self._new_param("cls.seq_relationship.bias", (2,), "zeros")
        if not config.tie_word_embeddings:  # an own decoder matrix, starting equal to the embeddings
            self.params["cls.predictions.decoder.weight"] = self.bert.params["embeddings.word_embeddings.weight"].copy()
            self.grads["cls.predictions.decoder.weight"] = np.zeros_like(self.params["cls.predictions.decoder.weight"])

    def _decoder(self):
        """(module, name) holding the decoder matrix: the word embeddings when tied (BERT)."""
        if self.config.tie_word_embeddings:
            return self.bert, "embeddings.word_embeddings.weight"
        return self, "cls.predictions.decoder.weight"

    def _tied_aliases(self):
        aliases = {"cls.predictions.decoder.bias": "cls.predictions.bias"}
        if self.config.tie_word_embeddings:
            aliases["cls.predictions.decoder.weight"] = "bert.embeddings.word_embeddings.weight"
        return aliases

    def __repr__(self):
        c = self.config
        return (f"BertForPreTraining(L={c.num_hidden_layers}, C={c.hidden_size}, A={c.num_attention_heads}, "
                f"F={c.intermediate_size}, V={c.vocab_size}, params={self.num_parameters():,}, "
                f"dtype={self.dtype.name}, {'train' if self.training else 'eval'}{_experiments(c)})")

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                next_sentence_label=None, output_attentions=False):
        K, c, p = backend.ops, self.config, self.params
        ids, _, _ = self.bert.check_inputs(input_ids, token_type_ids, attention_mask)
        B, T = ids.shape
        if labels is not None:
            labels = as_int_array("labels", labels, ids.shape)
            bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= c.vocab_size))
            if bad.any():
                raise ValueError(f"labels must be -100 (not predicted) or a token id in [0, vocab_size="
                                 f"{c.vocab_size}), got {labels[bad][0]}")
        if next_sentence_label is not None:
            next_sentence_label = as_int_array("next_sentence_label", next_sentence_label, (B,))
            if not np.isin(next_sentence_label, (0, 1)).all():
                raise ValueError("next_sentence_label must be 0 (B follows A) or 1 (B is random), got "
                                 f"{sorted(set(next_sentence_label.tolist()))}")

        # MLM head: only at labelled positions when labels are given (gather first, as google-research/bert)
        positions = picked = rows = None
        if labels is not None:
            positions = picked = np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX)  # (P,)
            if self.last_layer_rows_only:  # the heads read these rows and [CLS]: the last layer computes only them
                rows = np.union1d(positions, np.arange(B) * T)  # (n,) sorted, distinct
                picked = np.searchsorted(rows, positions)  # where each position is among the rows
        out = self.bert.forward(ids, token_type_ids, attention_mask, output_attentions, rows=rows)
        x = out.last_hidden_state  # (B, T, C); (n, C) with rows
        C = x.shape[-1]
        h = x.reshape(-1, C) if positions is None else x.reshape(-1, C)[picked]  # (P, C)
        backend.scope = "pretraining heads forward"
        act_forward = getattr(K, ACTIVATIONS[c.hidden_act][0].__name__)  # the backend's gelu, gelu_tanh or relu
        h, c_td = K.linear_forward(h, p["cls.predictions.transform.dense.weight"],
                                   p["cls.predictions.transform.dense.bias"])
        h, c_ta = act_forward(h)
        h, c_tln = K.layernorm_forward(h, p["cls.predictions.transform.LayerNorm.weight"],
                                       p["cls.predictions.transform.LayerNorm.bias"], c.layer_norm_eps)
        owner, name = self._decoder()
        logits, c_dec = K.linear_forward(h, owner.params[name], p["cls.predictions.bias"])  # (P, V)
        nsp_logits, c_nsp = K.linear_forward(out.pooler_output, p["cls.seq_relationship.weight"],
                                             p["cls.seq_relationship.bias"])  # (B, 2)

        mlm_loss = nsp_loss = c_mlm = c_nspl = None
        if labels is not None:
            mlm_loss, c_mlm = K.cross_entropy_forward(logits, labels.reshape(-1)[positions])
        if next_sentence_label is not None:
            nsp_loss, c_nspl = K.cross_entropy_forward(nsp_logits, next_sentence_label)
        losses = [l for l in (mlm_loss, nsp_loss) if l is not None]
        loss = sum(losses) if losses else None
        self._cache = PreTrainingCache(positions, picked, c_td, c_ta, c_tln, c_dec, c_nsp, c_mlm, c_nspl, x.shape)
        if positions is None:
            logits = logits.reshape(B, T, c.vocab_size)
        return BertForPreTrainingOutput(loss, logits, nsp_logits, mlm_loss, nsp_loss, positions,
                                        x if rows is None else None, out.attentions)

    def backward(self, dmlm=1.0, dnsp=1.0):
        """*Add* d(out.loss)/d(every parameter) of the last forward into ``grads`` (``zero_grad()``
        clears them).  The tied word embedding gets both of its paths: the decoder's and the input's.
        ``dmlm``, ``dnsp``: the upstream gradients of the two losses (1 for ``out.loss`` itself)."""
        self._check_backward()
        cache, K, c = self._cache, backend.ops, self.config
        B, C = self.bert._cache.batch_shape[0], cache.hidden_shape[-1]
        backend.scope = "pretraining heads backward"
        dx = np.zeros((math.prod(cache.hidden_shape[:-1]), C), dtype=self.dtype)  # d loss / d the output's rows
        dpooled = np.zeros((B, C), dtype=self.dtype)
        if cache.mlm_loss is not None:
            dlogits = K.cross_entropy_backward(dmlm, cache.mlm_loss)  # (P, V)
            # forward: logits = h @ word.T + bias  -- word is the tied embedding: accumulate
            dh, dword, dbias = K.linear_backward(dlogits, cache.decoder)
            owner, name = self._decoder()
            owner._acc(name, dword)
            self._acc("cls.predictions.bias", dbias)
            dh, dw, db = K.layernorm_backward(dh, cache.transform_norm)
            self._acc("cls.predictions.transform.LayerNorm.weight", dw)
            self._acc("cls.predictions.transform.LayerNorm.bias", db)
            act_backward = getattr(K, ACTIVATIONS[c.hidden_act][1].__name__)
            dh = act_backward(dh, cache.transform_act)
            dh, dw, db = K.linear_backward(dh, cache.transform_dense)
            self._acc("cls.predictions.transform.dense.weight", dw)
            self._acc("cls.predictions.transform.dense.bias", db)
            dx[cache.picked] = dh  # forward: h = x[picked] (distinct rows)
        if cache.nsp_loss is not None:
            dnsp_logits = K.cross_entropy_backward(dnsp, cache.nsp_loss)  # (B, 2)
            dpooled, dw, db = K.linear_backward(dnsp_logits, cache.nsp)
            self._acc("cls.seq_relationship.weight", dw)
            self._acc("cls.seq_relationship.bias", db)
        self.bert.backward(dx.reshape(cache.hidden_shape), dpooled)
