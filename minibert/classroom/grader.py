"""The grader of the classroom exercises: ``minibert exercises check`` (the exercises themselves, their
markers and the student copies are ``exercises.py``).

**What it checks.**  The cases are the exercise's own table, ``gradcheck_cases(rng)`` at the bottom of
``minibert/layers/NAME.py``, the very table the file's ``test_NAME()`` and
``tests/test_layers_gradcheck.py`` run, hidden cases included (float64, sizes all different,
non-trivial parameters, repeated ids, padded keys, ignored labels, dropout).  The grader always takes
the table from the library, never from the student's copy, and calls the student's functions of the
same names on it: every forward output is compared with the library's, every gradient with the
library's backward *and* with centered finite differences of the library's forward, one line per
array, in the style of Karpathy's "becoming a backprop ninja"::

    dk                       | exact: False | approx: False | maxdiff: 3.42e-01 | rel_error 4.1e-01 ... WRONG

A few exercises add checks that are not gradient checks (``EXTRA_CHECKS``: softmax on huge logits,
the embedding's padding row), and the backprop-ninja exercise, which is not a layer, is graded step by
step.  An exercise passes when every array is within ``rel_error < 1e-7`` of both (a gradient that is
exactly 0 for every input, such as attention's key bias, within ``1e-10`` of 0).

**Two processes.**  A student's file is never imported by the grader.  ``grade(name, directory)`` runs
the grading flow twice on the same seed: in a fresh Python process (``_Recorder``, killed after
``--timeout`` seconds) that imports the student's file and only *calls* the student's functions -- the
forward outputs, the backward's gradients, the AdamW states, the masking's raw draws, the capstone's
loss curve -- and sends back, for every call, a digest of its inputs and its outcome as plain data (an
.npz read with ``allow_pickle=False``: arrays, and JSON for the rest); and here (``_Replayer``), where
the same flow computes the references, the finite differences, every comparison and the points, each
student call replaced by the recorded outcome.  A call made on other inputs than the grader's (the
digests differ), out of order or missing is not graded.  The student's process reports each function's
``__code__.co_filename``; the foreign-code rule (a re-export scores zero) is decided here.  Whatever a
submission patches in its own process (``rel_error``, numpy, the references, this grader) changes only
what that process sends back, never how it is judged.  Not prevented: a student function that calls
the library's reference internally (``foreign_reason`` sees only where the function itself is defined).
"""
import copy
import csv
import functools
import importlib
import importlib.util
import json
import math
import os
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..gradcheck import GRAD_TOL, ZERO_TOL, numerical_gradient, rel_error, report_line
from .exercises import EXERCISES, exercise_names, parse_regions, source_path

FORWARD_TOL = 1e-10  # a float64 forward agrees to ~1e-15; a different (correct) formula to ~1e-13


@dataclass
class Result:
    """The grade of one exercise.  ``wrong``: (array name, case, rel_error) of every array that is off
    (for an array that must be exactly 0, named in ``zeros``, its largest |entry| instead of the
    rel_error); ``todo``: functions that still raise NotImplementedError; ``errors``: other exceptions."""
    name: str
    lines: list = field(default_factory=list)
    wrong: list = field(default_factory=list)
    zeros: set = field(default_factory=set)
    todo: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    checked: int = 0
    checks: list = field(default_factory=list)  # [label, case, ok, function] of every array compared
    foreign: list = field(default_factory=list)  # functions not defined in the student's own code
    notes: dict = field(default_factory=dict)  # array/property -> why it is wrong, for checks that are not rel_errors

    @property
    def passed(self):
        return not (self.wrong or self.todo or self.errors) and self.checked > 0

    @property
    def wrong_names(self):
        """The names of the wrong arrays (``dx``, ``dk`` ...), each once."""
        return list(dict.fromkeys(name for name, _, _ in self.wrong))

    def say(self, line):
        self.lines.append(line)

    def summary(self):
        if self.passed:
            return f"PASS  {self.name}: {self.checked} arrays right"
        parts = []
        if self.wrong:
            worst = {}
            for name, case, e in self.wrong:
                worst[name] = max(worst.get(name, 0.0), e)
            parts.append("wrong: " + ", ".join(
                f"{n} ({self.notes[n]})" if n in self.notes else f"{n} (wrong shape)" if math.isinf(e) else f"{n} (max|{n}| {e:.1e}, should be 0)" if n in self.zeros
                else f"{n} (rel_error up to {e:.1e})" for n, e in worst.items()))
        if self.todo:
            parts.append("not implemented yet: " + ", ".join(dict.fromkeys(self.todo)))
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return f"FAIL  {self.name}: " + "; ".join(parts)


class _Grader:
    """Helpers shared by the exercise graders; one instance per exercise."""

    def __init__(self, result, module, seed, own_code_only=True):
        self.r = result
        self.m = module
        self.own_code_only = own_code_only  # False only when grading the library's own module
        self.rng = np.random.default_rng(seed)
        self.case = ""
        self.student_file = getattr(module, "__file__", None)

    # -- calling student code ----------------------------------------------------------------------
    judges = True  # False in the student's process (``_Recorder``): it computes, the parent judges

    def lookup(self, fname):
        """(the student's function or a stand-in for it, ``function_info`` of it)."""
        fn = getattr(self.m, fname, None)
        return fn, function_info(fn)

    def student(self, fname):
        fn, info = self.lookup(fname)
        if info["missing"]:
            self.r.errors.append(f"{fname} is missing from {Path(self.student_file or '?').name}")
            self.r.say(f"  {fname}: missing (keep the function names of the exercise)")
            return None
        problem = self.own_code_only and foreign_reason(info, fname, self.student_file)
        if problem:
            if fname not in self.r.foreign:
                self.r.foreign.append(fname)
                self.r.errors.append(problem)
                self.r.say("  " + problem)
            return None
        return fn

    def call(self, label, fn, *args, **kwargs):
        """(True, value) or (False, None) after recording a TODO or an error under ``label``."""
        if fn is None:
            return False, None
        self.producer = label  # the function whose results the next comparisons check
        status, value = self.invoke(label, fn, args, kwargs)
        if status == "ok":
            return True, value
        if status == "todo":
            self.r.todo.append(label)
            self.r.say(f"  {label}: not implemented yet ({value})")
        else:
            self.r.errors.append(value)
            self.r.say(f"  {value}")
        return False, None

    def invoke(self, label, fn, args, kwargs):
        """("ok", the value), ("todo", the message) or ("error", the message) of one student call."""
        try:
            return "ok", fn(*copy.deepcopy(args), **kwargs)  # copies: a student may write into inputs
        except NotImplementedError as e:
            return "todo", str(e).splitlines()[0] if str(e) else "NotImplementedError"
        except Exception as e:  # noqa: BLE001 -- a student's bug of any kind is a grade, not a crash
            return "error", f"{label}: {type(e).__name__}: {e}{_student_frame(e, self.student_file or '')}"

    def numerical(self, f, x, dout):
        """Centered finite differences of the reference ``f`` (only where the grade is decided)."""
        return numerical_gradient(f, x, dout) if self.judges else None

    # -- comparing ---------------------------------------------------------------------------------
    def compare(self, label, got, want, numerical=None, tol=GRAD_TOL, zero=False):
        """One report line for one array: vs the reference ``want`` and, for gradients, vs the finite
        differences ``numerical``.  ``zero``: the true value is exactly 0 for every input (attention's
        key bias), so ``got`` must be below ``ZERO_TOL`` (a relative error would compare two noises)."""
        if not self.judges:
            return None
        self.r.checked += 1
        self.r.checks.append([label, self.case, False, getattr(self, "producer", "")])
        try:
            got_arr = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            got_arr = None
        want = np.asarray(want, dtype=np.float64)
        if got_arr is None or got_arr.shape != want.shape:
            shape = "not an array" if got_arr is None else f"shape {got_arr.shape}"
            self.r.say(f"  {label:24s} | {shape}, expected shape {want.shape}  WRONG")
            self.r.wrong.append((label, self.case, math.inf))
            return False
        err = rel_error(got_arr, want)
        if not np.isfinite(got_arr).all():
            self.r.notes.setdefault(label, "NaN or inf in your result")
        line = report_line(label, got_arr, want) + f" | rel_error {err:.1e}"
        ok = err < tol
        if zero:
            big = float(np.abs(got_arr).max()) if got_arr.size else 0.0
            ok, err = big < ZERO_TOL, big
            self.r.zeros.add(label)
            line += f" (the true value is exactly 0: expect |max| < {ZERO_TOL:.0e}, got {big:.1e})"
        elif numerical is not None:
            fd = rel_error(got_arr, numerical)
            ok = ok and fd < tol
            line += f", vs finite differences {fd:.1e} (expect < {tol:.0e})"
            err = max(err, fd)
        else:
            line += f" (expect < {tol:.0e})"
        self.r.say("  " + line + ("  ok" if ok else "  WRONG"))
        self.r.checks[-1][2] = bool(ok)
        if not ok:
            self.r.wrong.append((label, self.case, err))
        return ok

    def verdict(self, label, ok, message):
        """One check that is not a comparison of arrays (a statistic, a property of every draw)."""
        if not self.judges:
            return None
        self.r.checked += 1
        self.r.checks.append([label, self.case, bool(ok), getattr(self, "producer", "")])
        self.r.say(f"  {label:24s} | {message}  {'ok' if ok else 'WRONG'}")
        if not ok:
            self.r.wrong.append((label, self.case, math.nan))
            self.r.notes[label] = message
        return ok

    def section(self, title):
        self.case = title
        self.r.say(f" {title}")

    def randn(self, *shape, scale=1.0):
        return self.rng.standard_normal(shape) * scale

    # -- one case of a layer's table: forward compared, backward gradient-checked ------------------
    def grade_case(self, case):
        """Grade the student's functions named as ``case.forward``/``case.backward`` on the case's
        inputs and arguments (a ``minibert.gradcheck.GradCase``), against the library's pair."""
        self.section(case.name)
        fwd_name, bwd_name = case.forward.__name__, case.backward.__name__
        s_fwd, s_bwd = self.student(fwd_name), self.student(bwd_name)
        inputs = list(case.inputs.values())
        r_fwd = case.bind()
        r_out, r_cache = r_fwd(*inputs)
        ok, res = self.call(fwd_name, case.bind(s_fwd) if s_fwd else None, *inputs)
        s_cache = None
        if ok:
            if isinstance(res, tuple) and len(res) == 2:
                self.compare("out" if np.ndim(r_out) else "loss", res[0], r_out, tol=FORWARD_TOL)
                s_cache = res[1]
            else:
                self.r.errors.append(f"{fwd_name} must return (out, cache)")
                self.r.say(f"  {fwd_name}: must return (out, cache), got {type(res).__name__}")
        dout = self.randn(*np.shape(r_out))
        ref = case.backward(dout, r_cache)
        ref = ref if isinstance(ref, tuple) else (ref,)
        if s_cache is None:
            self.r.say("  (your backward gets the reference forward's cache, as the docstring describes it)")
            s_cache = r_cache
        ok, got = self.call(bwd_name, s_bwd, dout, s_cache)
        if not ok:
            return
        got = got if isinstance(got, tuple) else (got,)
        if len(got) != len(ref):
            msg = f"{bwd_name} returned {len(got)} value(s), expected {len(ref)}: {', '.join(case.grad_names)}"
            self.r.errors.append(msg)
            self.r.say("  " + msg)
            return
        for name, x, g, want in zip(case.grad_names, inputs, got, ref):
            zero = name in case.zero
            num = None if zero else self.numerical(lambda: r_fwd(*inputs)[0], x, dout)
            self.compare(name, g, want, num, zero=zero)


def _student_frame(exc, student_file):
    """' (at linear.py:31 in linear_backward)' for the innermost frame in the student's file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if student_file and
              os.path.abspath(f.filename) == os.path.abspath(student_file)]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {Path(f.filename).name}:{f.lineno} in {f.name}: {f.line})"


# ---- the checks beyond the tables ----------------------------------------------------------------

def _softmax_huge_logits(g):
    g.section("huge logits [1000, 1000, -1000]: no overflow")
    ok, res = g.call("softmax_forward", g.student("softmax_forward"), np.array([[1000.0, 1000.0, -1000.0]]))
    if ok:
        with np.errstate(all="ignore"):
            g.compare("p", res[0], [[0.5, 0.5, 0.0]], tol=FORWARD_TOL)


def _embedding_padding_row(g):
    """``padding_idx`` is a convention (that row's gradient is kept at 0), not a derivative: compared
    with the library's backward only."""
    from ..layers import embedding as L
    g.section("padding_idx=0: that row's gradient stays 0")
    ids = np.array([[3, 1, 0, 3, 0], [0, 4, 4, 2, 3]])
    out, cache = L.embedding_forward(ids, g.randn(6, 12))
    dout = g.randn(*out.shape)
    ok, got = g.call("embedding_backward", g.student("embedding_backward"), dout, cache, 0)
    if ok:
        g.compare("dw", got, L.embedding_backward(dout, cache, 0))


# (step function, upstream gradient names, names of what it returns) -- the order of the backward
NINJA_STEPS = [
    ("step01_output", ["out"], ["Ctx", "wo", "bo"]),
    ("step02_merge", ["Ctx"], ["ctx"]),
    ("step03_context", ["ctx"], ["P", "v"]),
    ("step04_normalise", ["P"], ["E (direct path)", "Einv"]),
    ("step05_reciprocal", ["Einv"], ["Esum"]),
    ("step06_rowsum", ["Esum"], ["E (via the row sum)"]),
    ("step07_exp", ["E"], ["Zc"]),
    ("step08_shift", ["Zc"], ["Z (direct path)", "Zmax"]),
    ("step09_rowmax", ["Zmax"], ["Z (via the max)"]),
    ("step10_scale_mask", ["Z"], ["S"]),
    ("step11_scores", ["S"], ["q", "k"]),
    ("step12_split", ["q", "k", "v"], ["Q", "K", "V"]),
    ("step13_projections", ["Q", "K", "V"], ["x", "wq", "bq", "wk", "bk", "wv", "bv"]),
]
NINJA_ZEROS = {"Zmax", "Z (via the max)", "bk"}  # exactly 0 for every input: softmax ignores a row's shift
_ATT_NAMES = ["dx", "dwq", "dbq", "dwk", "dbk", "dwv", "dbv", "dwo", "dbo"]


def _grade_attention_ninja(g):
    from . import attention_ninja as ref
    from ..layers import attention as L
    from ..layers.softmax import attention_mask_to_additive
    B, T, C, A = 2, 5, 12, 3
    x = g.randn(B, T, C)
    params = [g.randn(*s, scale=0.5) for s in [(C, C), (C,)] * 4]
    mask = attention_mask_to_additive(np.array([[1] * T, [1, 1, 1] + [0] * (T - 3)]), np.float64)
    out, cache = ref.attention_steps_forward(x, *params, mask, A)
    dout = g.randn(*out.shape)
    up = ref.attention_steps_backward(dout, cache)  # the correct upstream gradient of every step
    up["out"] = dout
    # part 1: every step on its own, fed the correct upstream gradient
    all_done = True
    for fname, inputs, outputs in NINJA_STEPS:
        g.section(f"{fname}")
        want = getattr(ref, fname)(*[up[n] for n in inputs], cache)
        want = want if isinstance(want, tuple) else (want,)
        ok, got = g.call(fname, g.student(fname), *[up[n] for n in inputs], cache)
        if not ok:
            all_done = False
            continue
        got = got if isinstance(got, tuple) else (got,)
        if len(got) != len(want):
            g.r.errors.append(f"{fname} returned {len(got)} value(s), expected {len(want)}")
            g.r.say(f"  {fname}: returned {len(got)} value(s), expected {len(want)}: d{', d'.join(outputs)}")
            continue
        for name, a, b in zip(outputs, got, want):
            g.compare("d" + name, a, b, zero=name in NINJA_ZEROS)
    # the whole backward, chained by the given code, against the library and finite differences
    g.section("attention_steps_backward: the whole chain vs minibert.layers.attention and finite differences")
    if not all_done:
        g.r.say("  (skipped until every step is implemented)")
    else:
        ok, res = g.call("attention_steps_forward", g.student("attention_steps_forward"), x, *params, mask, A)
        lib_out, lib_cache = L.attention_forward(x, *params, mask, A)
        if ok:
            g.compare("out", res[0], lib_out, tol=FORWARD_TOL)
            ok, grads = g.call("attention_steps_backward", g.student("attention_steps_backward"), dout, res[1])
            if ok:
                lib = L.attention_backward(dout, lib_cache)
                inputs = [x] + params
                fwd = lambda: L.attention_forward(x, *params, mask, A)[0]  # noqa: E731
                for i, (name, want) in enumerate(zip(_ATT_NAMES, lib)):
                    zero = name[1:] in NINJA_ZEROS
                    num = None if zero else g.numerical(fwd, inputs[i], dout)
                    g.compare(name, grads.get(name[1:]) if isinstance(grads, dict) else None, want, num, zero=zero)
    # part 2: the fused softmax backward
    g.section("softmax_fused_backward: steps 4-9 in one line")
    ok, got = g.call("softmax_fused_backward", g.student("softmax_fused_backward"), up["P"], cache["P"])
    if ok:
        g.compare("dZ (fused)", got, up["Z"])


def _grade_adamw(g):
    """Six steps of the student's ``adamw_update`` under BERT's schedule (``optim.linear_warmup_decay``:
    warmup over 2 steps, then linear decay), each step compared with the reference update: the
    parameter, ``m`` and ``v``, for a weight (decayed) and a bias (not decayed)."""
    from ..layers import adamw as ref
    from ..optim import linear_warmup_decay
    fn = g.student("adamw_update")
    lrs = [linear_warmup_decay(s, 6, 2, 1e-2) for s in range(6)]
    params, grads, lrs = ref.adamw_cases(g.rng, lrs)
    want = ref.adamw_steps(ref.adamw_update, params, grads, lrs)
    g.section(f"6 steps, learning rates {', '.join(f'{lr:g}' for lr in lrs)} (linear_warmup_decay(s, 6, 2, 1e-2))")
    # the update works in place: run on the (copied) inputs by the reference's loop of steps
    ok, got = g.call("adamw_update", fn and (lambda p, gs, ls: ref.adamw_steps(fn, p, gs, ls)), params, grads, lrs)
    if not ok or not g.judges:
        return
    names = {"weight": "weight (decayed)", "bias": "bias (not decayed)"}
    for (t, mine), (_, ref_t) in zip(got, want):
        g.case = f"step {t}"
        for n, label in names.items():
            for what, a, b in zip(("p", "m", "v"), mine[n], ref_t[n]):
                g.compare(f"{what} of the {label}", a, b, tol=1e-12)


def _grade_masking(g):
    """``masking_statistics`` (``minibert/data/pretraining.py``) on the student's
    ``create_masked_lm_predictions``: exact properties of every draw, and the 80/10/10 split and the
    choice of positions within 5 binomial standard errors over 4000 draws."""
    from ..data import pretraining as ref
    fn = g.student("create_masked_lm_predictions")
    g.section(f"{ref.MASKING_DRAWS} draws on [CLS] + 10 words + [SEP] + 8 words + [SEP] + 2 [PAD], masked_lm_prob 0.15")
    # the student's process only draws (every draw's tokens, positions and labels); the statistics are
    # computed here, by masking_statistics replaying those draws in order
    ok, draws = g.call("create_masked_lm_predictions", fn and (lambda: _masking_draws(ref, fn)))
    if ok and g.judges:
        replay = iter(draws if isinstance(draws, list) else [])
        rows = ref.masking_statistics(lambda *args: next(replay))
        for item, good, message in rows:
            g.verdict(item, good, message)


def _masking_draws(ref, fn):
    """[(tokens, positions, labels)] of ``fn`` over the draws of ``masking_statistics``, as plain lists."""
    draws = []

    def record(*args):
        out = fn(*args)
        tokens, positions, labels = out
        draws.append([list(tokens), [int(p) for p in positions], list(labels)])
        return out
    ref.masking_statistics(record)
    return draws


def _capstone_curve(g):
    """The capstone: a tiny BERT pretrained for ``capstone.CHECK_STEPS`` steps on the student's encoder
    layer (``set_backend`` with their pair) must give the reference's loss curve (``COINCIDE_TOL``)."""
    from . import capstone
    fwd, bwd = g.student("encoder_layer_forward"), g.student("encoder_layer_backward")
    g.section(f"BERT pretrained for {capstone.CHECK_STEPS} steps on your encoder layer, next to the reference")
    if fwd is None or bwd is None:
        return
    mine = types.SimpleNamespace(encoder_layer_forward=fwd, encoder_layer_backward=bwd, __name__="your encoder layer")
    # the student's process trains on the student's layer only; the reference curve is trained here
    ok, curve = g.call("train_side_by_side", lambda: _train_curve(mine, capstone.CHECK_STEPS))
    if ok and g.judges:
        reference = _train_curve(None, capstone.CHECK_STEPS)
        try:
            g.r.say(f"  {capstone.SideBySide(reference, np.asarray(curve, dtype=np.float64), 'your encoder layer')!r}")
        except (TypeError, ValueError):
            pass
        g.compare("loss_curve", curve, reference, tol=capstone.COINCIDE_TOL / 10)


def _train_curve(namespace, steps, seed=0, lr=2e-3, num_batches=8, batch_size=8):
    """The loss curve of ``capstone.train_side_by_side``'s tiny BERT on ``namespace``'s layer functions
    (None: the references) -- one side of it; the caller's backend is restored afterwards."""
    from . import capstone
    from .. import backend
    batches, vocab_size = capstone.pretraining_batches(num_batches, batch_size,
                                                       capstone.CAPSTONE_CONFIG["max_position_embeddings"], seed)
    saved_ops, saved_state = dict(vars(backend.ops)), (backend._current, backend._custom_table)
    try:
        backend.set_backend("numpy" if namespace is None else namespace)
        with np.errstate(all="ignore"):  # a wrong backward may blow up: that is a result, not a crash
            return capstone._train(steps, batches, vocab_size, seed, lr, max(1, steps // 10))
    finally:
        backend.ops.__dict__.clear()
        backend.ops.__dict__.update(saved_ops)
        backend._current, backend._custom_table = saved_state


# exercise -> what it checks beyond its table of gradient checks (the ninja has no table: all of it)
EXTRA_CHECKS = {
    "softmax": _softmax_huge_logits,
    "embedding": _embedding_padding_row,
    "attention_ninja": _grade_attention_ninja,
    "encoder_layer": _capstone_curve,
    "adamw": _grade_adamw,
    "masking": _grade_masking,
}

# ---- grading -------------------------------------------------------------------------------------

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # minibert/


def function_info(fn):
    """What the foreign-code rule needs to know of ``fn``, as plain data (the student's process sends it):
    ``missing`` (not a callable), ``has_code`` (a Python function), ``filename`` (``__code__.co_filename``),
    ``module`` and ``type``."""
    code = getattr(fn, "__code__", None)
    return {"missing": not callable(fn), "has_code": code is not None, "type": type(fn).__name__,
            "filename": getattr(code, "co_filename", None), "module": getattr(fn, "__module__", None)}


def foreign_reason(info, fname, student_file=None):
    """Why the function described by ``info`` (``function_info``) is not the student's own code (a
    message: it scores zero), or "" if it is.

    A function whose code lives in the minibert package is the library's reference re-exported
    (``from minibert.layers.linear import *``); a function defined in another file than the student's
    (when ``student_file`` is known) is not the student's work either.  Notebook cells have no file of
    their own, so there only the first rule applies."""
    if not info.get("has_code") or not isinstance(info.get("filename"), str):
        return f"{fname} is not a function written in your file ({info.get('type')}): it scores zero"
    filename = info["filename"]
    where = Path(filename).resolve() if not filename.startswith("<") else None
    if where is not None and _PACKAGE_DIR in where.parents:
        return (f"{fname} is minibert's own reference ({where.relative_to(_PACKAGE_DIR.parent)}), imported into "
                "your code, not your implementation: it scores zero. Write the function yourself.")
    if student_file and where is not None and where != Path(student_file).resolve():
        return f"{fname} is defined in {where}, not in your file {Path(student_file).name}: it scores zero"
    return ""


def foreign_function(fn, fname, student_file=None):
    """``foreign_reason`` of the function ``fn`` itself."""
    return foreign_reason(function_info(fn), fname, student_file)


def load_module(path, name):
    """Import a student's file under a private module name (a fresh import every time)."""
    spec = importlib.util.spec_from_file_location(f"_minibert_student_{name}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade_module(name, module, seed=0, own_code_only=True, grader=None):
    """Grade exercise ``name`` on the functions of ``module`` (any object with them as attributes: a
    module, a notebook's namespace) in this process; returns a ``Result``.  ``grader``: the class that
    runs the checks (``_Grader``: call and compare here; the split ones are ``_Recorder``/``_Replayer``)."""
    exercise_names([name])
    result = Result(name)
    g = (grader or _Grader)(result, module, seed, own_code_only=own_code_only)
    try:
        _run_checks(name, g)
    except _Tampered as e:
        result.errors.append(str(e))
        result.say(f"  {e}")
    except Exception as e:  # noqa: BLE001 -- malformed values sent back by the student's process
        if not isinstance(g, _Replayer):
            raise
        msg = f"the student's process sent back values the grader cannot read ({type(e).__name__}: {e})"
        result.errors.append(msg)
        result.say(f"  {msg}")
    return result


def _run_checks(name, g):
    """The grading flow of exercise ``name`` on the grader ``g``: the library's table, then the extras."""
    reference = importlib.import_module(EXERCISES[name].module)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if hasattr(reference, "gradcheck_cases"):  # the library's table, hidden cases included
            for case in reference.gradcheck_cases(g.rng):
                g.grade_case(case)
        if name in EXTRA_CHECKS:
            EXTRA_CHECKS[name](g)


def grade(name, directory=None, seed=0, timeout=None):
    """Grade one exercise; ``directory`` holds the student's ``NAME.py`` (None: the library's own module,
    graded in this process).  A student's file is never imported here: a fresh Python process
    (``_student_process``, killed after ``timeout`` seconds, default ``TIME_LIMIT``) imports it and
    runs the student's functions on the grader's inputs, and sends back plain arrays; this process
    computes the references, the finite differences and every comparison (``_Replayer``)."""
    exercise_names([name])
    path = source_path(name) if directory is None else Path(directory) / f"{name}.py"
    if not path.is_file():
        result = Result(name)
        result.errors.append(f"{path} not found (write the student copies with `minibert exercises make DIR`)")
        return result
    if directory is None:
        return grade_module(name, importlib.import_module(EXERCISES[name].module), seed, own_code_only=False)
    timeout = TIME_LIMIT if timeout is None else timeout
    try:
        record = _student_process(name, path.resolve(), seed, timeout)
    except _ProcessFailed as e:
        result = Result(name)
        result.errors.append(str(e))
        result.say("  " + str(e))
        return result
    if record.get("import_error"):
        result = Result(name)
        detail = str(record["import_error"])
        result.errors.append(f"cannot import {path.name}: {detail}")
        result.say(f"  cannot import {path}: {detail}")
        return result
    stand_in = types.SimpleNamespace(__file__=str(path.resolve()), _minibert_record=record)
    return grade_module(name, stand_in, seed, grader=_Replayer)


# ---- the two processes: the student's computes, the grader's judges --------------------------------

class _Tampered(Exception):
    """The student's process did not make the calls the grader's flow makes, on the grader's inputs."""


class _ProcessFailed(Exception):
    """The student's process timed out or died without a record."""


class _Opaque:
    """A value the student's process could not send as plain data (a cache object, a generator...)."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name} from the student's process>"


class _StandIn:
    """The parent's stand-in for a student function: never called (``_Replayer.invoke`` replays)."""

    def __init__(self, name):
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        raise _Tampered(f"the grader tried to run the student's {self.__name__} in its own process")


_MAX_DEPTH = 32


def _encode(value, arrays, depth=0):
    """``value`` as JSON-able data with tagged containers; ndarrays go to ``arrays`` (saved in an .npz,
    never pickled); anything else becomes an opaque type name."""
    if depth > _MAX_DEPTH:
        return {"t": "opaque", "type": "too deeply nested"}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and type(value) in (int, float):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biufcU":
        return _encode(value.item(), arrays, depth + 1)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufcU":
        arrays.append(np.ascontiguousarray(value))
        return {"t": "array", "i": len(arrays) - 1}
    if isinstance(value, (tuple, list)):
        return {"t": "tuple" if isinstance(value, tuple) else "list", "v": [_encode(v, arrays, depth + 1) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, (str, int)) and type(k) in (str, int) for k in value):
        return {"t": "dict", "k": list(value), "v": [_encode(v, arrays, depth + 1) for v in value.values()]}
    return {"t": "opaque", "type": type(value).__name__}


def _decode(data, arrays):
    if not isinstance(data, dict):
        return data
    kind = data.get("t")
    if kind == "array":
        return arrays[f"a{int(data['i'])}"]
    if kind in ("tuple", "list"):
        items = [_decode(v, arrays) for v in data["v"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return dict(zip(data["k"], (_decode(v, arrays) for v in data["v"])))
    return _Opaque(str(data.get("type")))


def _fingerprint(value, produced, depth=0):
    """A digest of the grader's inputs to one call (arrays by their bytes, numbers by value, other
    objects by type), equal in both processes when the student's process used the grader's inputs.
    Values a student call returned (``produced``: their ids) are the student's own: not digested."""
    import hashlib
    h = hashlib.sha256()

    def walk(v, d):
        if id(v) in produced:
            h.update(b"<student value>")
        elif d > _MAX_DEPTH:
            h.update(b"<deep>")
        elif isinstance(v, np.ndarray):
            h.update(f"nd{v.dtype.str}{v.shape}".encode())
            if v.dtype.kind in "biufcU":
                h.update(np.ascontiguousarray(v).tobytes())
        elif v is None or isinstance(v, (bool, int, float, str, np.generic)):
            h.update(f"{type(v).__name__}:{v!r};".encode())
        elif isinstance(v, (tuple, list)):
            h.update(f"{type(v).__name__}[".encode())
            for x in v:
                walk(x, d + 1)
            h.update(b"]")
        elif isinstance(v, dict):
            h.update(b"{")
            for k, x in v.items():
                h.update(f"{k!r}:".encode())
                walk(x, d + 1)
            h.update(b"}")
        else:
            h.update(f"<{type(v).__name__}>".encode())
    walk(value, depth)
    return h.hexdigest()


class _Recorder(_Grader):
    """The grader in the student's process: runs the student's functions on the inputs of the grading
    flow and records, in order, each call's digest of inputs and its outcome; judges nothing."""
    judges = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lookups, self.calls, self.arrays, self.produced, self._keep = {}, [], [], set(), []

    def lookup(self, fname):
        fn, info = super().lookup(fname)
        self.lookups[fname] = info
        return fn, info

    def invoke(self, label, fn, args, kwargs):
        digest = _fingerprint((args, kwargs), self.produced)
        status, value = super().invoke(label, fn, args, kwargs)
        entry = {"label": label, "inputs": digest, "status": status}
        if status == "ok":
            entry["value"] = _encode(value, self.arrays)
            self._remember(value)
        else:
            entry["message"] = str(value)
        self.calls.append(entry)
        return status, value

    def _remember(self, value):
        _remember(self, value)


def _remember(g, value):
    """Mark ``value`` (and its items) as the student's: ``_fingerprint`` does not digest them.  Kept
    alive, so that no other object reuses their ids; numbers, strings and None are values, not objects
    of the student's (they may be shared, interned, with the grader's own)."""
    for v in [value] + (list(value) if isinstance(value, (tuple, list)) else []):
        if not (v is None or isinstance(v, (bool, int, float, str))):
            g._keep.append(v)
            g.produced.add(id(v))


class _Replayer(_Grader):
    """The grader in the grader's process: the same flow, the references, the finite differences and
    every comparison computed here, each student call replaced by the recorded outcome of the student's
    process -- which must have been made on the same inputs (same digest), in the same order."""

    def __init__(self, result, module, seed, own_code_only=True):
        super().__init__(result, module, seed, own_code_only=own_code_only)
        record = module._minibert_record
        self.lookups, self.calls, self.arrays = record.get("lookups") or {}, list(record.get("calls") or []), record["arrays"]
        self.produced, self._keep, self.position = set(), [], 0

    def lookup(self, fname):
        info = self.lookups.get(fname)
        if not isinstance(info, dict):
            info = function_info(None)
        info = {**function_info(None), **info}
        return (None if info["missing"] else _StandIn(fname)), info

    def invoke(self, label, fn, args, kwargs):
        digest = _fingerprint((args, kwargs), self.produced)
        if self.position >= len(self.calls):
            raise _Tampered(f"{label}: the student's process never ran it (its record ends early): not graded")
        entry = self.calls[self.position]
        self.position += 1
        if entry.get("label") != label:
            raise _Tampered(f"{label}: the student's process ran {entry.get('label')!r} instead: not graded")
        if entry.get("inputs") != digest:
            raise _Tampered(f"{label}: the student's process ran it on other inputs than the grader's "
                            "(a patched library or grader?): not graded")
        if entry.get("status") != "ok":
            return ("todo" if entry.get("status") == "todo" else "error"), str(entry.get("message"))
        value = _decode(entry.get("value"), self.arrays)
        _remember(self, value)
        return "ok", value


def _run_student(name, path, seed, out):
    """In the student's process: import ``path``, run the grading flow's student calls (``_Recorder``)
    and write the record to ``out`` (an .npz: the arrays, and the rest as JSON text; no pickle)."""
    import sys
    log = {"lookups": {}, "calls": [], "import_error": None}
    arrays = []
    sys.path.insert(0, str(Path(path).parent))  # a student's helper module next to the file imports
    try:
        module = load_module(path, name)
    except BaseException as e:  # noqa: BLE001 -- a syntax error (or a sys.exit) in a student's file is a grade
        log["import_error"] = f"{type(e).__name__}: {e}"
    else:
        g = _Recorder(Result(name), module, seed)
        try:
            _run_checks(name, g)
        except Exception:  # noqa: BLE001 -- the record so far is sent; the grader's replay says what is missing
            pass
        log["lookups"], log["calls"], arrays = g.lookups, g.calls, g.arrays
    payload = {f"a{i}": a for i, a in enumerate(arrays)}
    payload["__record__"] = np.array(json.dumps(log))
    with open(out, "wb") as f:
        np.savez(f, **payload)


def _student_process(name, path, seed, timeout):
    """Run ``_run_student`` in a fresh Python process killed after ``timeout`` seconds; returns its
    record ({"lookups", "calls", "import_error", "arrays"}), read without unpickling anything."""
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.npz"
        cmd = [sys.executable, "-m", "minibert.classroom.grader", name, str(path), str(out), str(seed)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise _ProcessFailed(f"timed out after {timeout:g} s (an infinite loop? the time limit is --timeout)")
        if not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise _ProcessFailed(f"the grading process died (exit code {proc.returncode}): " + " | ".join(tail))
        try:
            with np.load(out, allow_pickle=False) as z:
                record = json.loads(str(z["__record__"]))
                if not isinstance(record, dict):
                    raise ValueError("the record is not a JSON object")
                record["arrays"] = {k: z[k] for k in z.files if k != "__record__"}
        except Exception as e:  # noqa: BLE001 -- whatever the student's process wrote, it is not a crash here
            raise _ProcessFailed(f"the grading process wrote an unreadable record ({type(e).__name__}: {e})")
    return record


# ---- points: one per graded item (an array of a layer, a step of the ninja) ------------------------

def item_of(name, label, case):
    """The graded item a compared array belongs to: the array's name (``dk``: every case's ``dk``
    together) for a layer, the step (``step11_scores``) for the backprop ninja."""
    return case.split(":")[0].split()[0] if name == "attention_ninja" else label


@functools.lru_cache(maxsize=None)
def items(name):
    """{item: the (label, case) pairs the reference answers are compared on}, in order: what a student
    must get right for that item's point.  Computed by grading the library's own code."""
    result = grade(name)
    if not result.passed:  # the references must pass, or every point would be meaningless
        raise RuntimeError(f"the reference solutions of {name!r} fail their own checks: {result.summary()}")
    text = source_path(name).read_text(encoding="utf-8")
    written = {r.function for r in parse_regions(text) if r.kind == "solution"}
    table = {}
    for label, case, _, function in result.checks:
        if function.endswith("_forward") and function not in written:
            continue  # the output of a forward the exercise gives (attention's): not the student's work
        table.setdefault(item_of(name, label, case), []).append((label, case))
    return {k: tuple(v) for k, v in table.items()}


def points(name):
    """{item: points}: one point per item (per array, per ninja step), so a wrong ``dk`` costs ``dk``'s
    point and nothing else."""
    return {item: 1 for item in items(name)}


def item_scores(result):
    """[(item, earned, possible, message)] for a ``Result``: an item earns its points when every
    comparison the reference makes for it was made on the student's code and was right."""
    got = {(label, case): ok for label, case, ok, _ in result.checks}
    reasons = [f"not implemented yet: {', '.join(dict.fromkeys(result.todo))}"] if result.todo else []
    why_not = "; ".join(reasons + result.errors[:3])
    rows = []
    for item, pairs in items(result.name).items():
        possible = points(result.name)[item]
        missing = [p for p in pairs if p not in got]
        bad = [p for p in pairs if got.get(p) is False]
        if not missing and not bad:
            rows.append((item, possible, possible, f"{item}: right in all {len(pairs)} check(s)"))
            continue
        if bad:
            cases = "; ".join(dict.fromkeys(c for _, c in bad))
            labels = ", ".join(dict.fromkeys(l for l, _ in bad))
            msg = f"{item}: WRONG ({labels} off in: {cases})"
        else:
            msg = f"{item}: not checked ({why_not or 'the function producing it did not run'})"
        rows.append((item, 0, possible, msg))
    return rows


def result_record(result, student=""):
    """A JSON-able record of one exercise's grade."""
    scores = item_scores(result)
    return {"student": student, "exercise": result.name, "passed": result.passed,
            "points": sum(s[1] for s in scores), "max_points": sum(s[2] for s in scores),
            "items": [{"item": i, "points": e, "max_points": p, "message": m} for i, e, p, m in scores],
            "summary": result.summary(), "wrong": result.wrong_names, "lines": result.lines, "errors": result.errors, "todo": result.todo}


# ---- check: every exercise in a subprocess with a time limit ---------------------------------------

TIME_LIMIT = 120.0  # seconds per exercise; the slowest (attention) grades in a few seconds


def grade_in_subprocess(name, directory, timeout=TIME_LIMIT):
    """``grade(name, directory)`` as the record of ``result_record``: the student's file runs in a fresh
    Python process killed after ``timeout`` seconds, which only computes the student's outputs; the
    comparisons and the points are made in the caller's process, which never imports the student's code."""
    return result_record(grade(name, directory, timeout=timeout))


def _failed_record(name, message):
    result = Result(name)
    result.errors.append(message)
    result.say("  " + message)
    return result_record(result)


def check(names=None, directory=None, out=print, verbose=True, timeout=TIME_LIMIT, student=""):
    """Grade ``names`` (default: all) and print the report; returns one record per exercise
    (``result_record``).  A student's directory is graded one exercise at a time (``grade``: the student's
    code runs in a subprocess killed after ``timeout`` seconds, the comparisons here); the reference
    (``directory`` None) in this process."""
    names = exercise_names(names)
    records = []
    for name in names:
        where = source_path(name) if directory is None else Path(directory) / f"{name}.py"
        rec = result_record(grade(name)) if directory is None else grade_in_subprocess(name, directory, timeout)
        rec["student"] = student
        if verbose:
            out(f"== {name}: {EXERCISES[name].title} ({where})")
            for line in rec["lines"]:
                out(line)
            for it in rec["items"]:
                out(f"  [{it['points']}/{it['max_points']}] {it['message']}")
            out(f"{rec['summary']}  ({rec['points']}/{rec['max_points']} points)")
            out("")
        records.append(rec)
    passed = sum(r["passed"] for r in records)
    total, possible = sum(r["points"] for r in records), sum(r["max_points"] for r in records)
    out(f"{passed}/{len(records)} exercise(s) pass, {total}/{possible} points" +
        ("" if passed == len(records) else ":"))
    for r in records:
        if not r["passed"] or not verbose:
            out(f"  {r['summary']}  ({r['points']}/{r['max_points']})")
    return records


def write_results(records, json_path=None, csv_path=None):
    """The records of ``check`` as JSON (everything) and/or CSV (one row per student, exercise and item)."""
    if json_path:
        Path(json_path).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    if csv_path:
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["student", "exercise", "item", "points", "max_points", "message"])
            for r in records:
                for it in r["items"]:
                    w.writerow([r["student"], r["exercise"], it["item"], it["points"], it["max_points"],
                                it["message"]])
                if not r["items"]:
                    w.writerow([r["student"], r["exercise"], "", 0, 0, r["summary"]])


def check_class(class_dir, names=None, csv_path=None, out=print, timeout=TIME_LIMIT):
    """Grade every student of ``class_dir`` (one sub-folder per student, named after them) on ``names``;
    returns all records, and writes one CSV row per student: exercise totals and the total."""
    class_dir = Path(class_dir)
    students = sorted(p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise FileNotFoundError(f"exercises check --class: {class_dir} has no student folders (one folder per "
                                "student, each holding that student's NAME.py files)")
    names = exercise_names(names)
    records = []
    for s in students:
        recs = check(names, s, out=lambda *_: None, verbose=False, timeout=timeout, student=s.name)
        got, possible = sum(r["points"] for r in recs), sum(r["max_points"] for r in recs)
        out(f"{s.name:20s} {got}/{possible} points" + "".join(f"  {r['exercise']} {r['points']}/{r['max_points']}"
                                                         for r in recs))
        records.extend(recs)
    if csv_path:
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["student"] + names + ["total", "max_points"])
            for s in students:
                recs = {r["exercise"]: r for r in records if r["student"] == s.name}
                w.writerow([s.name] + [recs[n]["points"] for n in names] +
                           [sum(recs[n]["points"] for n in names), sum(recs[n]["max_points"] for n in names)])
    return records


if __name__ == "__main__":  # the student's process of grade: NAME STUDENT_FILE OUT.npz SEED
    import sys
    _run_student(sys.argv[1], sys.argv[2], int(sys.argv[4]), sys.argv[3])
