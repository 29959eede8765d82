"""The capstone, "your BERT, your backward": pretrain a tiny BERT on your own layer functions, next to
the reference, and watch the two loss curves.

    from minibert.classroom import capstone
    run = capstone.train_side_by_side(my_module, steps=300)   # or a directory of your exercise files
    run                                  # SideBySide(steps=300, max gap 0.0e+00: the curves coincide)
    run.plot("curves.png")               # both curves on one figure (and their gap)

Both runs are the same training job: one tiny BERT (``CAPSTONE_CONFIG``: L=2, C=32, A=2, F=64, dropout
0.1), the same seed, the same batches of the synthetic corpus's pretraining data (MLM 15% + NSP, made by
``minibert.data.pretraining``), AdamW with BERT's warmup-then-decay schedule and clipping, in float64.
The reference run uses the NumPy references (``minibert.set_backend("numpy")``); the student's run uses
every layer function the student has finished (``encoder_layer_backward``, ``layernorm_backward``, ...:
``load_student``), the references for the rest, and says which is which (``run.which()``).  The student's
functions are used wherever a layer is called: by the model (``minibert.set_backend``), inside the
library's composites (the reference encoder layer calls the student's attention), and inside the
student's own files (their ``encoder_layer.py`` calls their ``attention_backward``, not minibert's).
Both runs go through the library's one training step, ``minibert.training.loop.training_step``.  Dropout masks come from the model's own
generator in the same order, so nothing but the layer functions differs.

**What "coincide" means.**  Code that computes the same numbers as the reference gives the very same
curve, bit for bit; a correct but differently written backward differs by float64 rounding, about 1e-16
per operation, which a few hundred steps grow to ~1e-12 at most.  So the curves coincide when the largest
gap is below ``COINCIDE_TOL = 1e-8`` (four orders of magnitude of room); a wrong gradient (a forgotten
residual, a term of LayerNorm's dx) moves the very first update and the gap is 1e-4 to 1e-1 within tens of
steps.  The grader's check (``minibert exercises check encoder_layer``, the notebook's hidden test) is the
short form: ``CHECK_STEPS`` steps.
"""
import ast
import importlib.util
import inspect
import tempfile
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import backend
from ..config import BertConfig
from ..data.synthetic import synthetic_corpus, synthetic_vocabulary
from ..data.pretraining import create_training_instances, instances_to_arrays
from ..data.tokenizer import SPECIAL_TOKENS, BertTokenizer
from ..models.bert import BertForPreTraining
from ..optim import AdamW
from ..training.loop import training_step

COINCIDE_TOL = 1e-8   # largest |student - reference| loss gap of coinciding curves (see the module docstring)
CHECK_STEPS = 12      # the grader's short form
CAPSTONE_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       max_position_embeddings=32, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


@dataclass
class SideBySide:
    """Two loss curves of the same training job: ``reference`` and ``student`` (``(steps,)`` arrays)."""
    reference: np.ndarray
    student: np.ndarray
    backend_name: str
    yours: list = field(default_factory=list)        # the student's functions the run used
    references: list = field(default_factory=list)   # the course's functions the run took from minibert
    skipped: list = field(default_factory=list)      # the student's files that did not import

    @property
    def gap(self):
        """|student - reference| at every step, ``(steps,)``."""
        return np.abs(self.student - self.reference)

    @property
    def max_gap(self):
        return float(self.gap.max()) if self.gap.size else 0.0

    @property
    def coincide(self):
        """True when the largest gap is below ``COINCIDE_TOL`` (and no loss is NaN)."""
        return bool(np.isfinite(self.student).all()) and self.max_gap < COINCIDE_TOL

    def first_parting(self):
        """The first step whose gap is ``COINCIDE_TOL`` or more (None when the curves coincide)."""
        bad = np.flatnonzero(~(self.gap < COINCIDE_TOL))
        return int(bad[0]) if bad.size else None

    def __repr__(self):
        verdict = ("the curves coincide" if self.coincide else
                   f"the curves part at step {self.first_parting()}")
        return (f"SideBySide(steps={len(self.reference)}, backend={self.backend_name!r}, loss "
                f"{self.reference[0]:.4f} -> {self.reference[-1]:.4f} (reference), "
                f"{self.student[0]:.4f} -> {self.student[-1]:.4f} (yours), max gap {self.max_gap:.1e}: {verdict})")

    def which(self):
        """Which functions were the student's and which minibert's, in words."""
        lines = [f"yours ({len(self.yours)}): {', '.join(self.yours) or 'none'}",
                 f"minibert's, not finished yet ({len(self.references)}): {', '.join(self.references) or 'none'}"]
        if self.skipped:
            lines.append(f"files that did not import (minibert's ran instead): {'; '.join(self.skipped)}")
        return "\n".join(lines)

    def plot(self, path=None):
        """Both curves, and their gap on a log scale; saved to ``path`` if given.  Returns the figure."""
        from ..training.plots import _pyplot
        plt = _pyplot()
        fig, (ax, gap_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
        steps = np.arange(len(self.reference))
        ax.plot(steps, self.reference, label="reference (minibert.layers)", lw=3, alpha=0.5)
        ax.plot(steps, self.student, label=f"yours ({self.backend_name})", lw=1)
        ax.set(xlabel="step", ylabel="training loss (MLM + NSP)", title="your BERT, your backward")
        ax.legend()
        gap_ax.semilogy(steps, np.maximum(self.gap, 1e-18))
        gap_ax.axhline(COINCIDE_TOL, color="red", ls="--", label=f"coincide below {COINCIDE_TOL:.0e}")
        gap_ax.set(xlabel="step", ylabel="|yours - reference|", title="the gap")
        gap_ax.legend()
        fig.tight_layout()
        if path:
            fig.savefig(path, dpi=100)
        return fig


def pretraining_batches(num_batches=8, batch_size=8, max_seq_length=32, seed=0):
    """``num_batches`` pretraining batches (dicts of (B, T) arrays, as ``BertForPreTraining`` takes them)
    from the synthetic corpus, with a word-level vocabulary; and the vocabulary's size."""
    corpus = synthetic_corpus(200, seed=seed, heldout_fraction=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("\n".join(list(SPECIAL_TOKENS) + synthetic_vocabulary()) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer(vocab)
    instances = create_training_instances(corpus.train, tokenizer, max_seq_length=max_seq_length, dupe_factor=1,
                                          max_predictions_per_seq=5, seed=seed)
    need = num_batches * batch_size
    if len(instances) < need:
        raise ValueError(f"pretraining_batches: the corpus gives {len(instances)} instances, fewer than "
                         f"num_batches * batch_size = {need}")
    arrays = instances_to_arrays(instances[:need], tokenizer, max_seq_length)
    batches = [{k: v[i * batch_size:(i + 1) * batch_size] for k, v in arrays.items()} for i in range(num_batches)]
    return batches, tokenizer.vocab_size


def _finished(fn, path):
    """True when ``fn`` is a function written in the file ``path`` whose body is not the student copy's
    ``raise NotImplementedError(...)`` (or ``# YOUR CODE HERE`` stub): the student has done it."""
    code = getattr(fn, "__code__", None)
    if code is None or Path(code.co_filename).resolve() != Path(path).resolve():
        return False
    try:
        node = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return True
    for sub in ast.walk(node):
        if isinstance(sub, ast.Raise) and sub.exc is not None:
            exc = sub.exc.func if isinstance(sub.exc, ast.Call) else sub.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return False
    return True


def load_student(student):
    """The student's finished layer functions as one namespace.  ``student``: a module (or any object with
    the functions as attributes), a ``.py`` file, or a directory of exercise files.

    From files, a function counts when the student has written it (``_finished``: its body no longer
    raises ``NotImplementedError``); a file that does not import is left out, named in ``.__skipped__``.
    Every loaded file's globals that name a finished function of another file are pointed at the
    student's (``encoder_layer.py`` imports ``attention_backward`` from minibert: it then calls the
    student's), so the student's code calls the student's code wherever they wrote it.  ``.__yours__``
    lists the functions taken from the student."""
    if not isinstance(student, (str, Path)):
        return student
    path = Path(student)
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"capstone: no Python file at {path} (a module, a .py file or a directory of them)")
    merged, modules, skipped = types.SimpleNamespace(), [], []
    for f in files:
        spec = importlib.util.spec_from_file_location(f"_minibert_capstone_{f.stem}", f)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 -- an unfinished or broken file is not a crash: the reference runs
            skipped.append(f"{f.name} ({type(e).__name__}: {e})")
            continue
        modules.append(module)
        for name, value in vars(module).items():
            if callable(value) and not name.startswith("_") and _finished(value, f):
                setattr(merged, name, value)
    mine = dict(vars(merged))
    for module in modules:  # the student's files call the student's finished functions, not minibert's
        for name, value in list(vars(module).items()):
            if name in mine and value is not mine[name] and str(getattr(value, "__module__", "")).startswith("minibert"):
                setattr(module, name, mine[name])
    merged.__name__ = path.name
    merged.__yours__ = sorted(mine)
    merged.__skipped__ = skipped
    return merged


@dataclass
class _Settings:
    """What ``training/loop.training_step`` reads of a run's configuration."""
    max_steps: int
    warmup_steps: int
    lr: float
    grad_accum: int = 1
    max_grad_norm: float = 1.0


def _train(steps, batches, vocab_size, seed, lr, warmup):
    """The capstone's tiny BERT trained for ``steps`` steps by the library's one training step
    (``minibert.training.loop.training_step``: forward, backward, clipping, the schedule, AdamW) on
    the current backend; returns the loss curve, ``(steps,)``."""
    cfg = BertConfig(vocab_size=vocab_size, **CAPSTONE_CONFIG)
    model = BertForPreTraining(cfg, seed=seed, dtype=np.float64)
    model.train()
    opt = AdamW(model, lr=lr, weight_decay=0.01)
    settings = _Settings(max_steps=steps, warmup_steps=warmup, lr=lr)
    curve = []
    for step in range(steps):
        result = training_step(model, opt, batches[step % len(batches)], step, settings)
        curve.append(float(result.loss))
    return np.array(curve)


def train_curve(namespace, steps, seed=0, lr=2e-3, num_batches=8, batch_size=8):
    """One side of ``train_side_by_side``: the loss curve of the tiny BERT on ``namespace``'s layer
    functions (None: the references).  The caller's backend is restored afterwards; a loss that is not
    finite ends the curve with NaNs (a wrong backward may blow up: that is a result, not a crash)."""
    batches, vocab_size = pretraining_batches(num_batches, batch_size, CAPSTONE_CONFIG["max_position_embeddings"],
                                              seed)
    saved_ops, saved_state = dict(vars(backend.ops)), (backend._current, backend._custom_table)
    try:
        backend.set_backend("numpy" if namespace is None else namespace)
        with np.errstate(all="ignore"):
            try:
                return _train(steps, batches, vocab_size, seed, lr, max(1, steps // 10))
            except FloatingPointError:
                return np.full(steps, np.nan)
    finally:
        backend.ops.__dict__.clear()
        backend.ops.__dict__.update(saved_ops)
        backend._current, backend._custom_table = saved_state


def course_functions():
    """Every function a student writes in the exercises that are layers (their solution regions), in order."""
    from .exercises import EXERCISES, parse_regions, source_path
    names = []
    for name, ex in EXERCISES.items():
        if ex.module.startswith("minibert.layers."):
            text = source_path(name).read_text(encoding="utf-8")
            names += [r.function for r in parse_regions(text) if r.kind == "solution" and r.function not in names]
    return names


class _Using:
    """While active, the library's layer modules call ``mine``'s functions (their globals of the same names,
    and the encoder layer's ``REFERENCE_OPS``), so a reference composite (the encoder layer, attention)
    runs the student's pieces inside it; restored on exit."""

    def __init__(self, mine):
        self.mine, self.saved = mine, []

    def __enter__(self):
        import sys
        for mname, mod in list(sys.modules.items()):
            if mod is None or not mname.startswith("minibert.layers"):
                continue
            spaces = [vars(mod)] + [vars(v) for v in vars(mod).values() if isinstance(v, types.SimpleNamespace)]
            for space in spaces:
                for name, fn in self.mine.items():
                    old = space.get(name)
                    if callable(old) and str(getattr(old, "__module__", "")).startswith("minibert.layers"):
                        self.saved.append((space, name, old))
                        space[name] = fn
        return self

    def __exit__(self, *exc):
        for space, name, old in reversed(self.saved):
            space[name] = old
        self.saved.clear()


def train_side_by_side(student, steps=300, seed=0, lr=2e-3, num_batches=8, batch_size=8, plot=None):
    """Pretrain the capstone's tiny BERT twice, for ``steps`` steps: on the references and on
    ``student``'s layer functions (a module, a file or a directory: ``load_student``); returns a
    ``SideBySide`` (``.coincide``, ``.max_gap``, ``.plot()``) and saves the plot to ``plot`` if given.
    The caller's backend is restored afterwards."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"train_side_by_side: steps must be a positive integer, got {steps!r}")
    namespace = load_student(student)
    known = course_functions()
    mine = {n: getattr(namespace, n) for n in known if callable(getattr(namespace, n, None))}
    mine.update({n: getattr(namespace, n) for n in ("encoder_layer_forward",) if callable(getattr(namespace, n, None))})
    if not mine:
        raise ValueError(f"train_side_by_side: {getattr(namespace, '__name__', namespace)!r} has none of the "
                         f"course's functions finished ({', '.join(known)})")
    reference = train_curve(None, steps, seed, lr, num_batches, batch_size)
    with _Using(mine):
        student_curve = train_curve(types.SimpleNamespace(**mine, __name__=getattr(namespace, "__name__", "yours")),
                                    steps, seed, lr, num_batches, batch_size)
    name = f"custom:{getattr(namespace, '__name__', 'yours')}"
    run = SideBySide(reference, student_curve, name, yours=sorted(mine),
                     references=[n for n in known if n not in mine], skipped=list(getattr(namespace, "__skipped__", [])))
    if plot:
        run.plot(plot)
    return run
