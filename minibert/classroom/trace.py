"""Step through BERT one operation at a time: every kernel the model ran, in order, forward then backward.

    steps = minibert.trace(model, input_ids, attention_mask=mask, labels=labels, next_sentence_label=nsp)
    step = next(steps)                      # the first operation: a Step (name, shapes, arrays, statistics)
    step = steps.next_where("softmax")      # run on to the next step whose name holds "softmax"
    steps["bert.encoder.layer.0.attention.sdpa.softmax"].out      # (B, A, T, T): the probabilities it made
    print(steps.table())                    # the whole trace, one line per operation

How it records, and why the numbers are the model's own: for the duration of the trace the NumPy
references run (``minibert.set_backend("numpy")``: the numba twins are fused, so their insides cannot be
watched), and every layer function is wrapped by a recorder: the ones the model looks up in
``backend.ops`` (depth 0) and the ones those call inside ``minibert/layers`` (depth 1, 2: the softmax
inside attention).  The recorder copies each call's array arguments and results as they pass, so a step
holds the arrays the model used, not a recomputation; afterwards the backend the caller had is restored.
The forward and backward run once, eagerly, when ``trace`` is called; the ``Trace`` then hands out the
steps one by one (an iterator: ``next(steps)``, ``for step in steps``).

Names.  An operation that takes parameters is named after them (``bert.encoder.layer.0.attention.self.query``
is the linear layer whose weight is ``bert.encoder.layer.0.attention.self.query.weight``; the tied decoder
is ``cls.predictions.decoder``, transformers' alias); one without parameters is named after the
parametrised operation that produced its input (``...intermediate.dense.gelu``), else after the operation
it runs inside (``...attention.sdpa.softmax``).  A backward step has the name of the forward step whose
cache it received, so the two halves of the table line up.

The model's gradients are zeroed first, so afterwards ``model.grads`` holds exactly this batch's gradient,
and for every parameter it equals the sum of what the depth-0 backward steps gave it
(``Trace.param_grad``): twice for the tied word embedding (the decoder and the lookup).

Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``A`` heads, ``D`` head size, ``V`` vocab,
``P`` masked (predicted) positions.
"""
import functools
import inspect
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .. import backend
from ..layers.cross_entropy import IGNORE_INDEX

__all__ = ["trace", "Trace", "Step", "sentence_batch", "untrained_tiny"]

# helpers the layers call besides their forward/backward pairs; recorded too (they change shapes)
_HELPERS = ("split_heads", "merge_heads", "attention_mask_to_additive")


def _short(op):
    """``softmax_forward`` -> ``softmax``; ``split_heads`` stays."""
    for suffix in ("_forward", "_backward"):
        if op.endswith(suffix):
            return op[:-len(suffix)]
    return op


def _copy(value):
    """A copy of an array argument or result (later code may change the original in place)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.generic):
        return np.asarray(value).copy()
    return value


def _shape(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return tuple(np.shape(value))
    return None


def _fmt_shape(shape):
    return "()" if shape == () else "(" + ", ".join(str(s) for s in shape) + ")"


@dataclass(eq=False)
class Step:
    """One operation of the trace.

    ``inputs``  {argument name: the array it received (a copy), or a number}; a parameter is the
                parameter array itself (not a copy: a trace does not change parameters)
    ``outputs`` {name: array (a copy)}: a forward's ``out`` (its cache is ``cache``); a backward's
                gradients, named after the forward's inputs (``dx``, ``dw``, ``db``...)
    ``params``  forward: {argument name: parameter name} (``{"w": "bert.pooler.dense.weight", ...}``)
    ``grads``   backward: {parameter name: the gradient this operation produced for it (a copy)}
    ``depth``   0 for an operation the model called, 1 and more for one inside it; ``parent`` its index
    ``forward`` for a backward step, the index of the forward step whose cache it received
    """
    index: int
    phase: str
    name: str
    op: str
    depth: int
    parent: Optional[int]
    inputs: dict
    outputs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    grads: dict = field(default_factory=dict)
    cache: object = None
    forward: Optional[int] = None

    @property
    def out(self):
        """The main result: the forward's output, or the backward's first gradient (None if none)."""
        return next(iter(self.outputs.values()), None)

    @property
    def x(self):
        """The main input: the first array argument (a backward's upstream gradient ``dout``)."""
        return next((v for v in self.inputs.values() if isinstance(v, np.ndarray)), None)

    def stats(self):
        """{mean, std, min, max} of ``out`` (float64), or None for a result that is not a number array."""
        a = self.out
        if a is None or np.size(a) == 0 or np.asarray(a).dtype.kind not in "biuf":
            return None
        a = np.asarray(a, dtype=np.float64)
        scale = float(np.abs(a).max()) or 1.0  # the additive mask holds finfo.min: a plain sum would overflow
        return dict(mean=float((a / scale).mean()) * scale, std=float((a / scale).std()) * scale,
                    min=float(a.min()), max=float(a.max()))

    @property
    def grad_norm(self):
        """Backward: the L2 norm of the gradient this step passes on (``out``); forward: None."""
        if self.phase != "backward" or self.out is None:
            return None
        return float(np.linalg.norm(np.asarray(self.out, dtype=np.float64)))

    def values(self, n=4):
        """The first ``n`` entries of ``out``, flattened."""
        a = self.out
        return [] if a is None else np.asarray(a).ravel()[:n].tolist()

    def row(self, values=3):
        """One line of the table: index, name (indented by depth), op, shapes, statistics, first values."""
        name = "  " * self.depth + self.name
        shapes = f"{_fmt_shape(_shape(self.x)) if self.x is not None else '-'} -> " \
                 f"{_fmt_shape(_shape(self.out)) if _shape(self.out) is not None else '-'}"
        s = self.stats()
        stats = "" if s is None else f"{s['mean']:+9.3g} {s['std']:9.3g} {s['min']:+9.3g} {s['max']:+9.3g}"
        line = f"{self.index:4d} {name:<58.58s} {_short(self.op):<14.14s} {shapes:<34s} {stats:<39s}"
        if self.phase == "backward":
            line += f" |d|={self.grad_norm:<9.3g}"
        if values:
            line += " [" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                     for v in self.values(values)) + "]"
        for pname, g in self.grads.items():
            line += f"\n{'':5s}{'  ' * self.depth}  -> grad {pname} {_fmt_shape(g.shape)} |g|={np.linalg.norm(g):.4g}"
        return line

    def __repr__(self):
        lines = [f"Step {self.index} ({self.phase}, depth {self.depth}): {self.name}  [{self.op}]"]
        for k, v in self.inputs.items():
            if isinstance(v, np.ndarray):
                tag = f"  = {self.params[k]}" if k in self.params else ""
                lines.append(f"  in  {k:<10s} {_fmt_shape(v.shape)} {v.dtype}{tag}")
            elif v is not None and not isinstance(v, (tuple, list)) and k != "cache":
                lines.append(f"  in  {k:<10s} {v!r}")
        for k, v in self.outputs.items():
            lines.append(f"  out {k:<10s} {_fmt_shape(_shape(v))} {np.asarray(v).dtype}")
        s = self.stats()
        if s:
            lines.append("  out: mean {mean:+.4g}  std {std:.4g}  min {min:+.4g}  max {max:+.4g}".format(**s)
                         + f"  first values {[round(v, 4) if isinstance(v, float) else v for v in self.values()]}")
        if self.phase == "backward":
            lines.append(f"  |gradient passed on| = {self.grad_norm:.4g}")
        for pname, g in self.grads.items():
            lines.append(f"  grad of {pname} {_fmt_shape(g.shape)}: |g| = {np.linalg.norm(g):.4g}")
        return "\n".join(lines)


class StepList:
    """What a trace and a step-through share: ``steps`` in order (each with ``name`` and ``phase``), looked up
    as ``steps[i]``, ``steps["name"]`` (the forward step of that name), ``steps["name", "backward"]``,
    ``steps.find(text)``, and the ``forward`` and ``backward`` halves."""

    steps: list

    def __len__(self):
        return len(self.steps)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.steps[key]
        name, phase = key if isinstance(key, tuple) else (key, "forward")
        for step in self.steps:
            if step.name == name and step.phase == phase:
                return step
        close = sorted({s.name for s in self.steps if name.split(".")[-1] in s.name})[:5]
        raise KeyError(f"no {phase} step named {name!r}" + (f"; similar: {close}" if close else ""))

    def find(self, text, phase=None):
        """Every step whose name contains ``text`` (of ``phase`` if given), in order."""
        return [s for s in self.steps if text in s.name and (phase is None or s.phase == phase)]

    @property
    def forward(self):
        return [s for s in self.steps if s.phase == "forward"]

    @property
    def backward(self):
        return [s for s in self.steps if s.phase == "backward"]


class Trace(StepList):
    """Every operation of one forward and backward pass, in order: an iterator of ``Step``.

    ``next(trace)`` the next step; ``trace.next_where("softmax")`` the next whose name contains a text;
    ``trace[i]`` / ``trace["exact.name"]`` (the forward step of that name; ``trace["name", "backward"]``
    the backward one); ``trace.find(text)`` every step whose name contains it; ``trace.table()`` the whole
    trace as text.  ``output`` is what the model returned; ``tokens`` the word pieces (when known).
    """

    def __init__(self, steps, output, model, tokens=None):
        self.steps = steps
        self.output = output
        self.model_name = type(model).__name__
        self.tokens = tokens
        self._next = 0

    # -- the iterator -----------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self):
        if self._next >= len(self.steps):
            raise StopIteration
        step = self.steps[self._next]
        self._next += 1
        return step

    def next_where(self, text, phase=None):
        """Advance to the next step whose name contains ``text`` (and of ``phase``, if given); return it."""
        for step in self:
            if text in step.name and (phase is None or step.phase == phase):
                return step
        raise StopIteration(f"no step after this point has {text!r} in its name"
                            + (f" in the {phase}" if phase else ""))

    def reset(self):
        """Start again from the first step."""
        self._next = 0
        return self

    # -- looking things up (StepList) ----------------------------------------------------------
    def param_grad(self, name):
        """The gradient of parameter ``name``: the sum of what the depth-0 backward steps produced for it
        (the inner steps' gradients are part of their parent's).  Equals ``model.grads`` after the trace."""
        parts = [s.grads[name] for s in self.steps if s.depth == 0 and name in s.grads]
        if not parts:
            raise KeyError(f"no backward step produced a gradient for {name!r}")
        return functools.reduce(np.add, parts)

    def table(self, depth=None, values=3, phase=None):
        """The trace as text, one line per step (``depth=0``: only the model's own calls)."""
        head = (f"{'#':>4s} {'name':<58s} {'op':<14s} {'input -> output shape':<34s} "
                f"{'mean':>9s} {'std':>9s} {'min':>9s} {'max':>9s}")
        lines = []
        for ph in ("forward", "backward"):
            if phase not in (None, ph):
                continue
            lines += ["", f"{ph.upper()}" + ("  (statistics of the gradient; |d| its norm)" if ph == "backward" else ""),
                      head]
            lines += [s.row(values) for s in self.steps if s.phase == ph and (depth is None or s.depth <= depth)]
        return "\n".join(lines[1:])

    def __repr__(self):
        n_f, n_b = len(self.forward), len(self.backward)
        loss = getattr(self.output, "loss", None)
        loss = "" if loss is None else f", loss={float(loss):.4f}"
        nxt = "done" if self._next >= len(self.steps) else f"{self._next} ({self.steps[self._next].name})"
        return (f"Trace({self.model_name}: {n_f} forward + {n_b} backward steps{loss}; next step {nxt}. "
                "next(trace), trace.next_where(text), trace.table())")


class _Recorder:
    """Wraps the layer functions while a trace runs; builds the list of ``Step``."""

    def __init__(self, model):
        self.steps, self.stack = [], []
        self.phase = "forward"
        self.param_of = {}   # id(array) -> (array, real name, alias name or None)
        for name, p, _ in model.named_parameters():
            self.param_of[id(p)] = (p, name, None)
        for alias, real in model._tied_aliases().items():
            p = model.state_dict()[real]
            if id(p) in self.param_of:
                self.param_of[id(p)] = (p, real, alias)
        self.producer = {}   # id(array) -> (array, step) that produced it (latest wins)
        self.cache_owner = {}  # id(cache) -> (cache, forward step)
        self.no_cache = {}   # (context, short op) -> [forward step] whose cache is None (dropout when off)
        self.prefix = "bert." if hasattr(model, "bert") else ""
        self.wrappers = {}

    # -- naming -----------------------------------------------------------------------------------
    def _context(self):
        """The name of the enclosing step, else the model part running (``bert.encoder.layer.0``)."""
        if self.stack:
            return self.stack[-1].name
        scope = backend.scope.rsplit(" ", 1)[0] if backend.scope else "model"
        return ("" if scope.startswith("pretraining") or scope.startswith("head") else self.prefix) + \
            scope.replace(" ", "_")

    def _param_name(self, params):
        """The module the parameters belong to: their common dotted prefix (transformers' aliases when
        that is longer: the tied decoder is ``cls.predictions.decoder``)."""
        def common(names):
            parts = [n.split(".")[:-1] for n in names]
            out = []
            for level in zip(*parts):
                if len(set(level)) > 1:
                    break
                out.append(level[0])
            return out
        real = common([r for r, _ in params])
        alias = common([a or r for r, a in params])
        parts = alias if len(alias) > len(real) else real
        return ".".join(parts), parts

    def _forward_name(self, op, args, params):
        short = _short(op)
        if op == "attention_mask_to_additive":
            return self.prefix + "extended_attention_mask"
        if params:
            name, parts = self._param_name(list(params.values()))
            if not parts or parts[-1].isdigit():  # a whole layer's parameters (the FFN): say which op
                name = (name + "." if name else "") + short
            return name
        for v in args.values():
            hit = self.producer.get(id(v)) if isinstance(v, np.ndarray) else None
            if hit is not None and hit[0] is v and hit[1].params:
                return f"{hit[1].name}.{short}"
        return f"{self._context()}.{short}"

    # -- recording --------------------------------------------------------------------------------
    def wrap(self, fn):
        if fn in self.wrappers:
            return self.wrappers[fn]
        op = fn.__name__
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def recorded(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            step = self._open(op, dict(bound.arguments))
            self.stack.append(step)
            try:
                result = fn(*args, **kwargs)
            finally:
                self.stack.pop()
            self._close(step, result)
            return result

        self.wrappers[fn] = recorded
        return recorded

    def _open(self, op, args):
        backward = op.endswith("_backward")
        parent = self.stack[-1].index if self.stack else None
        fwd, params = None, {}
        if backward:
            cache = args.get("cache")
            hit = self.cache_owner.get(id(cache)) if cache is not None else None
            if hit is not None and hit[0] is cache:
                fwd = hit[1]
                name = fwd.name
            else:
                pending = self.no_cache.get((self._context(), _short(op)))
                fwd = pending.pop() if pending else None
                name = fwd.name if fwd else f"{self._context()}.{_short(op)}"
        else:
            for k, v in args.items():
                hit = self.param_of.get(id(v)) if isinstance(v, np.ndarray) else None
                if hit is not None and hit[0] is v:
                    params[k] = (hit[1], hit[2])
            name = self._forward_name(op, args, params)
        inputs = {}
        for k, v in args.items():
            if k == "cache" or k == "rng":
                continue
            is_param = isinstance(v, np.ndarray) and k in params
            inputs[k] = v if is_param else _copy(v)
        step = Step(index=len(self.steps), phase=self.phase, name=name, op=op, depth=len(self.stack),
                    parent=parent, inputs=inputs, params={k: real for k, (real, _) in params.items()},
                    forward=None if fwd is None else fwd.index)
        step._args = args  # the live arguments, until the step closes (for the producer map)
        self.steps.append(step)
        return step

    def _close(self, step, result):
        args = step.__dict__.pop("_args")
        if step.phase == "forward" and step.op.endswith("_forward"):
            out, cache = result
            step.outputs = {"out": _copy(out)}
            step.cache = cache
            if cache is None:
                self.no_cache.setdefault((self._context(), _short(step.op)), []).append(step)
            else:
                self.cache_owner[id(cache)] = (cache, step)
            if isinstance(out, np.ndarray):
                self.producer[id(out)] = (out, step)
        elif step.op.endswith("_backward"):
            grads = result if isinstance(result, tuple) else (result,)
            fwd = self.steps[step.forward] if step.forward is not None else None
            if fwd is not None:  # gradients are named after the forward's float-array inputs, in order
                names = [k for k, v in fwd.inputs.items()
                         if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
            else:
                names = ["x"]
            step.outputs = {"d" + n: _copy(g) for n, g in zip(names, grads)}
            if fwd is not None:
                for n, g in zip(names, grads):
                    if n in fwd.params:
                        step.grads[fwd.params[n]] = step.outputs["d" + n]
        else:  # a helper (split_heads, the additive mask): one array out
            step.outputs = {"out": _copy(result)}
            if isinstance(result, np.ndarray):
                self.producer[id(result)] = (result, step)
        del args


def _layer_modules():
    return [m for name, m in list(sys.modules.items())
            if name.startswith("minibert.layers.") and m is not None]


def trace(model, input_ids, token_type_ids=None, attention_mask=None, tokens=None, **labels):
    """Run ``model`` forward and backward on one batch and record every operation.  -> ``Trace``.

    ``input_ids`` (B, T) [``token_type_ids``, ``attention_mask`` (B, T)] and the model's labels as
    keywords (``BertForPreTraining``: ``labels`` (B, T) with -100 where nothing is predicted, and
    ``next_sentence_label`` (B,); a fine-tuning head: ``labels``): the backward needs a loss.
    ``tokens``: the word pieces, kept on the trace for display.  The model's gradients are zeroed
    first; its mode (train/eval) is the caller's: call ``model.eval()`` for a trace without dropout.
    """
    if not hasattr(model, "backward") or not hasattr(model, "named_parameters") or not hasattr(model, "bert"):
        raise TypeError("trace: model must be a minibert model with a head and a loss (BertForPreTraining, "
                        f"BertForSequenceClassification, ...), got {type(model).__name__}")
    if not any(v is not None for v in labels.values()):
        raise ValueError("trace: pass the labels of the model's loss (for BertForPreTraining: labels and/or "
                         "next_sentence_label): the backward half of the trace starts from the loss")
    rec = _Recorder(model)
    # what to put back: the kernel table itself (a custom backend of the student's own functions, the
    # debug wrappers) and the backend's record of which it is
    saved_ops = dict(vars(backend.ops))
    saved_state = {k: getattr(backend, k) for k in ("_current", "_custom_table") if hasattr(backend, k)}
    patched = []  # (namespace, key, original)
    try:
        backend.set_backend("numpy")
        from ..layers import ACTIVATIONS
        from ..models import bert as bert_module
        op_names = set(vars(backend.ops)) | set(_HELPERS)
        for n, fn in list(vars(backend.ops).items()):
            setattr(backend.ops, n, rec.wrap(fn))
        for module in _layer_modules() + [bert_module]:
            for attr, value in list(vars(module).items()):
                if callable(value) and getattr(value, "__name__", None) in op_names \
                        and getattr(value, "__module__", "").startswith("minibert.layers"):
                    patched.append((vars(module), attr, value))
                    vars(module)[attr] = rec.wrap(value)
        for key, pair in list(ACTIVATIONS.items()):
            patched.append((ACTIVATIONS, key, pair))
            ACTIVATIONS[key] = tuple(rec.wrap(f) for f in pair)
        model.zero_grad()
        output = model(input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask, **labels)
        rec.phase = "backward"
        model.backward()
    finally:
        for namespace, key, value in reversed(patched):
            namespace[key] = value
        backend.ops.__dict__.clear()
        backend.ops.__dict__.update(saved_ops)
        for k, v in saved_state.items():
            setattr(backend, k, v)
    return Trace(rec.steps, output, model, tokens)


# -- a sentence in, a batch out; a model to trace before any training ---------------------------------
def sentence_batch(tokenizer, text, answers=None, text_pair=None, model=None):
    """The batch ``trace`` needs for one text with ``[MASK]`` in it: a dict of ``input_ids``,
    ``token_type_ids``, ``attention_mask`` (1, T), ``labels`` (1, T) (the answer's id at every [MASK],
    -100 elsewhere), ``next_sentence_label`` (1,) = 0 (B follows A), and ``tokens``.

    ``answers``: one word per [MASK] (each must be a single piece of the vocabulary); None takes the
    model's own top guess at each [MASK] (``model`` needed), so the gradient is the one that would make
    the model surer of its guess.  A single text still gets the NSP loss (label 0), so that the pooler
    and the NSP head are in the backward too.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    enc = tokenizer(text, text_pair, return_tensors="np")
    ids = enc["input_ids"]  # (1, T)
    where = np.flatnonzero(ids[0] == tokenizer.mask_token_id)
    if len(where) == 0:
        raise ValueError(f"the text has no [MASK] token: {text!r}; the trace follows the masked-LM loss back "
                         "from a masked position (write [MASK] where a word was)")
    if answers is None:
        if model is None:
            raise ValueError("sentence_batch: pass answers (one word per [MASK]) or the model to take its guess")
        with model.eval_mode():
            logits = model(ids, enc["token_type_ids"], enc["attention_mask"]).prediction_logits  # (1, T, V)
        answer_ids = [int(np.argmax(logits[0, t])) for t in where]
    else:
        answers = [answers] if isinstance(answers, str) else list(answers)
        if len(answers) != len(where):
            raise ValueError(f"the text has {len(where)} [MASK] token(s) but {len(answers)} answer(s) were given: "
                             f"{answers}")
        answer_ids = []
        for word in answers:
            pieces = tokenizer.tokenize(word)
            if len(pieces) != 1 or pieces[0] == tokenizer.unk_token:
                raise ValueError(f"the answer {word!r} is not one piece of the vocabulary (it tokenizes to "
                                 f"{pieces}): choose a word the vocabulary has whole")
            answer_ids.append(tokenizer.vocab[pieces[0]])
    labels = np.full_like(ids, IGNORE_INDEX)
    labels[0, where] = answer_ids
    return dict(input_ids=ids, token_type_ids=enc["token_type_ids"], attention_mask=enc["attention_mask"],
                labels=labels, next_sentence_label=np.zeros(1, dtype=np.int64),
                tokens=tokenizer.convert_ids_to_tokens(ids[0].tolist()))


def untrained_tiny(seed=0, vocab_size=2000, sentences=2500, dtype=np.float32, verbose=False):
    """(BertForPreTraining, BertTokenizer): a freshly initialised BERT-Tiny (``minibert pretrain``'s
    ``tiny`` preset: L=2, C=128, A=4, F=512) and a ``vocab_size``-piece WordPiece vocabulary trained on
    the first ``sentences`` sentences of the bundled corpus (about a second), so a trace runs before any
    training.  The model is in eval mode."""
    from ..data.cpython_docs import load_default_corpus
    from ..data.tokenizer import BertTokenizer
    from ..data.wordpiece import train_wordpiece
    from ..models.bert import BertForPreTraining
    from ..training.pretrain import PretrainConfig
    corpus = load_default_corpus(verbose=verbose)
    texts = [s for doc in corpus.train for s in doc][:sentences]
    with tempfile.TemporaryDirectory(prefix="minibert-trace-") as folder:  # removed on the way out
        path = os.path.join(folder, "vocab.txt")
        train_wordpiece(texts, vocab_size, out_file=path)
        tok = BertTokenizer(path)  # reads the whole vocabulary now: the file may go
    config = PretrainConfig(preset="tiny").model_config(len(tok.vocab))
    return BertForPreTraining(config, seed=seed, dtype=dtype).eval(), tok
