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
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from .. import backend
from ..layers.cross_entropy import IGNORE_INDEX
from ..layers.encoder_layer import PARAMETERS as LAYER_PARAMETERS
from ..layers.encoder_layer import encoder_layer_backward, encoder_layer_forward
from ..layers.gelu import ACTIVATIONS
from ..layers.pre_ln_encoder_layer import pre_ln_encoder_layer_backward, pre_ln_encoder_layer_forward
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
    """What transformers' ``BertForPreTraining`` returns (``loss``, ``prediction_logits``,
    ``seq_relationship_logits``, ``attentions``), with the encoder's ``last_hidden_state`` and the two
    losses apart."""
    loss: Optional[float]                  # mlm_loss + nsp_loss (those that were asked for)
    prediction_logits: np.ndarray          # (B, T, V)
    seq_relationship_logits: np.ndarray    # (B, 2)
    mlm_loss: Optional[float] = None       # the mean cross-entropy over the labelled positions
    nsp_loss: Optional[float] = None       # the mean cross-entropy over the batch
    last_hidden_state: Optional[np.ndarray] = None  # (B, T, C)
    attentions: Optional[list] = None      # L x (B, A, T, T) when output_attentions=True

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


class PoolerCache(NamedTuple):
    dense: tuple         # linear cache of pooled = tanh([CLS] Wp^T + bp)
    tanh: object         # tanh cache


class BertModelCache(NamedTuple):
    embeddings: EmbeddingsCache
    layers: list              # L x EncoderLayerCache
    pooler: Optional[PoolerCache]   # None without a pooler
    batch_shape: tuple        # (B, T)
    final_norm: Optional[tuple] = None  # LayerNorm cache of the pre-LN stack's last LN (None: post-LN, BERT)


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
    def forward(self, input_ids, token_type_ids=None, attention_mask=None, output_attentions=False):
        """(B, T) ids [, (B, T) segment ids, (B, T) 1/0 mask] -> BertModelOutput: ``last_hidden_state``
        (B, T, C), ``pooler_output`` (B, C) (None without a pooler), and with ``output_attentions`` every
        layer's attention probabilities, L x (B, A, T, T)."""
        ids, tt, mask = self.check_inputs(input_ids, token_type_ids, attention_mask)
        K, c, p = backend.ops, self.config, self.params
        x, c_embeddings = self.embeddings_forward(ids, tt)  # (B, T, C)
        # (B, 1, 1, T); with is_decoder, (B, 1, T, T): query i sees keys j <= i only (not BERT: lesson 07c)
        mask_add = attention_mask_to_additive(mask, self.dtype, causal=c.is_decoder)
        layer_caches = []
        for i in range(c.num_hidden_layers):
            x, cache = self.layer_forward(i, x, mask_add)  # (B, T, C)
            layer_caches.append(cache)
        c_final = None
        if c.layer_norm_position == "pre":  # not BERT: normalise the residual stream once, at the top
            backend.scope = "encoder.final_layer_norm forward"
            x, c_final = K.layernorm_forward(x, p[FINAL_NORM + ".weight"], p[FINAL_NORM + ".bias"],
                                             c.layer_norm_eps)  # (B, T, C)
        pooled = c_pooler = None
        if self.add_pooling_layer:
            pooled, c_pooler = self.pooler_forward(x[:, 0])  # (B, C): the [CLS] position
        self._cache = BertModelCache(c_embeddings, layer_caches, c_pooler, ids.shape, c_final)
        attentions = [lc.attention.sdpa.probs for lc in layer_caches] if output_attentions else None
        return BertModelOutput(x, pooled, attentions)

    def embeddings_forward(self, ids, tt):
        """x = dropout(LayerNorm(word[ids] + token_type[tt] + position[0..T))).
        (B, T) int ids, (B, T) int segment ids (already checked) -> x (B, T, C), ``EmbeddingsCache``."""
        K, c, p = backend.ops, self.config, self.params
        T, eps = ids.shape[1], c.layer_norm_eps
        backend.scope = "embeddings forward"
        positions = np.arange(T)[None]  # (1, T): every row has positions 0..T-1
        we, c_word = K.embedding_forward(ids, p["embeddings.word_embeddings.weight"])  # (B, T, C)
        te, c_type = K.embedding_forward(tt, p["embeddings.token_type_embeddings.weight"])  # (B, T, C)
        pe, c_pos = K.embedding_forward(positions, p["embeddings.position_embeddings.weight"])  # (1, T, C)
        x, c_norm = K.layernorm_forward(we + te + pe, p["embeddings.LayerNorm.weight"],
                                        p["embeddings.LayerNorm.bias"], eps)  # (B, T, C)
        x, c_drop = K.dropout_forward(x, c.hidden_dropout_prob, rng=self.dropout_rng, training=self.training)
        return x, EmbeddingsCache(c_word, c_type, c_pos, c_norm, c_drop)

    def embeddings_backward(self, dx, cache):
        """*Adds* the gradients of the three tables and the LayerNorm, given dx (B, T, C)."""
        K, c = backend.ops, self.config
        backend.scope = "embeddings backward"
        # forward: x = dropout(LayerNorm(word + token_type + position))
        dx = K.dropout_backward(dx, cache.dropout)
        demb, dw, db = K.layernorm_backward(dx, cache.norm)  # (B, T, C)
        self._acc("embeddings.LayerNorm.weight", dw)
        self._acc("embeddings.LayerNorm.bias", db)
        self._acc("embeddings.word_embeddings.weight", K.embedding_backward(demb, cache.word, c.pad_token_id))
        self._acc("embeddings.token_type_embeddings.weight", K.embedding_backward(demb, cache.token_type))
        # the (1, T, C) position embeddings were broadcast over the batch: their gradient sums over it
        self._acc("embeddings.position_embeddings.weight",
                  K.embedding_backward(demb.sum(axis=0, keepdims=True), cache.position))

    def layer_function(self, i, mask_add=None):
        """The encoder layer ``i`` runs and its arguments: ``(forward, backward), args, kwargs`` such that
        ``forward(x, *args, **kwargs)`` is the layer (``mask_add``: the additive mask it gets).  ``backend.ops.encoder_layer_forward`` when the
        backend is a module that defines one (``set_backend(module)``: the capstone), else
        ``minibert/layers/encoder_layer.py``'s (pre-LN: ``pre_ln_encoder_layer.py``'s), either way on the
        backend's kernels (``ops=backend.ops``)."""
        K, c, p = backend.ops, self.config, self.params
        pre = f"encoder.layer.{i}."
        # pre-LN (not BERT) always runs layers/pre_ln_encoder_layer.py's pair, on the backend's kernels; a
        # set_backend(module)'s own encoder_layer_forward is the post-LN capstone, so it is not used then
        if c.layer_norm_position == "pre":
            pair = (pre_ln_encoder_layer_forward, pre_ln_encoder_layer_backward)
        else:
            pair = (getattr(K, "encoder_layer_forward", encoder_layer_forward),
                    getattr(K, "encoder_layer_backward", encoder_layer_backward))
        args = (*(p[pre + name] for name in LAYER_PARAMETERS.values()), mask_add, c.num_attention_heads,
                c.hidden_act, c.layer_norm_eps, c.hidden_dropout_prob, c.attention_probs_dropout_prob)
        return pair, args, dict(rng=self.dropout_rng, training=self.training, ops=K)

    def layer_forward(self, i, x, mask_add):
        """Encoder layer ``i``: (B, T, C), the additive mask -> (B, T, C), ``EncoderLayerCache``."""
        backend.scope = f"encoder.layer.{i} forward"
        (forward, _), args, kwargs = self.layer_function(i, mask_add)
        return forward(x, *args, **kwargs)

    def layer_backward(self, i, dout, cache):
        """The backward of encoder layer ``i``: *adds* its parameter gradients into ``grads`` and returns
        the gradient of its input, (B, T, C)."""
        backend.scope = f"encoder.layer.{i} backward"
        (_, backward), _, _ = self.layer_function(i)
        dx, *dparams = backward(dout, cache)
        self.add_layer_grads(i, dparams)
        return dx

    def add_layer_grads(self, i, dparams):
        """*Add* the 16 gradients of encoder layer ``i``, in ``encoder_layer_backward``'s order."""
        for name, g in zip(LAYER_PARAMETERS.values(), dparams):
            self._acc(f"encoder.layer.{i}." + name, g)

    def pooler_forward(self, cls):
        """pooled = tanh(cls Wp^T + bp): (B, C) the [CLS] rows -> (B, C), ``PoolerCache``."""
        K, p = backend.ops, self.params
        backend.scope = "pooler forward"
        h, c_dense = K.linear_forward(cls, p["pooler.dense.weight"], p["pooler.dense.bias"])  # (B, C)
        pooled, c_tanh = K.tanh_forward(h)
        return pooled, PoolerCache(c_dense, c_tanh)

    def pooler_backward(self, dpooled, cache):
        """*Adds* the pooler's gradients; (B, C) -> d[CLS] rows (B, C)."""
        K = backend.ops
        backend.scope = "pooler backward"
        # forward: pooled = tanh(cls @ Wp.T + bp)
        dh = K.tanh_backward(dpooled, cache.tanh)
        dcls, dw, db = K.linear_backward(dh, cache.dense)
        self._acc("pooler.dense.weight", dw)
        self._acc("pooler.dense.bias", db)
        return dcls

    def backward(self, d_last_hidden_state=None, d_pooler_output=None):
        """*Add* d(loss)/d(params) into ``grads``, given the upstream gradients of the outputs,
        (B, T, C) and/or (B, C).  Gradients accumulate: ``zero_grad()`` clears them."""
        if self._cache is None:
            raise ValueError("backward() called before forward(): run the model on a batch first")
        K, c = backend.ops, self.config
        cache = self._cache
        shape = (*cache.batch_shape, c.hidden_size)
        if d_last_hidden_state is None:
            dx = np.zeros(shape, dtype=self.dtype)
        else:
            dx = np.array(d_last_hidden_state, dtype=self.dtype)  # a copy: we add into it
            if dx.shape != shape:
                raise ValueError(f"d_last_hidden_state must have shape {shape}, got {dx.shape}")
        if d_pooler_output is not None:
            if cache.pooler is None:
                raise ValueError("d_pooler_output given, but this BertModel has no pooler")
            # forward: pooled = pooler(x[:, 0])
            dx[:, 0] += self.pooler_backward(np.asarray(d_pooler_output, dtype=self.dtype), cache.pooler)
        if cache.final_norm is not None:
            # forward: x = LayerNorm(x) after the last pre-LN layer
            backend.scope = "encoder.final_layer_norm backward"
            dx, dw, db = K.layernorm_backward(dx, cache.final_norm)
            self._acc(FINAL_NORM + ".weight", dw)
            self._acc(FINAL_NORM + ".bias", db)
        for i in reversed(range(c.num_hidden_layers)):
            dx = self.layer_backward(i, dx, cache.layers[i])
        self.embeddings_backward(dx, cache.embeddings)


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


class MLMHeadCache(NamedTuple):
    transform_dense: tuple            # linear cache of the MLM transform
    transform_act: object             # activation cache
    transform_norm: tuple             # LayerNorm cache
    decoder: tuple                    # linear cache of the (tied) decoder, (..., C) -> (..., V)


class PreTrainingCache(NamedTuple):
    mlm_head: MLMHeadCache            # over every position, (B*T, C) -> (B*T, V)
    nsp: tuple                        # linear cache of the NSP classifier, (B, C) -> (B, 2)
    mlm_loss: Optional[tuple]         # cross-entropy cache (None without labels)
    nsp_loss: Optional[tuple]         # cross-entropy cache (None without next_sentence_label)
    hidden_shape: tuple               # (B, T, C)

    @property
    def has_loss(self):
        return self.mlm_loss is not None or self.nsp_loss is not None


class BertForPreTraining(BertWithHead):
    """BERT with its two pretraining heads: masked LM (tied decoder) and next-sentence prediction.

    ``out = model(input_ids, token_type_ids, attention_mask, labels, next_sentence_label)``;
    ``labels`` (B, T) holds the original token at predicted positions and -100 elsewhere;
    ``next_sentence_label`` (B,) is 0 when B follows A, 1 when B is random.  ``out.loss`` is the MLM
    cross-entropy averaged over labelled positions plus the NSP cross-entropy averaged over the batch.
    As in transformers, the MLM head runs on every position: ``prediction_logits`` (B, T, V),
    ``last_hidden_state`` (B, T, C), with or without labels.

    Training only needs the loss, and the heads read only the labelled positions and [CLS]: the
    pretraining job computes just those rows (``minibert.kernels.heads_rows``, the loss-only fast path,
    tested equal to this model's loss and gradients).  This class computes everything.
    """

    head_stream = 2
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

    def check_labels(self, labels, next_sentence_label, shape):
        """Validate the pretraining labels of a (B, T) batch; -> int64 ``labels`` (B, T) and
        ``next_sentence_label`` (B,) (either may be None).  Raises a clear error."""
        if labels is not None:
            labels = as_int_array("labels", labels, shape)
            bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.config.vocab_size))
            if bad.any():
                raise ValueError(f"labels must be -100 (not predicted) or a token id in [0, vocab_size="
                                 f"{self.config.vocab_size}), got {labels[bad][0]}")
        if next_sentence_label is not None:
            next_sentence_label = as_int_array("next_sentence_label", next_sentence_label, shape[:1])
            if not np.isin(next_sentence_label, (0, 1)).all():
                raise ValueError("next_sentence_label must be 0 (B follows A) or 1 (B is random), got "
                                 f"{sorted(set(next_sentence_label.tolist()))}")
        return labels, next_sentence_label

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                next_sentence_label=None, output_attentions=False):
        """-> ``BertForPreTrainingOutput``: ``prediction_logits`` (B, T, V), ``seq_relationship_logits``
        (B, 2), the losses of the labels given, ``last_hidden_state`` (B, T, C)."""
        K = backend.ops
        ids, _, _ = self.bert.check_inputs(input_ids, token_type_ids, attention_mask)
        B, T = ids.shape
        labels, next_sentence_label = self.check_labels(labels, next_sentence_label, ids.shape)
        out = self.bert.forward(ids, token_type_ids, attention_mask, output_attentions)
        x = out.last_hidden_state  # (B, T, C)
        logits, c_mlm_head = self.mlm_head_forward(x.reshape(B * T, -1))  # (B*T, V)
        nsp_logits, c_nsp = self.nsp_head_forward(out.pooler_output)  # (B, 2)
        mlm_loss = nsp_loss = c_mlm = c_nspl = None
        if labels is not None:  # the mean over the labelled positions: -100 rows count for nothing
            mlm_loss, c_mlm = K.cross_entropy_forward(logits, labels.reshape(-1))
        if next_sentence_label is not None:
            nsp_loss, c_nspl = K.cross_entropy_forward(nsp_logits, next_sentence_label)
        losses = [l for l in (mlm_loss, nsp_loss) if l is not None]
        loss = sum(losses) if losses else None
        self._cache = PreTrainingCache(c_mlm_head, c_nsp, c_mlm, c_nspl, x.shape)
        return BertForPreTrainingOutput(loss, logits.reshape(B, T, -1), nsp_logits, mlm_loss, nsp_loss, x,
                                        out.attentions)

    def mlm_head_forward(self, h):
        """logits = LayerNorm(act(h Wt^T + bt)) E^T + b: (N, C) hidden rows -> (N, V), ``MLMHeadCache``.
        ``E`` is the word embedding matrix (tied)."""
        K, c, p = backend.ops, self.config, self.params
        backend.scope = "pretraining heads forward"
        act_forward = getattr(K, ACTIVATIONS[c.hidden_act][0].__name__)  # the backend's gelu, gelu_tanh or relu
        h, c_dense = K.linear_forward(h, p["cls.predictions.transform.dense.weight"],
                                      p["cls.predictions.transform.dense.bias"])  # (N, C)
        h, c_act = act_forward(h)
        h, c_norm = K.layernorm_forward(h, p["cls.predictions.transform.LayerNorm.weight"],
                                        p["cls.predictions.transform.LayerNorm.bias"], c.layer_norm_eps)
        owner, name = self._decoder()
        logits, c_decoder = K.linear_forward(h, owner.params[name], p["cls.predictions.bias"])  # (N, V)
        return logits, MLMHeadCache(c_dense, c_act, c_norm, c_decoder)

    def mlm_head_backward(self, dlogits, cache):
        """*Adds* the MLM head's gradients (the tied decoder's into the word embeddings); (N, V) -> dh (N, C)."""
        K, c = backend.ops, self.config
        backend.scope = "pretraining heads backward"
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
        return dh

    def nsp_head_forward(self, pooled):
        """nsp = pooled Wn^T + bn: (B, C) -> (B, 2), its linear cache."""
        p = self.params
        return backend.ops.linear_forward(pooled, p["cls.seq_relationship.weight"], p["cls.seq_relationship.bias"])

    def nsp_head_backward(self, dnsp_logits, cache):
        """*Adds* the NSP classifier's gradients; (B, 2) -> dpooled (B, C)."""
        dpooled, dw, db = backend.ops.linear_backward(dnsp_logits, cache)
        self._acc("cls.seq_relationship.weight", dw)
        self._acc("cls.seq_relationship.bias", db)
        return dpooled

    def backward(self, dmlm=1.0, dnsp=1.0):
        """*Add* d(out.loss)/d(every parameter) of the last forward into ``grads`` (``zero_grad()``
        clears them).  The tied word embedding gets both of its paths: the decoder's and the input's.
        ``dmlm``, ``dnsp``: the upstream gradients of the two losses (1 for ``out.loss`` itself)."""
        self._check_backward()
        cache, K = self._cache, backend.ops
        B, T, C = cache.hidden_shape
        dx = np.zeros((B * T, C), dtype=self.dtype)  # d loss / d last_hidden_state
        dpooled = np.zeros((B, C), dtype=self.dtype)
        if cache.mlm_loss is not None:
            # forward: mlm_loss = cross_entropy(logits, labels): the unlabelled rows' gradient is 0
            dlogits = K.cross_entropy_backward(dmlm, cache.mlm_loss)  # (B*T, V)
            dx += self.mlm_head_backward(dlogits, cache.mlm_head)
        if cache.nsp_loss is not None:
            dpooled = self.nsp_head_backward(K.cross_entropy_backward(dnsp, cache.nsp_loss), cache.nsp)
        self.bert.backward(dx.reshape(B, T, C), dpooled)
