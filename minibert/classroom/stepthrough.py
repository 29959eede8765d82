"""One batch through BERT, every operation a step, glue included: a step-through a student checks by hand.

    walk = step_through(model, input_ids, attention_mask=mask, labels=labels, next_sentence_label=nsp,
                        tokens=tokens)
    walk["bert.encoder.layer.0.attention.self.softmax"].outputs["P"]      # (B, A, T, T)
    walk["bert.embeddings.LayerNorm", "backward"].outputs["de"]           # (B, T, C): a gradient
    print(walk.table())                                                   # one line per step

``minibert.trace`` records the kernels the model calls; what happens between them (the embedding sum, a
residual add, the ``[CLS]`` slice, the gather of the masked rows, the sum of the tied weight's two
gradients) is not a kernel, so it is not there.  Here the forward and the backward of a post-LN
``BertForPreTraining`` are written out again, one line per operation, over the model's own ``params``:
each kernel is the NumPy reference of ``minibert/layers`` (``linear_forward``, ``softmax_forward``, ...),
each piece of glue is the NumPy line the model runs.  ``tests/classroom/test_stepthrough.py`` proves it is the model:
in float64 every output and every parameter gradient equals the model's to 1e-12.

A step holds the full tensors (the whole small batch), its formula, the file and line of minibert that
runs it (``source``) and the derivation page of its backward (``doc``, a ``docs/backward/*.md``).
Dropout is not a step: the step-through runs the model in eval mode (dropout off), and refuses a model in
train mode with dropout.  Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``A`` heads, ``D = C / A``,
``F`` intermediate, ``V`` vocab, ``P`` masked (predicted) positions.
"""
import inspect
import math
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..layers import cross_entropy, embedding, layernorm, linear, softmax, tanh
from ..layers.attention import merge_heads, sdpa_backward, sdpa_forward, split_heads
from ..layers.encoder_layer import encoder_layer_backward, encoder_layer_forward
from ..layers.cross_entropy import IGNORE_INDEX
from ..layers.gelu import ACTIVATIONS
from .trace import StepList

__all__ = ["step_through", "StepThrough", "OpStep"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../minibert


def _source_of(fn):
    """``minibert/layers/linear.py:12``: the file and first line of a function of minibert."""
    path = inspect.getsourcefile(fn)
    return f"{os.path.relpath(path, os.path.dirname(_PACKAGE))}:{inspect.getsourcelines(fn)[1]}".replace(os.sep, "/")


def _source_line(module_file, pattern, fallback=None):
    """``minibert/models/bert.py:294``: the first line of ``module_file`` (relative to minibert/) that matches
    the regular expression ``pattern`` (the model's line for a piece of glue); ``fallback``'s location, or
    line 1, when no line matches (the model's code moved on)."""
    path = os.path.join(_PACKAGE, module_file)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if re.search(pattern, line):
                return f"minibert/{module_file}:{n}"
    return _source_of(fallback) if fallback is not None else f"minibert/{module_file}:1"


@dataclass(eq=False)
class OpStep:
    """One operation.

    ``name``     where in the model (transformers' names: ``bert.encoder.layer.0.attention.self.softmax``)
    ``phase``    "forward" or "backward" (a backward step has the name of the forward step it inverts)
    ``op``       what kind (``lookup``, ``add``, ``layernorm``, ``linear``, ``softmax``, ``gather``, ...)
    ``formula``  the operation in one line of plain text
    ``inputs``, ``outputs``  {name: array}, the full tensors (parameters are the model's own arrays)
    ``axes``     {tensor name: its axes, e.g. "BTC", "BATT", "PV"} (for labels: T is a token, V a word)
    ``grads``    backward: {parameter name: the gradient this step gives it}
    ``source``   ``minibert/layers/softmax.py:14``: the code of minibert that runs this operation
    ``doc``      ``docs/backward/softmax.md``: the derivation of its backward (or of the operation it is part of)
    """
    index: int
    phase: str
    name: str
    op: str
    formula: str
    source: str
    doc: Optional[str]
    inputs: dict
    outputs: dict
    axes: dict
    grads: dict = field(default_factory=dict)

    @property
    def out(self):
        """The first output."""
        return next(iter(self.outputs.values()))

    def row(self):
        shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in self.outputs.items())
        return f"{self.index:4d} {self.phase[:4]} {self.name:<52.52s} {self.op:<12.12s} {shapes}"

    def __repr__(self):
        lines = [f"OpStep {self.index} ({self.phase}): {self.name}  [{self.op}]  {self.formula}",
                 f"  source {self.source}" + (f"   derivation {self.doc}" if self.doc else "")]
        for kind, d in (("in ", self.inputs), ("out", self.outputs)):
            for k, v in d.items():
                lines.append(f"  {kind} {k:<8s} {str(tuple(np.shape(v))):<16s} {self.axes.get(k, '')}")
        for p, g in self.grads.items():
            lines.append(f"  grad of {p} {tuple(g.shape)}")
        return "\n".join(lines)


class StepThrough(StepList):
    """Every operation of one forward and backward, in order (a list of ``OpStep``).

    ``walk[i]``; ``walk["name"]`` the forward step of that name, ``walk["name", "backward"]`` the backward
    one; ``walk.find(text)``; ``walk.param_grad(name)`` the sum of what the backward steps gave a parameter
    (equal to the model's ``grads``); ``walk.table()``.  ``loss``, ``mlm_loss``, ``nsp_loss`` floats;
    ``tokens`` the word pieces of each row, ``words`` the vocabulary (id -> piece) when it is known.
    """

    def __init__(self, steps, losses, tokens, words, sentence, model_name):
        self.steps = steps
        self.loss, self.mlm_loss, self.nsp_loss = losses
        self.tokens, self.words, self.sentence, self.model_name = tokens, words, sentence, model_name

    def __iter__(self):
        return iter(self.steps)

    def param_grad(self, name):
        """The gradient of parameter ``name`` (``bert.``-prefixed): the sum of what the backward steps gave it."""
        parts = [s.grads[name] for s in self.steps if name in s.grads]
        if not parts:
            raise KeyError(f"no backward step gave a gradient to {name!r}")
        total = parts[0].copy()
        for g in parts[1:]:
            total += g
        return total

    def table(self):
        return "\n".join(s.row() for s in self.steps)

    def __repr__(self):
        return (f"StepThrough({self.model_name}: {len(self.forward)} forward + {len(self.backward)} backward "
                f"steps, loss={self.loss:.4f}; walk[i], walk['name'], walk.table())")


class _Recorder:
    def __init__(self):
        self.steps = []
        self.phase = "forward"

    def __call__(self, name, op, formula, source, doc, inputs, outputs, axes, grads=None):
        self.steps.append(OpStep(len(self.steps), self.phase, name, op, formula, source, doc,
                                 dict(inputs), dict(outputs), dict(axes), dict(grads or {})))
        return outputs


# derivation pages (docs/backward/)
_DOC = {k: f"docs/backward/{k}.md" for k in ("embedding", "layernorm", "linear", "softmax", "attention", "gelu",
                                             "tanh_pooler", "cross_entropy", "tied_weights")}
_ACT_NAMES = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def step_through(model, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                 next_sentence_label=None, tokens=None, words=None, sentence=None):
    """Run a post-LN ``BertForPreTraining`` forward and backward one operation at a time. -> ``StepThrough``.

    ``input_ids`` (B, T) [``token_type_ids``, ``attention_mask`` (B, T)], ``labels`` (B, T) with -100 where
    nothing is predicted (at least one label), ``next_sentence_label`` (B,) or None (then no NSP loss).
    ``tokens``: the pieces of each row (a list per row, or one list for B = 1), for display; ``words``:
    the vocabulary, id -> piece.  The model is not changed (its ``grads`` neither): the steps compute
    from its ``params`` in its dtype.  The loss is ``mlm_loss + nsp_loss``, as the model's.
    """
    from ..models.bert import BertForPreTraining, BertModel
    if not isinstance(model, BertForPreTraining):
        raise TypeError(f"step_through: model must be a BertForPreTraining (MLM and NSP heads), got "
                        f"{type(model).__name__}")
    c = model.config
    if c.layer_norm_position != "post" or c.is_decoder or not c.tie_word_embeddings:
        raise ValueError("step_through follows BERT as published: post-LN, bidirectional, tied decoder; this "
                         "model is not (use minibert.trace for it)")
    if model.training and (c.hidden_dropout_prob > 0 or c.attention_probs_dropout_prob > 0):
        raise ValueError("step_through runs without dropout: call model.eval() first")
    if c.hidden_act not in _ACT_NAMES:
        raise ValueError(f"step_through: unknown activation {c.hidden_act!r}")
    ids, tt, mask = model.bert.check_inputs(input_ids, token_type_ids, attention_mask)
    B, T = ids.shape
    if labels is None:
        raise ValueError("step_through: pass labels (B, T), the word at each predicted position and -100 "
                         "elsewhere: the backward starts from the masked-LM loss")
    labels = np.asarray(labels)
    if labels.shape != (B, T) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers of shape {(B, T)}, got {labels.dtype} {labels.shape}")
    positions = np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX)  # (P,)
    if positions.size == 0:
        raise ValueError("labels has no predicted position (every entry is -100)")
    nsp_label = None if next_sentence_label is None else np.asarray(next_sentence_label).reshape(B)
    if tokens is not None and tokens and isinstance(tokens[0], str):
        tokens = [list(tokens)]
    rec = _Recorder()
    P = model.params
    E = model.bert.params
    act = _ACT_NAMES[c.hidden_act]
    act_forward, act_backward = ACTIVATIONS[c.hidden_act]
    eps = c.layer_norm_eps
    A = c.num_attention_heads
    bert_py = "models/bert.py"

    # ================================================================== forward
    we, c_we = embedding.embedding_forward(ids, E["embeddings.word_embeddings.weight"])  # (B, T, C)
    rec("bert.embeddings.word_embeddings", "lookup", "we[b, t] = E[ids[b, t]]  (one row of E per token)",
        _source_of(embedding.embedding_forward), _DOC["embedding"],
        {"ids": ids, "E": E["embeddings.word_embeddings.weight"]}, {"we": we}, {"ids": "BT", "E": "VC", "we": "BTC"})
    te, c_te = embedding.embedding_forward(tt, E["embeddings.token_type_embeddings.weight"])  # (B, T, C)
    rec("bert.embeddings.token_type_embeddings", "lookup", "te[b, t] = S[segment[b, t]]  (segment A = 0, B = 1)",
        _source_of(embedding.embedding_forward), _DOC["embedding"],
        {"segment": tt, "S": E["embeddings.token_type_embeddings.weight"]}, {"te": te},
        {"segment": "BT", "S": "GC", "te": "BTC"})
    positions_row = np.arange(T)[None]  # (1, T)
    pe, c_pe = embedding.embedding_forward(positions_row, E["embeddings.position_embeddings.weight"])  # (1, T, C)
    rec("bert.embeddings.position_embeddings", "lookup", "pe[0, t] = Pos[t]  (the same for every row b)",
        _source_of(embedding.embedding_forward), _DOC["embedding"],
        {"t": positions_row, "Pos": E["embeddings.position_embeddings.weight"][:T]}, {"pe": pe},
        {"t": "BT", "Pos": "TC", "pe": "BTC"})
    e = we + te + pe  # (B, T, C)
    rec("bert.embeddings.sum", "add", "e = we + te + pe  (pe broadcast over the batch)",
        _source_line(bert_py, r"we \+ te \+ pe", BertModel.forward), _DOC["embedding"], {"we": we, "te": te, "pe": pe}, {"e": e},
        {"we": "BTC", "te": "BTC", "pe": "BTC", "e": "BTC"})
    x, c_eln = layernorm.layernorm_forward(e, E["embeddings.LayerNorm.weight"], E["embeddings.LayerNorm.bias"], eps)
    rec("bert.embeddings.LayerNorm", "layernorm",
        "x = (e - mean(e)) / sqrt(var(e) + eps) * g + b  (over the C numbers of each token)",
        _source_of(layernorm.layernorm_forward), _DOC["layernorm"],
        {"e": e, "g": E["embeddings.LayerNorm.weight"], "b": E["embeddings.LayerNorm.bias"]}, {"x": x},
        {"e": "BTC", "g": "C", "b": "C", "x": "BTC"})
    mask_add = softmax.attention_mask_to_additive(mask, model.dtype)  # (B, 1, 1, T)
    rec("bert.extended_attention_mask", "mask", "M[b, j] = 0 if mask[b, j] = 1 else finfo.min  (added to scores)",
        _source_of(softmax.attention_mask_to_additive), _DOC["softmax"], {"mask": mask}, {"M": mask_add},
        {"mask": "BT", "M": "B11T"})

    layer_caches = []
    for i in range(c.num_hidden_layers):
        pre, name = f"encoder.layer.{i}.", f"bert.encoder.layer.{i}."
        lc = {}
        projections = {}
        for short, letter in (("query", "q"), ("key", "k"), ("value", "v")):
            w, b = E[pre + f"attention.self.{short}.weight"], E[pre + f"attention.self.{short}.bias"]
            y, lc[short] = linear.linear_forward(x, w, b)  # (B, T, C)
            projections[letter] = y
            rec(name + f"attention.self.{short}", "linear", f"{letter} = x W{letter}^T + b{letter}",
                _source_of(linear.linear_forward), _DOC["linear"], {"x": x, f"W{letter}": w, f"b{letter}": b},
                {letter: y}, {"x": "BTC", f"W{letter}": "CC", f"b{letter}": "C", letter: "BTC"})
        qh, kh, vh = (split_heads(projections[k], A) for k in "qkv")  # (B, A, T, D) each
        rec(name + "attention.self.split_heads", "reshape",
            "q[b, t, a*D + d] -> qh[b, a, t, d]  (the same for k and v: a reshape and a transpose)",
            _source_of(split_heads), _DOC["attention"], projections, {"qh": qh, "kh": kh, "vh": vh},
            {"q": "BTC", "k": "BTC", "v": "BTC", "qh": "BATD", "kh": "BATD", "vh": "BATD"})
        scale = 1.0 / math.sqrt(qh.shape[-1])
        scores = (qh @ kh.transpose(0, 1, 3, 2)) * qh.dtype.type(scale)  # (B, A, T, T)
        rec(name + "attention.self.scores", "matmul", f"S[b, a, i, j] = qh[b, a, i] . kh[b, a, j] / sqrt(D)  (D = {qh.shape[-1]})",
            _source_line("layers/attention.py", r"scores = \(q @ k", sdpa_forward), _DOC["attention"], {"qh": qh, "kh": kh},
            {"S": scores}, {"qh": "BATD", "kh": "BATD", "S": "BATT"})
        probs, _ = softmax.softmax_forward(scores, mask_add)  # (B, A, T, T)
        rec(name + "attention.self.softmax", "softmax",
            "P[b, a, i, j] = exp(S[b, a, i, j] + M[b, j] - m) / sum_j' exp(S[b, a, i, j'] + M[b, j'] - m)  (m: the row's max)",
            _source_of(softmax.softmax_forward), _DOC["softmax"], {"S": scores, "M": mask_add}, {"P": probs},
            {"S": "BATT", "M": "B11T", "P": "BATT"})
        ctx = probs @ vh  # (B, A, T, D)
        rec(name + "attention.self.context", "matmul", "ctx[b, a, i] = sum_j P[b, a, i, j] vh[b, a, j]",
            _source_line("layers/attention.py", r"ctx = dropped @ v", sdpa_forward), _DOC["attention"], {"P": probs, "vh": vh},
            {"ctx": ctx}, {"P": "BATT", "vh": "BATD", "ctx": "BATD"})
        merged = merge_heads(ctx)  # (B, T, C)
        rec(name + "attention.self.merge_heads", "reshape", "ctx[b, a, t, d] -> c[b, t, a*D + d]",
            _source_of(merge_heads), _DOC["attention"], {"ctx": ctx}, {"c": merged}, {"ctx": "BATD", "c": "BTC"})
        wo, bo = E[pre + "attention.output.dense.weight"], E[pre + "attention.output.dense.bias"]
        a, lc["output"] = linear.linear_forward(merged, wo, bo)  # (B, T, C)
        rec(name + "attention.output.dense", "linear", "a = c Wo^T + bo", _source_of(linear.linear_forward),
            _DOC["linear"], {"c": merged, "Wo": wo, "bo": bo}, {"a": a}, {"c": "BTC", "Wo": "CC", "bo": "C", "a": "BTC"})
        r1 = a + x  # (B, T, C)
        rec(name + "attention.output.residual", "add", "r = a + x  (the residual: the layer's input added back)",
            _source_line("layers/encoder_layer.py", r"layernorm_forward\(a \+ x", encoder_layer_forward), _DOC["tied_weights"],
            {"a": a, "x": x}, {"r": r1}, {"a": "BTC", "x": "BTC", "r": "BTC"})
        g1, b1n = E[pre + "attention.output.LayerNorm.weight"], E[pre + "attention.output.LayerNorm.bias"]
        h, lc["ln1"] = layernorm.layernorm_forward(r1, g1, b1n, eps)
        rec(name + "attention.output.LayerNorm", "layernorm", "h = (r - mean(r)) / sqrt(var(r) + eps) * g + b",
            _source_of(layernorm.layernorm_forward), _DOC["layernorm"], {"r": r1, "g": g1, "b": b1n}, {"h": h},
            {"r": "BTC", "g": "C", "b": "C", "h": "BTC"})
        w1, bb1 = E[pre + "intermediate.dense.weight"], E[pre + "intermediate.dense.bias"]
        u, lc["w1"] = linear.linear_forward(h, w1, bb1)  # (B, T, F)
        rec(name + "intermediate.dense", "linear", "u = h W1^T + b1", _source_of(linear.linear_forward),
            _DOC["linear"], {"h": h, "W1": w1, "b1": bb1}, {"u": u}, {"h": "BTC", "W1": "FC", "b1": "F", "u": "BTF"})
        gact, lc["act"] = act_forward(u)  # (B, T, F)
        rec(name + "intermediate." + act, "activation",
            {"gelu": "g = u * Phi(u)  (Phi: the standard normal CDF)", "relu": "g = max(u, 0)",
             "gelu_tanh": "g = u/2 * (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))"}[act],
            _source_of(act_forward), _DOC["gelu"], {"u": u}, {"g": gact}, {"u": "BTF", "g": "BTF"})
        w2, bb2 = E[pre + "output.dense.weight"], E[pre + "output.dense.bias"]
        f, lc["w2"] = linear.linear_forward(gact, w2, bb2)  # (B, T, C)
        rec(name + "output.dense", "linear", "f = g W2^T + b2", _source_of(linear.linear_forward), _DOC["linear"],
            {"g": gact, "W2": w2, "b2": bb2}, {"f": f}, {"g": "BTF", "W2": "CF", "b2": "C", "f": "BTC"})
        r2 = f + h  # (B, T, C)
        rec(name + "output.residual", "add", "r = f + h  (the residual around the FFN)",
            _source_line("layers/encoder_layer.py", r"layernorm_forward\(f \+ h", encoder_layer_forward), _DOC["tied_weights"],
            {"f": f, "h": h}, {"r": r2}, {"f": "BTC", "h": "BTC", "r": "BTC"})
        g2, b2n = E[pre + "output.LayerNorm.weight"], E[pre + "output.LayerNorm.bias"]
        x, lc["ln2"] = layernorm.layernorm_forward(r2, g2, b2n, eps)
        rec(name + "output.LayerNorm", "layernorm", "x = (r - mean(r)) / sqrt(var(r) + eps) * g + b  (the layer's output)",
            _source_of(layernorm.layernorm_forward), _DOC["layernorm"], {"r": r2, "g": g2, "b": b2n}, {"x": x},
            {"r": "BTC", "g": "C", "b": "C", "x": "BTC"})
        lc.update(qh=qh, kh=kh, vh=vh, probs=probs, scale=scale)
        layer_caches.append(lc)
    hidden = x  # (B, T, C): the encoder's output
    C = hidden.shape[-1]

    cls = hidden[:, 0]  # (B, C)
    rec("bert.pooler.cls_slice", "slice", "xc[b] = x[b, 0]  (the [CLS] position of each row)",
        _source_line(bert_py, r"x\[:, 0\]", BertModel.forward), _DOC["tanh_pooler"], {"x": hidden}, {"xc": cls}, {"x": "BTC", "xc": "BC"})
    wp, bp = E["pooler.dense.weight"], E["pooler.dense.bias"]
    hp, c_pd = linear.linear_forward(cls, wp, bp)  # (B, C)
    rec("bert.pooler.dense", "linear", "z = xc Wp^T + bp", _source_of(linear.linear_forward), _DOC["linear"],
        {"xc": cls, "Wp": wp, "bp": bp}, {"z": hp}, {"xc": "BC", "Wp": "CC", "bp": "C", "z": "BC"})
    pooled, c_pt = tanh.tanh_forward(hp)  # (B, C)
    rec("bert.pooler.tanh", "tanh", "pooled = tanh(z)", _source_of(tanh.tanh_forward), _DOC["tanh_pooler"],
        {"z": hp}, {"pooled": pooled}, {"z": "BC", "pooled": "BC"})

    hm = hidden.reshape(B * T, C)[positions]  # (P, C)
    rec("cls.predictions.gather", "gather",
        "xm[p] = x[b_p, t_p]  (the rows of the masked positions; flat index b*T + t: "
        + ", ".join(str(int(p)) for p in positions[:8]) + ("..." if positions.size > 8 else "")
        + ". The model runs the head on every row and its cross-entropy skips the -100 rows; picking the"
        " labelled rows first, as google-research/bert does, gives the same logits there and the same loss)",
        _source_line(bert_py, r"cross_entropy_forward\(logits, labels", fallback=BertForPreTraining.forward),
        _DOC["cross_entropy"],
        {"x": hidden, "positions": positions}, {"xm": hm}, {"x": "BTC", "positions": "P", "xm": "PC"})
    wt, bt = P["cls.predictions.transform.dense.weight"], P["cls.predictions.transform.dense.bias"]
    ht, c_td = linear.linear_forward(hm, wt, bt)  # (P, C)
    rec("cls.predictions.transform.dense", "linear", "y = xm Wt^T + bt", _source_of(linear.linear_forward),
        _DOC["linear"], {"xm": hm, "Wt": wt, "bt": bt}, {"y": ht}, {"xm": "PC", "Wt": "CC", "bt": "C", "y": "PC"})
    ha, c_ta = act_forward(ht)  # (P, C)
    rec("cls.predictions.transform." + act, "activation", f"ya = {act}(y)", _source_of(act_forward), _DOC["gelu"],
        {"y": ht}, {"ya": ha}, {"y": "PC", "ya": "PC"})
    gt, btn = P["cls.predictions.transform.LayerNorm.weight"], P["cls.predictions.transform.LayerNorm.bias"]
    hn, c_tln = layernorm.layernorm_forward(ha, gt, btn, eps)  # (P, C)
    rec("cls.predictions.transform.LayerNorm", "layernorm", "yn = (ya - mean(ya)) / sqrt(var(ya) + eps) * g + b",
        _source_of(layernorm.layernorm_forward), _DOC["layernorm"], {"ya": ha, "g": gt, "b": btn}, {"yn": hn},
        {"ya": "PC", "g": "C", "b": "C", "yn": "PC"})
    word = E["embeddings.word_embeddings.weight"]
    logits, c_dec = linear.linear_forward(hn, word, P["cls.predictions.bias"])  # (P, V)
    rec("cls.predictions.decoder", "linear",
        "logits = yn E^T + bias  (the decoder's weight IS the word embedding matrix E: tied)",
        _source_of(linear.linear_forward), _DOC["tied_weights"],
        {"yn": hn, "E": word, "bias": P["cls.predictions.bias"]}, {"logits": logits},
        {"yn": "PC", "E": "VC", "bias": "V", "logits": "PV"})
    mlm_labels = labels.reshape(-1)[positions]  # (P,)
    mlm_loss, c_mlm = cross_entropy.cross_entropy_forward(logits, mlm_labels)
    rec("cls.predictions.loss", "cross_entropy", "mlm_loss = mean_p -log softmax(logits[p])[label_p]",
        _source_of(cross_entropy.cross_entropy_forward), _DOC["cross_entropy"],
        {"logits": logits, "labels": mlm_labels}, {"mlm_loss": np.asarray(mlm_loss)},
        {"logits": "PV", "labels": "P", "mlm_loss": ""})
    nsp_loss = c_nspl = None
    wn, bn = P["cls.seq_relationship.weight"], P["cls.seq_relationship.bias"]
    nsp_logits, c_nsp = linear.linear_forward(pooled, wn, bn)  # (B, 2)
    rec("cls.seq_relationship", "linear", "nsp = pooled Wn^T + bn  (2 classes: 0 B follows A, 1 B is random)",
        _source_of(linear.linear_forward), _DOC["linear"], {"pooled": pooled, "Wn": wn, "bn": bn},
        {"nsp": nsp_logits}, {"pooled": "BC", "Wn": "KC", "bn": "K", "nsp": "BK"})
    if nsp_label is not None:
        nsp_loss, c_nspl = cross_entropy.cross_entropy_forward(nsp_logits, nsp_label)
        rec("cls.seq_relationship.loss", "cross_entropy", "nsp_loss = mean_b -log softmax(nsp[b])[label_b]",
            _source_of(cross_entropy.cross_entropy_forward), _DOC["cross_entropy"],
            {"nsp": nsp_logits, "labels": nsp_label}, {"nsp_loss": np.asarray(nsp_loss)},
            {"nsp": "BK", "labels": "B", "nsp_loss": ""})
    loss = mlm_loss + (nsp_loss if nsp_loss is not None else 0)
    rec("loss", "add", "loss = mlm_loss + nsp_loss" if nsp_loss is not None else "loss = mlm_loss",
        _source_line(bert_py, r"loss = sum\(losses\)", BertForPreTraining.forward), _DOC["cross_entropy"],
        {"mlm_loss": np.asarray(mlm_loss), **({} if nsp_loss is None else {"nsp_loss": np.asarray(nsp_loss)})},
        {"loss": np.asarray(loss)}, {"mlm_loss": "", "nsp_loss": "", "loss": ""})

    # ================================================================== backward
    rec.phase = "backward"
    one = model.dtype.type(1.0)
    dx = np.zeros_like(hidden)  # (B, T, C): d loss / d the encoder's output, filled by both heads
    rec("loss", "add", "d loss / d mlm_loss = 1, d loss / d nsp_loss = 1  (a sum passes the gradient on)",
        _source_line(bert_py, r"def backward\(self, dmlm", BertForPreTraining.backward), _DOC["cross_entropy"], {"dloss": np.asarray(one)},
        {"dmlm_loss": np.asarray(one), **({} if nsp_loss is None else {"dnsp_loss": np.asarray(one)})},
        {"dloss": "", "dmlm_loss": "", "dnsp_loss": ""})
    dpooled = None
    if nsp_loss is not None:
        dnsp = cross_entropy.cross_entropy_backward(one, c_nspl)  # (B, 2)
        rec("cls.seq_relationship.loss", "cross_entropy", "dnsp[b] = (softmax(nsp[b]) - onehot(label_b)) / B",
            _source_of(cross_entropy.cross_entropy_backward), _DOC["cross_entropy"], {"dnsp_loss": np.asarray(one)},
            {"dnsp": dnsp}, {"dnsp_loss": "", "dnsp": "BK"})
        dpooled, dwn, dbn = linear.linear_backward(dnsp, c_nsp)
        rec("cls.seq_relationship", "linear", "dpooled = dnsp Wn;  dWn = dnsp^T pooled;  dbn = sum_b dnsp[b]",
            _source_of(linear.linear_backward), _DOC["linear"], {"dnsp": dnsp},
            {"dpooled": dpooled, "dWn": dwn, "dbn": dbn}, {"dnsp": "BK", "dpooled": "BC", "dWn": "KC", "dbn": "K"},
            grads={"cls.seq_relationship.weight": dwn, "cls.seq_relationship.bias": dbn})
    dlogits = cross_entropy.cross_entropy_backward(one, c_mlm)  # (P, V)
    rec("cls.predictions.loss", "cross_entropy", "dlogits[p] = (softmax(logits[p]) - onehot(label_p)) / P",
        _source_of(cross_entropy.cross_entropy_backward), _DOC["cross_entropy"], {"dmlm_loss": np.asarray(one)},
        {"dlogits": dlogits}, {"dmlm_loss": "", "dlogits": "PV"})
    dhn, dword_dec, dbias = linear.linear_backward(dlogits, c_dec)
    rec("cls.predictions.decoder", "linear",
        "dyn = dlogits E;  dE (decoder's share) = dlogits^T yn;  dbias = sum_p dlogits[p]",
        _source_of(linear.linear_backward), _DOC["tied_weights"], {"dlogits": dlogits},
        {"dyn": dhn, "dE": dword_dec, "dbias": dbias}, {"dlogits": "PV", "dyn": "PC", "dE": "VC", "dbias": "V"},
        grads={"cls.predictions.bias": dbias})
    dha, dgt, dbtn = layernorm.layernorm_backward(dhn, c_tln)
    rec("cls.predictions.transform.LayerNorm", "layernorm",
        "dya = rstd * (dn - mean(dn) - n * mean(dn * n)),  dn = dyn * g;  dg = sum dyn * n;  db = sum dyn",
        _source_of(layernorm.layernorm_backward), _DOC["layernorm"], {"dyn": dhn},
        {"dya": dha, "dg": dgt, "db": dbtn}, {"dyn": "PC", "dya": "PC", "dg": "C", "db": "C"},
        grads={"cls.predictions.transform.LayerNorm.weight": dgt, "cls.predictions.transform.LayerNorm.bias": dbtn})
    dht = act_backward(dha, c_ta)
    rec("cls.predictions.transform." + act, "activation", f"dy = dya * {act}'(y)", _source_of(act_backward),
        _DOC["gelu"], {"dya": dha, "y": ht}, {"dy": dht}, {"dya": "PC", "y": "PC", "dy": "PC"})
    dhm, dwt, dbt = linear.linear_backward(dht, c_td)
    rec("cls.predictions.transform.dense", "linear", "dxm = dy Wt;  dWt = dy^T xm;  dbt = sum_p dy[p]",
        _source_of(linear.linear_backward), _DOC["linear"], {"dy": dht}, {"dxm": dhm, "dWt": dwt, "dbt": dbt},
        {"dy": "PC", "dxm": "PC", "dWt": "CC", "dbt": "C"},
        grads={"cls.predictions.transform.dense.weight": dwt, "cls.predictions.transform.dense.bias": dbt})
    dx.reshape(B * T, C)[positions] += dhm  # the positions are distinct
    rec("cls.predictions.gather", "scatter",
        "dx[b_p, t_p] += dxm[p]  (the gather's backward: every other row of dx gets nothing from the MLM head)",
        _source_line(bert_py, r"dlogits = K.cross_entropy_backward", fallback=BertForPreTraining.backward),
        _DOC["cross_entropy"],
        {"dxm": dhm}, {"dx": dx.copy()}, {"dxm": "PC", "dx": "BTC"})
    if dpooled is not None:
        dhp = tanh.tanh_backward(dpooled, c_pt)  # (B, C)
        rec("bert.pooler.tanh", "tanh", "dz = dpooled * (1 - pooled^2)", _source_of(tanh.tanh_backward),
            _DOC["tanh_pooler"], {"dpooled": dpooled, "pooled": pooled}, {"dz": dhp},
            {"dpooled": "BC", "pooled": "BC", "dz": "BC"})
        dcls, dwp, dbp = linear.linear_backward(dhp, c_pd)
        rec("bert.pooler.dense", "linear", "dxc = dz Wp;  dWp = dz^T xc;  dbp = sum_b dz[b]",
            _source_of(linear.linear_backward), _DOC["linear"], {"dz": dhp}, {"dxc": dcls, "dWp": dwp, "dbp": dbp},
            {"dz": "BC", "dxc": "BC", "dWp": "CC", "dbp": "C"},
            grads={"bert.pooler.dense.weight": dwp, "bert.pooler.dense.bias": dbp})
        dx[:, 0] += dcls
        rec("bert.pooler.cls_slice", "scatter", "dx[b, 0] += dxc[b]  (the slice's backward: only [CLS] rows)",
            _source_line(bert_py, r"dx\[:, 0\] \+= self.pooler_backward", BertModel.backward), _DOC["tanh_pooler"], {"dxc": dcls}, {"dx": dx.copy()},
            {"dxc": "BC", "dx": "BTC"})

    for i in reversed(range(c.num_hidden_layers)):
        pre, name, lc = f"encoder.layer.{i}.", f"bert.encoder.layer.{i}.", layer_caches[i]
        dr2, dg2, db2n = layernorm.layernorm_backward(dx, lc["ln2"])
        rec(name + "output.LayerNorm", "layernorm", "dr = rstd * (dn - mean(dn) - n * mean(dn * n)),  dn = dx * g",
            _source_of(layernorm.layernorm_backward), _DOC["layernorm"], {"dx": dx}, {"dr": dr2, "dg": dg2, "db": db2n},
            {"dx": "BTC", "dr": "BTC", "dg": "C", "db": "C"},
            grads={name + "output.LayerNorm.weight": dg2, name + "output.LayerNorm.bias": db2n})
        dg, dw2, dbb2 = linear.linear_backward(dr2, lc["w2"])
        rec(name + "output.dense", "linear", "dg = dr W2;  dW2 = dr^T g;  db2 = sum dr  (df = dr: the residual's sum)",
            _source_of(linear.linear_backward), _DOC["linear"], {"df": dr2}, {"dg": dg, "dW2": dw2, "db2": dbb2},
            {"df": "BTC", "dg": "BTF", "dW2": "CF", "db2": "C"},
            grads={name + "output.dense.weight": dw2, name + "output.dense.bias": dbb2})
        du = act_backward(dg, lc["act"])
        rec(name + "intermediate." + act, "activation", f"du = dg * {act}'(u)", _source_of(act_backward), _DOC["gelu"],
            {"dg": dg}, {"du": du}, {"dg": "BTF", "du": "BTF"})
        dh_ffn, dw1, dbb1 = linear.linear_backward(du, lc["w1"])
        rec(name + "intermediate.dense", "linear", "dh (FFN path) = du W1;  dW1 = du^T h;  db1 = sum du",
            _source_of(linear.linear_backward), _DOC["linear"], {"du": du}, {"dh_ffn": dh_ffn, "dW1": dw1, "db1": dbb1},
            {"du": "BTF", "dh_ffn": "BTC", "dW1": "FC", "db1": "F"},
            grads={name + "intermediate.dense.weight": dw1, name + "intermediate.dense.bias": dbb1})
        dh = dh_ffn + dr2
        rec(name + "output.residual", "add", "dh = dh_ffn + dr  (h went into r = f + h twice: through the FFN and straight)",
            _source_line("layers/encoder_layer.py", r"dh = dh \+ dsum2", encoder_layer_backward), _DOC["tied_weights"],
            {"dh_ffn": dh_ffn, "dr": dr2}, {"dh": dh}, {"dh_ffn": "BTC", "dr": "BTC", "dh": "BTC"})
        dr1, dg1, db1n = layernorm.layernorm_backward(dh, lc["ln1"])
        rec(name + "attention.output.LayerNorm", "layernorm", "dr = rstd * (dn - mean(dn) - n * mean(dn * n)),  dn = dh * g",
            _source_of(layernorm.layernorm_backward), _DOC["layernorm"], {"dh": dh}, {"dr": dr1, "dg": dg1, "db": db1n},
            {"dh": "BTC", "dr": "BTC", "dg": "C", "db": "C"},
            grads={name + "attention.output.LayerNorm.weight": dg1, name + "attention.output.LayerNorm.bias": db1n})
        dmerged, dwo, dbo = linear.linear_backward(dr1, lc["output"])
        rec(name + "attention.output.dense", "linear", "dc = dr Wo;  dWo = dr^T c;  dbo = sum dr  (da = dr)",
            _source_of(linear.linear_backward), _DOC["linear"], {"da": dr1}, {"dc": dmerged, "dWo": dwo, "dbo": dbo},
            {"da": "BTC", "dc": "BTC", "dWo": "CC", "dbo": "C"},
            grads={name + "attention.output.dense.weight": dwo, name + "attention.output.dense.bias": dbo})
        dctx = split_heads(dmerged, A)
        rec(name + "attention.self.merge_heads", "reshape", "dctx = split_heads(dc)  (a permutation's backward is its inverse)",
            _source_of(split_heads), _DOC["attention"], {"dc": dmerged}, {"dctx": dctx}, {"dc": "BTC", "dctx": "BATD"})
        dprobs = dctx @ lc["vh"].transpose(0, 1, 3, 2)  # (B, A, T, T)
        dvh = lc["probs"].transpose(0, 1, 3, 2) @ dctx  # (B, A, T, D)
        rec(name + "attention.self.context", "matmul", "dP = dctx vh^T;  dvh = P^T dctx",
            _source_line("layers/attention.py", r"ddropped = dctx @ v", sdpa_backward), _DOC["attention"], {"dctx": dctx},
            {"dP": dprobs, "dvh": dvh}, {"dctx": "BATD", "dP": "BATT", "dvh": "BATD"})
        dscores = softmax.softmax_backward(dprobs, lc["probs"])  # (B, A, T, T)
        rec(name + "attention.self.softmax", "softmax",
            "dS[b, a, i, j] = P[i, j] * (dP[i, j] - sum_j' dP[i, j'] P[i, j'])  (each row on its own)",
            _source_of(softmax.softmax_backward), _DOC["softmax"], {"dP": dprobs, "P": lc["probs"]}, {"dS": dscores},
            {"dP": "BATT", "P": "BATT", "dS": "BATT"})
        dscaled = dscores * lc["qh"].dtype.type(lc["scale"])
        dqh = dscaled @ lc["kh"]  # (B, A, T, D)
        dkh = dscaled.transpose(0, 1, 3, 2) @ lc["qh"]  # (B, A, T, D)
        rec(name + "attention.self.scores", "matmul", "dqh = (dS / sqrt(D)) kh;  dkh = (dS / sqrt(D))^T qh",
            _source_line("layers/attention.py", r"dq = dscores @ k", sdpa_backward), _DOC["attention"], {"dS": dscores},
            {"dqh": dqh, "dkh": dkh}, {"dS": "BATT", "dqh": "BATD", "dkh": "BATD"})
        dq, dk, dv = merge_heads(dqh), merge_heads(dkh), merge_heads(dvh)  # (B, T, C) each
        rec(name + "attention.self.split_heads", "reshape", "dq, dk, dv = merge_heads(dqh), merge_heads(dkh), merge_heads(dvh)",
            _source_of(merge_heads), _DOC["attention"], {"dqh": dqh, "dkh": dkh, "dvh": dvh}, {"dq": dq, "dk": dk, "dv": dv},
            {"dqh": "BATD", "dkh": "BATD", "dvh": "BATD", "dq": "BTC", "dk": "BTC", "dv": "BTC"})
        dx_paths = {}
        for short, letter, d in (("query", "q", dq), ("key", "k", dk), ("value", "v", dv)):
            dxp, dw, db = linear.linear_backward(d, lc[short])
            dx_paths[short] = dxp
            rec(name + f"attention.self.{short}", "linear",
                f"dx ({short} path) = d{letter} W{letter};  dW{letter} = d{letter}^T x;  db{letter} = sum d{letter}",
                _source_of(linear.linear_backward), _DOC["linear"], {f"d{letter}": d},
                {f"dx_{letter}": dxp, f"dW{letter}": dw, f"db{letter}": db},
                {f"d{letter}": "BTC", f"dx_{letter}": "BTC", f"dW{letter}": "CC", f"db{letter}": "C"},
                grads={name + f"attention.self.{short}.weight": dw, name + f"attention.self.{short}.bias": db})
        dx = dx_paths["query"] + dx_paths["key"] + dx_paths["value"] + dr1
        rec(name + "attention.output.residual", "add",
            "dx = dx_q + dx_k + dx_v + dr  (x fed the three projections and the residual: four paths add)",
            _source_line("layers/encoder_layer.py", r"dx = dx \+ dsum1", encoder_layer_backward), _DOC["tied_weights"],
            {"dx_q": dx_paths["query"], "dx_k": dx_paths["key"], "dx_v": dx_paths["value"], "dr": dr1}, {"dx": dx},
            {"dx_q": "BTC", "dx_k": "BTC", "dx_v": "BTC", "dr": "BTC", "dx": "BTC"})

    de, dge, dbe = layernorm.layernorm_backward(dx, c_eln)
    rec("bert.embeddings.LayerNorm", "layernorm", "de = rstd * (dn - mean(dn) - n * mean(dn * n)),  dn = dx * g",
        _source_of(layernorm.layernorm_backward), _DOC["layernorm"], {"dx": dx}, {"de": de, "dg": dge, "db": dbe},
        {"dx": "BTC", "de": "BTC", "dg": "C", "db": "C"},
        grads={"bert.embeddings.LayerNorm.weight": dge, "bert.embeddings.LayerNorm.bias": dbe})
    dpe = de.sum(axis=0, keepdims=True)  # (1, T, C)
    rec("bert.embeddings.sum", "add", "dwe = de;  dte = de;  dpe = sum_b de[b]  (pe was broadcast over the batch)",
        _source_line(bert_py, r"demb.sum\(axis=0", BertModel.backward), _DOC["embedding"], {"de": de},
        {"dwe": de, "dte": de, "dpe": dpe}, {"de": "BTC", "dwe": "BTC", "dte": "BTC", "dpe": "BTC"})
    dpos = embedding.embedding_backward(dpe, c_pe)
    rec("bert.embeddings.position_embeddings", "scatter", "dPos[t] += dpe[0, t]", _source_of(embedding.embedding_backward),
        _DOC["embedding"], {"dpe": dpe}, {"dPos": dpos[:T]}, {"dpe": "BTC", "dPos": "TC"},
        grads={"bert.embeddings.position_embeddings.weight": dpos})
    dseg = embedding.embedding_backward(de, c_te)
    rec("bert.embeddings.token_type_embeddings", "scatter", "dS[segment[b, t]] += de[b, t]",
        _source_of(embedding.embedding_backward), _DOC["embedding"], {"dte": de}, {"dS": dseg}, {"dte": "BTC", "dS": "GC"},
        grads={"bert.embeddings.token_type_embeddings.weight": dseg})
    dword_lookup = embedding.embedding_backward(de, c_we, c.pad_token_id)
    rec("bert.embeddings.word_embeddings", "scatter",
        "dE (lookup's share)[ids[b, t]] += de[b, t]  (a repeated id adds; the [PAD] row stays 0)",
        _source_of(embedding.embedding_backward), _DOC["embedding"], {"dwe": de}, {"dE": dword_lookup},
        {"dwe": "BTC", "dE": "VC"})
    dword = dword_dec + dword_lookup
    rec("bert.embeddings.word_embeddings.weight", "add",
        "dE = dE (decoder's share) + dE (lookup's share)  (E was used twice: the tied weight's gradients add)",
        _source_line(bert_py, r"owner._acc\(name, dword\)", BertForPreTraining.backward), _DOC["tied_weights"],
        {"dE_decoder": dword_dec, "dE_lookup": dword_lookup}, {"dE": dword},
        {"dE_decoder": "VC", "dE_lookup": "VC", "dE": "VC"}, grads={"bert.embeddings.word_embeddings.weight": dword})

    tokens = tokens if tokens is not None else [[str(int(i)) for i in row] for row in ids]
    return StepThrough(rec.steps, (float(loss), float(mlm_loss), None if nsp_loss is None else float(nsp_loss)),
                       tokens, words, sentence, type(model).__name__)
