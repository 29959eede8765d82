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
``minibert.set_backend(student)``: every layer function the student defines (``encoder_layer_backward``,
``layernorm_backward``, ...) and the references for the rest.  Dropout masks come from the model's own
generator in the same order, so nothing but the layer functions differs.

**What "coincide" means.**  Code that computes the same numbers as the reference gives the very same
curve, bit for bit; a correct but differently written backward differs by float64 rounding, about 1e-16
per operation, which a few hundred steps grow to ~1e-12 at most.  So the curves coincide when the largest
gap is below ``COINCIDE_TOL = 1e-8`` (four orders of magnitude of room); a wrong gradient (a forgotten
residual, a term of LayerNorm's dx) moves the very first update and the gap is 1e-4 to 1e-1 within tens of
steps.  The grader's check (``minibert exercises check encoder_layer``, the notebook's hidden test) is the
short form: ``CHECK_STEPS`` steps.
"""
import importlib.util
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backend
from ..config import BertConfig
from ..data.synthetic import synthetic_corpus, synthetic_vocabulary
from ..data.pretraining import create_training_instances, instances_to_arrays
from ..data.tokenizer import SPECIAL_TOKENS, BertTokenizer
from ..models.bert import BertForPreTraining
from ..optim import AdamW, clip_grad_norm, linear_warmup_decay

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


def load_student(student):
    """The student's layer functions as one namespace.  ``student``: a module (or any object with the
    functions as attributes), a ``.py`` file, or a directory of exercise files (every ``*.py`` in it is
    loaded; a later file's function wins)."""
    if not isinstance(student, (str, Path)):
        return student
    path = Path(student)
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"capstone: no Python file at {path} (a module, a .py file or a directory of them)")
    merged = types.SimpleNamespace()
    for f in files:
        spec = importlib.util.spec_from_file_location(f"_minibert_capstone_{f.stem}", f)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, value in vars(module).items():
            if callable(value) and not name.startswith("_"):
                setattr(merged, name, value)
    merged.__name__ = path.name
    return merged


def _train(steps, batches, vocab_size, seed, lr, warmup):
    cfg = BertConfig(vocab_size=vocab_size, **CAPSTONE_CONFIG)
    model = BertForPreTraining(cfg, seed=seed, dtype=np.float64)
    model.train()
    opt = AdamW(model, lr=lr, weight_decay=0.01)
    curve = []
    for step in range(steps):
        model.zero_grad()
        out = model.forward(**batches[step % len(batches)])
        model.backward()
        clip_grad_norm(model, 1.0)
        opt.lr = linear_warmup_decay(step, steps, warmup, lr)
        opt.step()
        curve.append(float(out.loss))
    return np.array(curve)


def train_side_by_side(student, steps=300, seed=0, lr=2e-3, num_batches=8, batch_size=8, plot=None):
    """Pretrain the capstone's tiny BERT twice, for ``steps`` steps: on the references and on
    ``student``'s layer functions (a module, a file or a directory: ``load_student``); returns a
    ``SideBySide`` (``.coincide``, ``.max_gap``, ``.plot()``) and saves the plot to ``plot`` if given.
    The caller's backend is restored afterwards."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"train_side_by_side: steps must be a positive integer, got {steps!r}")
    namespace = load_student(student)
    batches, vocab_size = pretraining_batches(num_batches, batch_size, CAPSTONE_CONFIG["max_position_embeddings"],
                                              seed)
    warmup = max(1, steps // 10)
    saved_ops, saved_state = dict(vars(backend.ops)), (backend._current, backend._custom_table)
    try:
        backend.set_backend("numpy")
        reference = _train(steps, batches, vocab_size, seed, lr, warmup)
        backend.set_backend(namespace)
        name = backend.get_backend()
        with np.errstate(all="ignore"):  # a wrong backward may blow up: that is a result, not a crash
            student_curve = _train(steps, batches, vocab_size, seed, lr, warmup)
    finally:
        backend.ops.__dict__.clear()
        backend.ops.__dict__.update(saved_ops)
        backend._current, backend._custom_table = saved_state
    run = SideBySide(reference, student_curve, name)
    if plot:
        run.plot(plot)
    return run
