"""Fine-tuning heads: the pretrained encoder stays, only the output layer is new.

Pretraining ends with two heads (masked LM, next sentence).  To carry BERT to another task we throw
them away and put a small, freshly initialised layer on top of the encoder, as transformers does:

    BertForSequenceClassification   pooled = tanh(x[:, 0] Wp^T + bp)   (the pretrained pooler)
                                    logits = dropout(pooled) Wc^T + bc                    (B, K)
                                    loss   = mean CE(logits, labels)  (K = 1: mean squared error)
    BertForTokenClassification      logits = dropout(x) Wc^T + bc                      (B, T, K)
                                    loss   = mean CE over positions whose label is not -100
    BertForQuestionAnswering        start, end = x Wq^T + bq split in two        (B, T) and (B, T)
                                    loss   = (CE(start, start_positions) + CE(end, end_positions)) / 2

Each head holds a ``BertModel`` as ``self.bert`` (its parameters are named ``bert.*``) and adds one
linear layer, ``classifier.*`` or ``qa_outputs.*``: the names, shapes and losses of transformers'
classes of the same name, so a transformers checkpoint loads into them and theirs into ours.  Only the
output layer differs between the three: the backward of each is "linear backward, then hand the
gradient of the encoder's output to ``BertModel.backward``".

Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``K`` labels (``config.num_labels``).
"""
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from .. import backend
from ..layers.cross_entropy import IGNORE_INDEX
from .bert import BertWithHead
from .module import as_int_array, check_config, shape_of


@dataclass
class SequenceClassifierOutput:
    loss: Optional[float]                     # mean cross-entropy (or mean squared error when K = 1)
    logits: np.ndarray                        # (B, K)
    last_hidden_state: Optional[np.ndarray] = None  # (B, T, C)
    attentions: Optional[list] = None         # L x (B, A, T, T) when output_attentions=True

    def __repr__(self):
        return f"SequenceClassifierOutput(loss={_fmt(self.loss)}, logits={shape_of(self.logits)})"


@dataclass
class TokenClassifierOutput:
    loss: Optional[float]                     # mean cross-entropy over labelled positions
    logits: np.ndarray                        # (B, T, K)
    last_hidden_state: Optional[np.ndarray] = None
    attentions: Optional[list] = None

    def __repr__(self):
        return f"TokenClassifierOutput(loss={_fmt(self.loss)}, logits={shape_of(self.logits)})"


@dataclass
class QuestionAnsweringModelOutput:
    loss: Optional[float]                     # (start loss + end loss) / 2
    start_logits: np.ndarray                  # (B, T)
    end_logits: np.ndarray                    # (B, T)
    last_hidden_state: Optional[np.ndarray] = None
    attentions: Optional[list] = None
    start_loss: Optional[float] = None        # the two terms of ``loss``
    end_loss: Optional[float] = None

    def __repr__(self):
        return (f"QuestionAnsweringModelOutput(loss={_fmt(self.loss)}, start_logits={shape_of(self.start_logits)}, "
                f"end_logits={shape_of(self.end_logits)})")


def _fmt(loss):
    return "None" if loss is None else f"{float(loss):.4f}"


class HeadCache(NamedTuple):
    """What a head's backward needs: the caches of its dropout, its linear layer and its loss."""
    dropout: object              # dropout cache before the linear layer (None: no dropout)
    linear: tuple                # linear cache of ``classifier`` / ``qa_outputs``
    logits_shape: tuple          # (B, K), (B, T, K) or (B, T, 2)
    loss_kind: Optional[str]     # "ce", "mse" or "qa"; None when forward got no labels
    loss: object                 # the loss cache(s): one cross-entropy / mse cache, or (start, end)

    @property
    def has_loss(self):
        return self.loss_kind is not None


def _check_class_labels(name, labels, shape, num_labels):
    """int labels of ``shape`` in [0, num_labels) or -100 (ignored), as an int64 array."""
    labels = as_int_array(name, labels, shape)
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_labels))
    if bad.any():
        raise ValueError(f"{name} must be a class in [0, num_labels={num_labels}) or -100 (ignored), "
                         f"got {labels[bad][0]}")
    return labels


class BertForSequenceClassification(BertWithHead):
    """One label per sequence, read from the pooled ``[CLS]`` vector.

    ``out = model(input_ids, token_type_ids, attention_mask, labels)``: ``labels`` (B,) ints in
    [0, K) (-100: not counted); with ``num_labels = 1`` the task is regression and ``labels`` (B,)
    are floats, the loss the mean squared error (as transformers decides for ``problem_type=None``).
    """

    add_pooling_layer = True
    _label_names = "labels"

    def loss_counts(self, input_ids=None, labels=None, **_):
        if labels is not None and self.num_labels == 1:  # regression: the mean runs over every sequence
            return {"loss": int(np.size(labels))}
        return super().loss_counts(input_ids, labels)

    def __init__(self, config, seed=0, dtype=np.float32):
        super().__init__(config, seed=seed, dtype=dtype)
        self._new_param("classifier.weight", (config.num_labels, config.hidden_size), "normal")
        self._new_param("classifier.bias", (config.num_labels,), "zeros")

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, output_attentions=False):
        K, p = backend.ops, self.params
        ids, _, _ = self.bert.check_inputs(input_ids, token_type_ids, attention_mask)
        B = ids.shape[0]
        if labels is not None:
            if self.num_labels == 1:
                labels = np.asarray(labels, dtype=self.dtype).reshape(-1)
                if labels.shape != (B,):
                    raise ValueError(f"labels must have shape ({B},) (one number per sequence), got "
                                     f"{np.shape(labels)}")
            else:
                labels = _check_class_labels("labels", labels, (B,), self.num_labels)
        out = self.bert.forward(ids, token_type_ids, attention_mask, output_attentions)
        pooled, c_drop = K.dropout_forward(out.pooler_output, self._classifier_dropout(),
                                           rng=self.bert.dropout_rng, training=self.training)  # (B, C)
        logits, c_cls = K.linear_forward(pooled, p["classifier.weight"], p["classifier.bias"])  # (B, K)
        loss = c_loss = kind = None
        if labels is not None and self.num_labels == 1:
            loss, c_loss = K.mse_forward(logits[:, 0], labels)  # regression: (B,) predictions
            kind = "mse"
        elif labels is not None:
            loss, c_loss = K.cross_entropy_forward(logits, labels)
            kind = "ce"
        self._cache = HeadCache(c_drop, c_cls, logits.shape, kind, c_loss)
        return SequenceClassifierOutput(loss, logits, out.last_hidden_state, out.attentions)

    def backward(self, dloss=1.0):
        """*Add* d(out.loss)/d(every parameter) of the last forward, times ``dloss``, into ``grads``
        (``zero_grad()`` clears them)."""
        self._check_backward()
        K, cache = backend.ops, self._cache
        if cache.loss_kind == "ce":
            dlogits = K.cross_entropy_backward(dloss, cache.loss)  # (B, K)
        else:
            # forward: loss = mse(logits[:, 0], labels)
            dlogits = K.mse_backward(dloss, cache.loss)[:, None]  # (B, 1)
        # forward: logits = pooled @ Wc.T + bc
        dpooled, dw, db = K.linear_backward(dlogits, cache.linear)
        self._acc("classifier.weight", dw)
        self._acc("classifier.bias", db)
        # forward: pooled = dropout(pooler_output)
        dpooled = K.dropout_backward(dpooled, cache.dropout)
        self.bert.backward(None, dpooled)


class BertForTokenClassification(BertWithHead):
    """One label per token (tagging: named entities, parts of speech), read from each position.

    ``labels`` (B, T) ints in [0, K), -100 where there is nothing to predict (padding, ``[CLS]``,
    ``[SEP]``, word-piece continuations): those positions count neither in the loss nor in its mean.
    The encoder has no pooler here (transformers builds it with ``add_pooling_layer=False``).
    """

    add_pooling_layer = False
    _label_names = "labels"

    def __init__(self, config, seed=0, dtype=np.float32):
        super().__init__(config, seed=seed, dtype=dtype)
        self._new_param("classifier.weight", (config.num_labels, config.hidden_size), "normal")
        self._new_param("classifier.bias", (config.num_labels,), "zeros")

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, output_attentions=False):
        K, p = backend.ops, self.params
        ids, _, _ = self.bert.check_inputs(input_ids, token_type_ids, attention_mask)
        if labels is not None:
            labels = _check_class_labels("labels", labels, ids.shape, self.num_labels)
        out = self.bert.forward(ids, token_type_ids, attention_mask, output_attentions)
        x, c_drop = K.dropout_forward(out.last_hidden_state, self._classifier_dropout(),
                                      rng=self.bert.dropout_rng, training=self.training)  # (B, T, C)
        logits, c_cls = K.linear_forward(x, p["classifier.weight"], p["classifier.bias"])  # (B, T, K)
        loss = c_loss = None
        if labels is not None:
            loss, c_loss = K.cross_entropy_forward(logits.reshape(-1, self.num_labels), labels.reshape(-1))
        self._cache = HeadCache(c_drop, c_cls, logits.shape, None if c_loss is None else "ce", c_loss)
        return TokenClassifierOutput(loss, logits, out.last_hidden_state, out.attentions)

    def backward(self, dloss=1.0):
        """*Add* d(out.loss)/d(every parameter) of the last forward, times ``dloss``, into ``grads``
        (``zero_grad()`` clears them)."""
        self._check_backward()
        K, cache = backend.ops, self._cache
        # forward: loss = CE(logits.reshape(B * T, K), labels.reshape(B * T))
        dlogits = K.cross_entropy_backward(dloss, cache.loss).reshape(cache.logits_shape)  # (B, T, K)
        # forward: logits = x @ Wc.T + bc
        dx, dw, db = K.linear_backward(dlogits, cache.linear)  # (B, T, C)
        self._acc("classifier.weight", dw)
        self._acc("classifier.bias", db)
        # forward: x = dropout(last_hidden_state)
        self.bert.backward(K.dropout_backward(dx, cache.dropout), None)


class BertForQuestionAnswering(BertWithHead):
    """Span extraction (SQuAD): which token starts the answer, which ends it.

    One linear layer maps each position to two numbers, a start score and an end score; a softmax
    over the T positions of each row turns them into "where does the answer start / end".
    ``start_positions``, ``end_positions`` (B,) are token indices.  As transformers does, positions
    outside the sequence are clamped to T, and T is the ignore index: such an answer (truncated away)
    counts in neither loss.  The loss is the mean of the start and the end cross-entropies.
    No dropout before ``qa_outputs`` (transformers has none there either).
    """

    add_pooling_layer = False
    _label_names = "start_positions and end_positions"
    loss_weights = {"start": 0.5, "end": 0.5}  # out.loss = (start_loss + end_loss) / 2

    def loss_counts(self, input_ids=None, start_positions=None, end_positions=None, **_):
        """{"start", "end"}: the answers inside the sequence (a position clamped to T is ignored)."""
        if start_positions is None:
            return {"start": 0, "end": 0}
        T = np.shape(input_ids)[1]
        return {"start": int((np.clip(np.reshape(start_positions, -1), 0, T) != T).sum()),
                "end": int((np.clip(np.reshape(end_positions, -1), 0, T) != T).sum())}

    def loss_terms(self, out):
        return {"start": out.start_loss, "end": out.end_loss}

    def __init__(self, config, seed=0, dtype=np.float32):
        check_config(config)
        if config.num_labels != 2:
            raise ValueError(f"BertForQuestionAnswering needs config.num_labels == 2 (a start and an end "
                             f"score per token), got {config.num_labels}")
        super().__init__(config, seed=seed, dtype=dtype)
        self._new_param("qa_outputs.weight", (config.num_labels, config.hidden_size), "normal")
        self._new_param("qa_outputs.bias", (config.num_labels,), "zeros")

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, start_positions=None,
                end_positions=None, output_attentions=False):
        K, p = backend.ops, self.params
        ids, _, _ = self.bert.check_inputs(input_ids, token_type_ids, attention_mask)
        B, T = ids.shape
        if (start_positions is None) != (end_positions is None):
            raise ValueError("pass both start_positions and end_positions (or neither)")
        if start_positions is not None:
            # transformers squeezes a trailing axis of size 1, then clamps into [0, T]
            start_positions = np.clip(as_int_array("start_positions", np.reshape(start_positions, -1), (B,)), 0, T)
            end_positions = np.clip(as_int_array("end_positions", np.reshape(end_positions, -1), (B,)), 0, T)
        out = self.bert.forward(ids, token_type_ids, attention_mask, output_attentions)
        logits, c_qa = K.linear_forward(out.last_hidden_state, p["qa_outputs.weight"], p["qa_outputs.bias"])  # (B, T, 2)
        start_logits = np.ascontiguousarray(logits[..., 0])  # (B, T)
        end_logits = np.ascontiguousarray(logits[..., 1])  # (B, T)
        loss = c_loss = start_loss = end_loss = None
        if start_positions is not None:
            ignored_index = T  # a position clamped to T was outside the sequence
            start_loss, c_start = K.cross_entropy_forward(start_logits, start_positions, ignore_index=ignored_index)
            end_loss, c_end = K.cross_entropy_forward(end_logits, end_positions, ignore_index=ignored_index)
            loss, c_loss = (start_loss + end_loss) / 2, (c_start, c_end)
        self._cache = HeadCache(None, c_qa, logits.shape, None if c_loss is None else "qa", c_loss)
        return QuestionAnsweringModelOutput(loss, start_logits, end_logits, out.last_hidden_state, out.attentions,
                                            start_loss, end_loss)

    def backward(self, dstart=0.5, dend=0.5):
        """*Add* d(out.loss)/d(every parameter) of the last forward into ``grads`` (``zero_grad()``
        clears them).  ``dstart``, ``dend``: the upstream gradients of the two cross-entropies
        (``out.loss`` is their mean, so 1/2 each)."""
        self._check_backward()
        K, cache = backend.ops, self._cache
        c_start, c_end = cache.loss
        # forward: loss = (start_loss + end_loss) / 2, so each cross-entropy gets an upstream 1/2
        dstart_logits = K.cross_entropy_backward(dstart, c_start)  # (B, T)
        dend_logits = K.cross_entropy_backward(dend, c_end)  # (B, T)
        dlogits = np.stack([dstart_logits, dend_logits], axis=-1)  # (B, T, 2): inverts logits[..., 0], logits[..., 1]
        # forward: logits = x @ Wq.T + bq
        dx, dw, db = K.linear_backward(dlogits, cache.linear)  # (B, T, C)
        self._acc("qa_outputs.weight", dw)
        self._acc("qa_outputs.bias", db)
        self.bert.backward(dx, None)
