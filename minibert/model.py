"""BERT assembled from the layers, exactly as google-research/bert and transformers define it.

    embeddings  x = LayerNorm(word[ids] + token_type[segs] + position[0..T)) -> dropout
    L x layer   x = LayerNorm(x + dropout(Attention(x)))          (post-LN, as in the paper)
                x = LayerNorm(x + dropout(FFN(x)))
    pooler      pooled = tanh(x[:, 0] Wp^T + bp)                  (the [CLS] position)
    MLM head    logits = LayerNorm(act(h Wt^T + bt)) E^T + b      (E: the word embeddings, tied)
    NSP head    nsp = pooled Wn^T + bn                            (2-way: is B the next sentence?)

A model is a thin object over a ``params`` dict and a ``grads`` dict with identical keys (the
transformers parameter names); ``forward`` runs the layer functions and keeps their caches,
``backward`` runs the backward functions in reverse and *accumulates* into ``grads``.
Kernels are looked up in ``minibert.backend.ops`` (NumPy references or numba twins).

Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``A`` heads, ``F`` intermediate, ``V`` vocab,
``P`` number of predicted (labelled) positions.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import backend
from .config import BertConfig
from .layers.softmax import attention_mask_to_additive

IGNORE_INDEX = -100


@dataclass
class BertModelOutput:
    last_hidden_state: np.ndarray          # (B, T, C)
    pooler_output: Optional[np.ndarray]    # (B, C)
    attentions: Optional[list] = None      # L x (B, A, T, T) when output_attentions=True

    def __repr__(self):
        return f"BertModelOutput(last_hidden_state={_shape(self.last_hidden_state)}, " \
               f"pooler_output={_shape(self.pooler_output)})"


@dataclass
class BertForPreTrainingOutput:
    loss: Optional[float]                  # mlm_loss + nsp_loss (those that were asked for)
    prediction_logits: np.ndarray          # (B, T, V) without labels; (P, V) at labelled positions with them
    seq_relationship_logits: np.ndarray    # (B, 2)
    mlm_loss: Optional[float] = None
    nsp_loss: Optional[float] = None
    masked_positions: Optional[np.ndarray] = None  # (P,) flat indices into B*T of the rows of prediction_logits
    last_hidden_state: Optional[np.ndarray] = None  # (B, T, C)
    attentions: Optional[list] = None

    def __repr__(self):
        loss = "None" if self.loss is None else f"{float(self.loss):.4f}"
        return (f"BertForPreTrainingOutput(loss={loss}, prediction_logits={_shape(self.prediction_logits)}, "
                f"seq_relationship_logits={_shape(self.seq_relationship_logits)})")


def _shape(a):
    return None if a is None else tuple(a.shape)


class Module:
    """Holds ``params``/``grads`` (same keys), sub-modules, the train/eval switch and state dicts."""

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.children = {}  # prefix -> Module
        self.training = True

    # -- parameters ------------------------------------------------------------------------------
    def named_parameters(self):
        """[(full name, param array, grad array)] in transformers' ``named_parameters()`` order."""
        out = [(prefix + n, p, g) for prefix, child in self.children.items()
               for n, p, g in child.named_parameters()]
        return out + [(n, self.params[n], self.grads[n]) for n in self.params]

    def num_parameters(self):
        return sum(p.size for _, p, _ in self.named_parameters())

    def zero_grad(self):
        for _, _, g in self.named_parameters():
            g.fill(0)

    def grad_state_dict(self):
        """{name: gradient} for every trainable parameter, named as transformers' named_parameters()."""
        return {n: g for n, _, g in self.named_parameters()}

    def _tied_aliases(self):
        """{alias name: real name} for parameters that appear twice in transformers' state_dict."""
        return {}

    def state_dict(self):
        """{name: array} with transformers' names, shapes and (out, in) layout (arrays, not copies)."""
        sd = {n: p for n, p, _ in self.named_parameters()}
        for alias, real in self._tied_aliases().items():
            sd[alias] = sd[real]
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Copy weights in, in place.  Checks everything first, so a failed load changes nothing.

        Tied aliases (``cls.predictions.decoder.weight``/``.bias``) may be present or absent.
        Returns ``(missing, unexpected)`` name lists (both empty when ``strict``).
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of name -> array, got {type(state_dict).__name__}")
        own = {n: p for n, p, _ in self.named_parameters()}
        aliases = self._tied_aliases()
        missing = [n for n in own if n not in state_dict]
        unexpected = [n for n in state_dict if n not in own and n not in aliases]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        new, wrong_shapes = {}, []
        for n, value in state_dict.items():
            target = own.get(n)
            if target is None and n in aliases:
                target = own[aliases[n]]
            if target is None:
                continue
            try:
                value = np.asarray(value)
            except Exception as e:  # e.g. a torch tensor that needs .numpy()
                raise TypeError(f"load_state_dict: {n} must be array-like, got {type(value).__name__}") from e
            if value.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: {n} must hold numbers, got dtype {value.dtype}")
            if value.shape != target.shape:
                wrong_shapes.append(f"{n} has shape {value.shape}, expected {target.shape}")
            elif n in own:
                new[n] = value
        if wrong_shapes:
            raise ValueError("load_state_dict: " + "; ".join(wrong_shapes))
        for n, value in new.items():
            own[n][...] = value
        return missing, unexpected

    # -- transformers-format directories ---------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory, dtype=np.float32, seed=0, verbose=True, **config_overrides):
        """Load a transformers-format directory (config.json + model.safetensors).

        Works across classes as transformers does: a ``BertModel`` checkpoint into a model with heads
        (the heads are newly initialised, and we say so), or a pretraining checkpoint into a
        ``BertModel`` (the heads are ignored).  Missing and unexpected weights are reported by name.
        ``config_overrides`` replace fields of config.json (``num_labels=6`` for a new classifier).
        The model is returned in eval mode.
        """
        from .pretrained import read_config, read_weights
        model = cls(read_config(directory, **config_overrides), seed=seed, dtype=dtype)
        sd = read_weights(directory)
        own = model.state_dict()
        wants_prefix = any(k.startswith("bert.") for k in own)
        has_prefix = any(k.startswith("bert.") for k in sd)
        if wants_prefix and not has_prefix:
            sd = {"bert." + k: v for k, v in sd.items()}
        elif has_prefix and not wants_prefix:
            sd = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in sd.items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if len(missing) == len(model.named_parameters()):
            raise ValueError(f"no weight of {directory}/model.safetensors fits {cls.__name__} (expected names "
                             f"like {next(iter(own))!r}, found {list(sd)[:3]}): is it a BERT checkpoint?")
        model.missing_keys, model.unexpected_keys = missing, unexpected
        if verbose and missing:
            print(f"{cls.__name__}.from_pretrained: newly initialised (not in {directory}): {missing}")
        if verbose and unexpected:
            print(f"{cls.__name__}.from_pretrained: ignored weights of {directory} this model has no place for: "
                  f"{unexpected}")
        return model.eval()

    def save_pretrained(self, directory, tokenizer=None):
        """Write config.json + model.safetensors (+ vocab.txt) that transformers loads."""
        from .pretrained import save_pretrained
        save_pretrained(self, directory, tokenizer)

    # -- modes -----------------------------------------------------------------------------------
    def train(self, mode=True):
        """Dropout on (as PyTorch's ``model.train()``)."""
        self.training = bool(mode)
        for child in self.children.values():
            child.train(mode)
        return self

    def eval(self):
        """Dropout off: the forward becomes deterministic."""
        return self.train(False)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- helpers ---------------------------------------------------------------------------------
    def _new_param(self, name, shape, kind):
        """kind: 'normal' (weights, N(0, initializer_range)), 'zeros' (biases), 'ones' (LN gains)."""
        if kind == "normal":
            p = self._init_rng.normal(0.0, self.config.initializer_range, size=shape).astype(self.dtype)
        elif kind == "zeros":
            p = np.zeros(shape, dtype=self.dtype)
        else:
            p = np.ones(shape, dtype=self.dtype)
        self.params[name] = p
        self.grads[name] = np.zeros_like(p)

    def _acc(self, name, g):
        self.grads[name] += g


def _check_config(config):
    if not isinstance(config, BertConfig):
        raise TypeError(f"config must be a minibert.BertConfig, got {type(config).__name__}")


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _as_int_array(name, value, shape=None):
    """``value`` as an int64 array, or a TypeError/ValueError naming ``name``."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array (token ids are integers), got dtype {arr.dtype}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr.astype(np.int64, copy=False)


class BertModel(Module):
    """The BERT encoder + pooler.  ``out.last_hidden_state`` (B, T, C), ``out.pooler_output`` (B, C).

    Its state dict uses transformers' ``BertModel`` names (no ``bert.`` prefix).
    """

    def __init__(self, config, seed=0, dtype=np.float32, add_pooling_layer=True):
        super().__init__()
        _check_config(config)
        self.config = config
        self.dtype = _check_dtype(dtype)
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
        if add_pooling_layer:
            self._new_param("pooler.dense.weight", (C, C), "normal")
            self._new_param("pooler.dense.bias", (C,), "zeros")

    def __repr__(self):
        c = self.config
        return (f"BertModel(L={c.num_hidden_layers}, C={c.hidden_size}, A={c.num_attention_heads}, "
                f"F={c.intermediate_size}, V={c.vocab_size}, params={self.num_parameters():,}, "
                f"dtype={self.dtype.name}, {'train' if self.training else 'eval'})")

    # -- input checking --------------------------------------------------------------------------
    def check_inputs(self, input_ids, token_type_ids=None, attention_mask=None):
        """Validate and normalise the inputs; returns int64 (B, T) arrays.  Raises a clear error."""
        c = self.config
        ids = _as_int_array("input_ids", input_ids)
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
            tt = _as_int_array("token_type_ids", token_type_ids, ids.shape)
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
        """(B, T) ids [, (B, T) segment ids, (B, T) 1/0 mask] -> BertModelOutput"""
        ids, tt, mask = self.check_inputs(input_ids, token_type_ids, attention_mask)
        K, c, p = backend.ops, self.config, self.params
        T = ids.shape[1]
        drop = dict(rng=self.dropout_rng, training=self.training)
        eps = c.layer_norm_eps

        backend.scope = "embeddings forward"
        we, c_we = K.embedding_forward(ids, p["embeddings.word_embeddings.weight"])  # (B, T, C)
        te, c_te = K.embedding_forward(tt, p["embeddings.token_type_embeddings.weight"])  # (B, T, C)
        pe = p["embeddings.position_embeddings.weight"][:T]  # (T, C), broadcast over B
        x, c_eln = K.layernorm_forward(we + te + pe, p["embeddings.LayerNorm.weight"],
                                       p["embeddings.LayerNorm.bias"], eps)
        x, c_edrop = K.dropout_forward(x, c.hidden_dropout_prob, **drop)
        mask_add = attention_mask_to_additive(mask, self.dtype)  # (B, 1, 1, T)

        layer_caches = []
        for i in range(c.num_hidden_layers):
            x, cache = self._layer_forward(i, x, mask_add)
            layer_caches.append(cache)

        pooled, c_pool = None, None
        backend.scope = "pooler forward"
        if self.add_pooling_layer:
            h, c_pd = K.linear_forward(x[:, 0], p["pooler.dense.weight"], p["pooler.dense.bias"])  # (B, C)
            pooled, c_pt = K.tanh_forward(h)
            c_pool = (c_pd, c_pt)
        self._cache = (c_we, c_te, c_eln, c_edrop, layer_caches, c_pool, T)
        attentions = [lc[0][3][3] for lc in layer_caches] if output_attentions else None
        return BertModelOutput(x, pooled, attentions)

    def _layer_forward(self, i, x, mask_add):
        """One post-LN encoder layer.  (B, T, C) -> (B, T, C)"""
        K, c, p = backend.ops, self.config, self.params
        pre = f"encoder.layer.{i}."
        backend.scope = f"encoder.layer.{i} forward"
        drop = dict(rng=self.dropout_rng, training=self.training)
        att = pre + "attention."
        a, c_att = K.attention_forward(
            x, p[att + "self.query.weight"], p[att + "self.query.bias"],
            p[att + "self.key.weight"], p[att + "self.key.bias"],
            p[att + "self.value.weight"], p[att + "self.value.bias"],
            p[att + "output.dense.weight"], p[att + "output.dense.bias"],
            mask_add, c.num_attention_heads, c.attention_probs_dropout_prob, **drop)
        a, c_d1 = K.dropout_forward(a, c.hidden_dropout_prob, **drop)
        h, c_ln1 = K.layernorm_forward(a + x, p[att + "output.LayerNorm.weight"],
                                       p[att + "output.LayerNorm.bias"], c.layer_norm_eps)
        f, c_ffn = K.ffn_forward(h, p[pre + "intermediate.dense.weight"], p[pre + "intermediate.dense.bias"],
                                 p[pre + "output.dense.weight"], p[pre + "output.dense.bias"], c.hidden_act)
        f, c_d2 = K.dropout_forward(f, c.hidden_dropout_prob, **drop)
        out, c_ln2 = K.layernorm_forward(f + h, p[pre + "output.LayerNorm.weight"],
                                         p[pre + "output.LayerNorm.bias"], c.layer_norm_eps)
        return out, (c_att, c_d1, c_ln1, c_ffn, c_d2, c_ln2)

    def _layer_backward(self, i, dout, cache):
        K = backend.ops
        c_att, c_d1, c_ln1, c_ffn, c_d2, c_ln2 = cache
        pre = f"encoder.layer.{i}."
        att = pre + "attention."
        backend.scope = f"encoder.layer.{i} backward"
        # forward: out = LayerNorm(f + h)
        dsum2, dw, db = K.layernorm_backward(dout, c_ln2)
        self._acc(pre + "output.LayerNorm.weight", dw)
        self._acc(pre + "output.LayerNorm.bias", db)
        # forward: f = dropout(FFN(h))
        df = K.dropout_backward(dsum2, c_d2)
        dh, dw1, db1, dw2, db2 = K.ffn_backward(df, c_ffn)
        self._acc(pre + "intermediate.dense.weight", dw1)
        self._acc(pre + "intermediate.dense.bias", db1)
        self._acc(pre + "output.dense.weight", dw2)
        self._acc(pre + "output.dense.bias", db2)
        dh += dsum2  # the residual: h also went straight into the sum
        # forward: h = LayerNorm(a + x)
        dsum1, dw, db = K.layernorm_backward(dh, c_ln1)
        self._acc(att + "output.LayerNorm.weight", dw)
        self._acc(att + "output.LayerNorm.bias", db)
        # forward: a = dropout(Attention(x))
        da = K.dropout_backward(dsum1, c_d1)
        dx, *dparams = K.attention_backward(da, c_att)
        for name, g in zip(("self.query.weight", "self.query.bias", "self.key.weight", "self.key.bias",
                            "self.value.weight", "self.value.bias", "output.dense.weight",
                            "output.dense.bias"), dparams):
            self._acc(att + name, g)
        dx += dsum1  # the residual
        return dx

    def backward(self, d_last_hidden_state=None, d_pooler_output=None):
        """Accumulate d(loss)/d(params) into ``grads``, given the upstream gradients of the outputs,
        (B, T, C) and/or (B, C).  Call ``zero_grad()`` first unless you mean to accumulate."""
        if self._cache is None:
            raise ValueError("backward() called before forward(): run the model on a batch first")
        K, c = backend.ops, self.config
        c_we, c_te, c_eln, c_edrop, layer_caches, c_pool, T = self._cache
        B = c_we[0].shape[0]
        if d_last_hidden_state is None:
            dx = np.zeros((B, T, c.hidden_size), dtype=self.dtype)
        else:
            dx = np.array(d_last_hidden_state, dtype=self.dtype)  # a copy: we add into it
            if dx.shape != (B, T, c.hidden_size):
                raise ValueError(f"d_last_hidden_state must have shape {(B, T, c.hidden_size)}, got {dx.shape}")
        backend.scope = "pooler backward"
        if d_pooler_output is not None:
            if c_pool is None:
                raise ValueError("d_pooler_output given, but this BertModel has no pooler")
            c_pd, c_pt = c_pool
            # forward: pooled = tanh(x[:, 0] @ Wp.T + bp)
            dh = K.tanh_backward(np.asarray(d_pooler_output, dtype=self.dtype), c_pt)
            dfirst, dw, db = K.linear_backward(dh, c_pd)
            self._acc("pooler.dense.weight", dw)
            self._acc("pooler.dense.bias", db)
            dx[:, 0] += dfirst
        for i in reversed(range(c.num_hidden_layers)):
            dx = self._layer_backward(i, dx, layer_caches[i])
        # forward: x = dropout(LayerNorm(word + token_type + position))
        backend.scope = "embeddings backward"
        dx = K.dropout_backward(dx, c_edrop)
        demb, dw, db = K.layernorm_backward(dx, c_eln)
        self._acc("embeddings.LayerNorm.weight", dw)
        self._acc("embeddings.LayerNorm.bias", db)
        self._acc("embeddings.word_embeddings.weight",
                  K.embedding_backward(demb, c_we, c.pad_token_id))
        self._acc("embeddings.token_type_embeddings.weight", K.embedding_backward(demb, c_te))
        self.grads["embeddings.position_embeddings.weight"][:T] += demb.sum(axis=0)


class _WithEncoder(Module):
    """A model built around a ``BertModel`` child ``self.bert``: the pretraining model and the heads."""

    @property
    def dropout_rng(self):
        """The generator every dropout mask of this model is drawn from (the encoder's; checkpointed)."""
        return self.bert.dropout_rng

    @dropout_rng.setter
    def dropout_rng(self, rng):
        self.bert.dropout_rng = rng


class BertForPreTraining(_WithEncoder):
    """BERT with its two pretraining heads: masked LM (tied decoder) and next-sentence prediction.

    ``out = model(input_ids, token_type_ids, attention_mask, labels, next_sentence_label)``;
    ``labels`` (B, T) holds the original token at predicted positions and -100 elsewhere;
    ``next_sentence_label`` (B,) is 0 when B follows A, 1 when B is random.  ``out.loss`` is the MLM
    cross-entropy averaged over labelled positions plus the NSP cross-entropy averaged over the batch.
    With labels, the MLM head runs only on the labelled positions (the decoder, P x C x V, is the
    largest matmul of a step), so ``prediction_logits`` is then (P, V).
    """

    def __init__(self, config, seed=0, dtype=np.float32):
        super().__init__()
        _check_config(config)
        self.config = config
        self.dtype = _check_dtype(dtype)
        self.bert = BertModel(config, seed=seed, dtype=dtype)
        self.children = {"bert.": self.bert}
        self._init_rng = np.random.default_rng([seed, 2])
        self._cache = None
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
                f"dtype={self.dtype.name}, {'train' if self.training else 'eval'})")

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                next_sentence_label=None, output_attentions=False):
        K, c, p = backend.ops, self.config, self.params
        ids, _, _ = self.bert.check_inputs(input_ids, token_type_ids, attention_mask)
        B, T = ids.shape
        if labels is not None:
            labels = _as_int_array("labels", labels, ids.shape)
            bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= c.vocab_size))
            if bad.any():
                raise ValueError(f"labels must be -100 (not predicted) or a token id in [0, vocab_size="
                                 f"{c.vocab_size}), got {labels[bad][0]}")
        if next_sentence_label is not None:
            next_sentence_label = _as_int_array("next_sentence_label", next_sentence_label, (B,))
            if not np.isin(next_sentence_label, (0, 1)).all():
                raise ValueError("next_sentence_label must be 0 (B follows A) or 1 (B is random), got "
                                 f"{sorted(set(next_sentence_label.tolist()))}")

        out = self.bert.forward(ids, token_type_ids, attention_mask, output_attentions)
        x = out.last_hidden_state  # (B, T, C)
        C = x.shape[-1]
        # MLM head: only at labelled positions when labels are given (gather first, as google-research/bert)
        positions = None if labels is None else np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX)  # (P,)
        h = x.reshape(-1, C) if positions is None else x.reshape(-1, C)[positions]  # (P, C)
        backend.scope = "pretraining heads forward"
        act_forward = getattr(K, _ACT_FORWARD[c.hidden_act])
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
        self._cache = (positions, c_td, c_ta, c_tln, c_dec, c_nsp, c_mlm, c_nspl, (B, T, C))
        if positions is None:
            logits = logits.reshape(B, T, c.vocab_size)
        return BertForPreTrainingOutput(loss, logits, nsp_logits, mlm_loss, nsp_loss, positions, x,
                                        out.attentions)

    def backward(self):
        """Fill ``grads`` with d(out.loss)/d(every parameter) for the last forward (overwrites)."""
        if self._cache is None:
            raise ValueError("backward() called before forward(): run the model on a batch first")
        positions, c_td, c_ta, c_tln, c_dec, c_nsp, c_mlm, c_nspl, (B, T, C) = self._cache
        if c_mlm is None and c_nspl is None:
            raise ValueError("backward() needs a loss: pass labels and/or next_sentence_label to forward()")
        K, c = backend.ops, self.config
        self.zero_grad()
        backend.scope = "pretraining heads backward"
        dx = np.zeros((B * T, C), dtype=self.dtype)  # d loss / d last_hidden_state, flattened
        dpooled = np.zeros((B, C), dtype=self.dtype)
        if c_mlm is not None:
            dlogits = K.cross_entropy_backward(1.0, c_mlm)  # (P, V)
            # forward: logits = h @ word.T + bias  -- word is the tied embedding: accumulate
            dh, dword, dbias = K.linear_backward(dlogits, c_dec)
            owner, name = self._decoder()
            owner._acc(name, dword)
            self._acc("cls.predictions.bias", dbias)
            dh, dw, db = K.layernorm_backward(dh, c_tln)
            self._acc("cls.predictions.transform.LayerNorm.weight", dw)
            self._acc("cls.predictions.transform.LayerNorm.bias", db)
            dh = getattr(K, _ACT_BACKWARD[c.hidden_act])(dh, c_ta)
            dh, dw, db = K.linear_backward(dh, c_td)
            self._acc("cls.predictions.transform.dense.weight", dw)
            self._acc("cls.predictions.transform.dense.bias", db)
            dx[positions] = dh  # forward: h = x[positions] (positions are distinct)
        if c_nspl is not None:
            dnsp = K.cross_entropy_backward(1.0, c_nspl)  # (B, 2)
            dpooled, dw, db = K.linear_backward(dnsp, c_nsp)
            self._acc("cls.seq_relationship.weight", dw)
            self._acc("cls.seq_relationship.bias", db)
        self.bert.backward(dx.reshape(B, T, C), dpooled)


_ACT_FORWARD = {"gelu": "gelu_forward", "gelu_new": "gelu_tanh_forward",
                "gelu_pytorch_tanh": "gelu_tanh_forward", "relu": "relu_forward"}
_ACT_BACKWARD = {k: v.replace("_forward", "_backward") for k, v in _ACT_FORWARD.items()}
