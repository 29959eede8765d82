"""Judging: one exercise's grading flow calls the student's functions and compares every array.

``Result`` is the grade of one exercise; ``Grader`` holds what the flows share: finding the student's
function (the foreign-code rule of ``origin.py``), calling it, and comparing each array with the
reference's and, for gradients, with centered finite differences of the reference's forward, one line per
array in the style of Karpathy's "becoming a backprop ninja"::

    dk                       | exact: False | approx: False | maxdiff: 3.42e-01 | rel_error 4.1e-01 ... WRONG

A wrong array also gets the likely mistake in words (``diagnose.py``).  ``Grader.grade_case`` grades one
case of a layer's table (``minibert.gradcheck.GradCase``); the checks beyond the tables are ``checks.py``.
The same flow runs in two processes (``protocol.py``): it only computes in the student's, it judges here.
"""
import copy
import math
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...gradcheck import GRAD_TOL, ZERO_TOL, numerical_gradient, rel_error, report_line
from .diagnose import diagnose
from .origin import foreign_reason, function_info

FORWARD_TOL = 1e-10  # a float64 forward agrees to ~1e-15; a different (correct) formula to ~1e-13


@dataclass
class Result:
    """The grade of one exercise.  ``wrong``: (array name, case, rel_error) of every array that is off
    (for an array that must be exactly 0, named in ``zeros``, its largest |entry| instead of the
    rel_error); ``todo``: functions that still raise NotImplementedError; ``errors``: other exceptions;
    ``integrity``: what the instructor should look at (``integrity.py``), which does not change points."""
    name: str
    lines: list = field(default_factory=list)
    wrong: list = field(default_factory=list)
    zeros: set = field(default_factory=set)
    todo: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    checked: int = 0
    checks: list = field(default_factory=list)  # [label, case, ok, function] of every array compared
    foreign: list = field(default_factory=list)  # functions not defined in the student's own code
    notes: dict = field(default_factory=dict)  # array/property -> why it is wrong, in words
    integrity: list = field(default_factory=list)
    zero_checks: set = field(default_factory=set)  # (label, case) of the comparisons with an exact 0

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
                f"{n} ({self.notes[n]})" if n in self.notes else f"{n} (wrong shape)" if math.isinf(e) else
                f"{n} (max|{n}| {e:.1e}, should be 0)" if n in self.zeros else f"{n} (rel_error up to {e:.1e})"
                for n, e in worst.items()))
        if self.todo:
            parts.append("not implemented yet: " + ", ".join(dict.fromkeys(self.todo)))
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return f"FAIL  {self.name}: " + "; ".join(parts)


class Grader:
    """Helpers shared by the exercise graders; one instance per exercise.  This class calls and judges
    in one process (the library's own code); ``protocol.Recorder`` / ``protocol.Replayer`` split it."""
    judges = True  # False in the student's process (``Recorder``): it computes, the grader's judges

    def __init__(self, result, module, seed, own_code_only=True):
        self.r = result
        self.m = module
        self.own_code_only = own_code_only  # False only when grading the library's own module
        self.rng = np.random.default_rng(seed)
        self.case = ""
        self.producer = ""
        self.student_file = getattr(module, "__file__", None)

    # -- calling student code ----------------------------------------------------------------------
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

    def run(self, fn, args, kwargs):
        """(status, value or message, the exception) of one call of the student's ``fn``
        (``protocol.Recorder`` runs it inside the frame the sandbox recognises as the student's)."""
        return run_call(fn, args, kwargs)

    def invoke(self, label, fn, args, kwargs):
        """("ok", the value), ("todo", the message) or ("error", the message) of one student call."""
        status, value, exc = self.run(fn, args, kwargs)
        if status == "error":
            value = f"{label}: {value}{student_frame(exc, self.student_file or '')}"
        return status, value

    def numerical(self, f, x, dout):
        """Centered finite differences of the reference ``f`` (only where the grade is decided)."""
        return numerical_gradient(f, x, dout) if self.judges else None

    # -- comparing ---------------------------------------------------------------------------------
    def compare(self, label, got, want, numerical=None, tol=GRAD_TOL, zero=False, upstream=None):
        """One report line for one array: vs the reference ``want`` and, for gradients, vs the finite
        differences ``numerical``.  ``zero``: the true value is exactly 0 for every input (attention's
        key bias), so ``got`` must be below ``ZERO_TOL`` (``report.item_scores`` counts such an array only
        when another array of its function is right: zeros alone earn nothing).  ``upstream``: the
        gradient the backward received, for the diagnosis of a wrong array."""
        if not self.judges:
            return None
        self.r.checked += 1
        self.r.checks.append([label, self.case, False, self.producer])
        try:
            got_arr = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            got_arr = None
        want = np.asarray(want, dtype=np.float64)
        if got_arr is None or got_arr.shape != want.shape:
            shape = "not an array" if got_arr is None else f"shape {got_arr.shape}"
            self.r.say(f"  {label:24s} | {shape}, expected shape {want.shape}  WRONG")
            if got_arr is not None and (why := diagnose(got_arr, want)):
                self.r.say(f"  {'':24s}   likely: {why}")
            self.r.wrong.append((label, self.case, math.inf))
            return False
        err = rel_error(got_arr, want)
        line = report_line(label, got_arr, want) + f" | rel_error {err:.1e}"
        ok = err < tol
        if zero:
            big = float(np.abs(got_arr).max()) if got_arr.size else 0.0
            ok, err = big < ZERO_TOL, big
            self.r.zeros.add(label)
            self.r.zero_checks.add((label, self.case))
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
            why = "" if zero else diagnose(got_arr, want, upstream)
            if why:
                self.r.say(f"  {'':24s}   likely: {why}")
                self.r.notes.setdefault(label, why)
            self.r.wrong.append((label, self.case, err))
        return ok

    def verdict(self, label, ok, message):
        """One check that is not a comparison of arrays (a statistic, a property of every draw)."""
        if not self.judges:
            return None
        self.r.checked += 1
        self.r.checks.append([label, self.case, bool(ok), self.producer])
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
        inputs and arguments (a ``minibert.gradcheck.GradCase``), against the library's pair.  The
        reference's backward runs only where the grade is decided (never in the student's process)."""
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
        if s_cache is None:
            self.r.say("  (your backward gets the reference forward's cache, as the docstring describes it)")
            s_cache = r_cache
        ok, got = self.call(bwd_name, s_bwd, dout, s_cache)
        if not ok or not self.judges:
            return
        ref = case.backward(dout, r_cache)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = got if isinstance(got, tuple) else (got,)
        if len(got) != len(ref):
            msg = f"{bwd_name} returned {len(got)} value(s), expected {len(ref)}: {', '.join(case.grad_names)}"
            self.r.errors.append(msg)
            self.r.say("  " + msg)
            return
        for name, x, g, want in zip(case.grad_names, inputs, got, ref):
            zero = name in case.zero
            num = None if zero else self.numerical(lambda: r_fwd(*inputs)[0], x, dout)
            self.compare(name, g, want, num, zero=zero, upstream=dout)


def run_call(fn, args, kwargs):
    """("ok", value, None), ("todo", message, exc) or ("error", "Type: message", exc): the call of a
    student's function on copies of ``args`` (a student may write into inputs).  The copying and the
    messages (a student's exception may define ``__str__``) happen here, inside the student's call."""
    try:
        return "ok", fn(*copy.deepcopy(args), **kwargs), None
    except NotImplementedError as e:
        return "todo", str(e).splitlines()[0] if str(e) else "NotImplementedError", e
    except Exception as e:  # noqa: BLE001 -- a student's bug of any kind is a grade, not a crash
        return "error", f"{type(e).__name__}: {e}", e


def student_frame(exc, student_file):
    """' (at linear.py:31 in linear_backward)' for the innermost frame in the student's file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if student_file and
              os.path.abspath(f.filename) == os.path.abspath(student_file)]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {Path(f.filename).name}:{f.lineno} in {f.name}: {f.line})"
