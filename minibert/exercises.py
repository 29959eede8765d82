"""Classroom exercises: write BERT's backward passes yourself, graded by gradient checks.

    minibert exercises list                       the exercises, in the suggested order
    minibert exercises make OUTDIR                write the student copies into OUTDIR
    minibert exercises check [NAME ...] [--dir D] grade the copies in D (default: the current
                                                  directory if `make` wrote it, else the reference)

**Where the solutions live.**  In the library itself: the exercise ``linear`` is
``minibert/layers/linear.py``, and so on for softmax, layernorm, gelu, cross_entropy, embedding and
attention; the one exercise that is not a layer, ``minibert/attention_ninja.py``, cuts the forward of
attention into atomic steps.  So a student who passes has written the code minibert runs, and there is
no copy to keep in step.  What the student writes is marked with nbgrader's markers, each alone on its
line, below a ``# TODO`` comment with hints (comments: the library runs as if they were not there)::

    # TODO: the three gradients dx, dw, db.
    #   hint: ...
    ### BEGIN SOLUTION
    dx = dout @ w
    ...
    ### END SOLUTION

**The checks live in the source too**: a short ``test_NAME()`` at the bottom of each file (``pytest
minibert/layers/NAME.py`` runs it), the checks the student should not see between ``### BEGIN HIDDEN
TESTS`` and ``### END HIDDEN TESTS``.  We keep them there rather than generate them in ``make`` because
that is the simpler design: one file holds a solution and its checks, so a teacher can hand it to
nbgrader as it is, and ``make`` stays a text filter with no code templates.

**make** copies every source, replacing each solution region by
``raise NotImplementedError("TODO (function): ...")`` (the TODO and its hints stay above it),
deleting the hidden tests, and making relative imports absolute (``from .softmax import ...`` becomes
``from minibert.layers.softmax import ...``, so a student's attention uses the library's softmax).  The
copies run as they are (``python linear.py`` runs the visible checks, which fail until the TODOs are
done).

**check** imports the student's files and grades each exercise on its own inputs (float64, sizes all
different, non-trivial parameters, repeated ids, padded keys, ignored labels, dropout): every forward
output is compared with ``minibert.layers``, every gradient with the reference backward *and* with
centered finite differences of the reference forward, one line per array, in the style of Karpathy's
"becoming a backprop ninja"::

    dk                       | exact: False | approx: False | maxdiff: 3.42e-01 | rel_error 4.1e-01 ... WRONG

An exercise passes when every array is within ``rel_error < 1e-7`` of both.  The exit code is 0 when
every graded exercise passes, 1 otherwise, 2 on a usage error.
"""
import argparse
import copy
import importlib
import importlib.util
import json
import math
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .gradcheck import check_layer, numerical_gradient, rel_error, report_line

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKER_FILE = ".minibert-exercises.json"  # written by `make`; `check` recognises a student directory by it
GRAD_TOL = 1e-7      # a correct float64 gradient lands at 1e-9..1e-12, a wrong one at 1e-3 or worse
FORWARD_TOL = 1e-10  # a float64 forward agrees to ~1e-15; a different (correct) formula to ~1e-13
ZERO_TOL = 1e-10     # |gradient| below this counts as the exact zero some gradients are (the key bias)


# ------------------------------------------------------------------------------------------------
# Solution regions: parsing, and the student copy
# ------------------------------------------------------------------------------------------------

@dataclass
class Region:
    kind: str            # "solution" or "hidden"
    begin: int           # line index of the BEGIN marker
    end: int             # line index of the END marker
    indent: str = ""     # the BEGIN marker's indentation
    function: str = ""   # the enclosing function's name
    todo: str = ""       # the TODO text (solution regions), continuation lines joined


def parse_regions(text, filename="<source>"):
    """Every marked region of ``text``, in order; a ValueError naming the file and line if the markers
    are malformed (not alone on their line, unbalanced, nested, or a solution without a TODO above it)."""
    lines = text.splitlines()
    regions, open_region = [], None
    markers = {BEGIN_SOLUTION: ("solution", True), END_SOLUTION: ("solution", False),
               BEGIN_HIDDEN: ("hidden", True), END_HIDDEN: ("hidden", False)}
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped in markers:
            kind, is_begin = markers[stripped]
            if is_begin:
                if open_region is not None:
                    raise ValueError(f"{filename}:{i + 1}: {stripped!r} inside the region opened at line "
                                     f"{open_region.begin + 1}; regions cannot nest")
                open_region = Region(kind, i, -1, line[:len(line) - len(line.lstrip())])
            else:
                if open_region is None or open_region.kind != kind:
                    raise ValueError(f"{filename}:{i + 1}: {stripped!r} without a matching BEGIN")
                open_region.end = i
                regions.append(open_region)
                open_region = None
        elif "### BEGIN" in line or "### END" in line:
            raise ValueError(f"{filename}:{i + 1}: a marker must be alone on its line (nbgrader compares "
                             f"the stripped line exactly), got {stripped!r}")
    if open_region is not None:
        raise ValueError(f"{filename}:{open_region.begin + 1}: region never closed")
    for r in regions:
        r.function = _enclosing_function(lines, r.begin)
        if r.kind == "solution":
            r.todo = _todo_above(lines, r.begin, filename)
    return regions


def _enclosing_function(lines, i):
    for j in range(i, -1, -1):
        s = lines[j].lstrip()
        if s.startswith("def "):
            return s[4:].split("(")[0]
    return "<module>"


def _todo_above(lines, i, filename):
    """The ``# TODO:`` comment in the comment block right above line ``i``, continuation lines joined."""
    j = i - 1
    while j >= 0 and lines[j].strip().startswith("#"):
        j -= 1
    block = [l.strip().lstrip("#").strip() for l in lines[j + 1:i]]
    starts = [n for n, l in enumerate(block) if l.startswith("TODO")]
    if not starts:
        raise ValueError(f"{filename}:{i + 1}: a solution region needs a '# TODO: ...' comment (with hints) "
                         "right above it; the student copy keeps it")
    todo = [block[starts[0]].split(":", 1)[-1].strip()]
    for l in block[starts[0] + 1:]:
        if l.startswith("hint") or not l:
            break
        todo.append(l)
    return " ".join(todo)


def student_version(text, filename="<source>"):
    """The student copy of an exercise source: each solution region becomes one
    ``raise NotImplementedError("TODO (function): ...")`` at the region's indentation (the TODO and
    hints above it are kept), and each hidden-tests region disappears."""
    lines = text.splitlines()
    regions = parse_regions(text, filename)
    out, pos = [], 0
    for r in regions:
        out.extend(lines[pos:r.begin])
        if r.kind == "solution":
            message = f"TODO ({r.function}): {r.todo}"
            out.append(f"{r.indent}raise NotImplementedError({message!r})")
        pos = r.end + 1
    out.extend(lines[pos:])
    return "\n".join(out) + "\n"


def source_path(name):
    """The file of exercise ``name`` (with its solutions): a file of ``minibert/layers``, or the ninja's."""
    return Path(importlib.util.find_spec(EXERCISES[name].module).origin)


_RELATIVE_IMPORT = re.compile(r"^(\s*from\s+)(\.[\w.]*)(\s+import\b)", re.M)


def source_text(name):
    """The source of exercise ``name`` as a file that runs outside the package: the module's text with
    its relative imports made absolute (``from .softmax import`` -> ``from minibert.layers.softmax
    import``)."""
    package = EXERCISES[name].module.rpartition(".")[0]
    text = source_path(name).read_text(encoding="utf-8")
    return _RELATIVE_IMPORT.sub(lambda m: m[1] + importlib.util.resolve_name(m[2], package) + m[3], text)


def make(outdir, force=False, names=None):
    """Write the student copies of ``names`` (default: every exercise) into ``outdir``; returns the paths.

    Refuses to overwrite an exercise file that is already there unless ``force``: it may hold a
    student's work."""
    names = list(names or EXERCISES)
    _check_names(names)
    outdir = Path(outdir)
    targets = [outdir / f"{n}.py" for n in names]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"exercises make: {', '.join(existing)} already exist(s) and may hold a student's "
                              "work; choose another directory or pass --force to overwrite")
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, target in zip(names, targets):
        text = student_version(source_text(name), str(source_path(name)))
        header = (f"# Student copy of {EXERCISES[name].module.replace('.', '/')}.py, written by "
                  "`minibert exercises make`.\n"
                  f"# Replace every `raise NotImplementedError(...)` by your code, then run `python {name}.py`\n"
                  f"# and `minibert exercises check {name} --dir .`\n")
        compile(header + text, str(target), "exec")  # the copy must be valid Python
        target.write_text(header + text, encoding="utf-8")
        written.append(target)
    readme = outdir / "README.md"
    if force or not readme.exists():
        readme.write_text(_student_readme(names), encoding="utf-8")
    (outdir / MARKER_FILE).write_text(json.dumps({"minibert_exercises": 1, "exercises": names}, indent=1) + "\n",
                                      encoding="utf-8")
    return written


def _student_readme(names):
    rows = "\n".join(f"| `{n}.py` | {EXERCISES[n].title} | `docs/{EXERCISES[n].docs}` |" for n in names)
    return f"""# minibert exercises

Write BERT's backward passes yourself. In each file, replace every `raise NotImplementedError(...)` by
your code; the `# TODO` above it says what to compute, the `hint:` lines how. Then:

```bash
python linear.py                          # the checks in the file: float64 gradient checks
minibert exercises check linear --dir .   # the grade: more cases, compared with the reference
minibert exercises check --dir .          # every exercise
```

The grade prints one line per array, `name | exact | approx | maxdiff`, then the relative error
against the reference and against finite differences: a correct float64 gradient is below 1e-7
(typically 1e-10), a wrong one around 1e-2 or worse. The derivations are in minibert's `docs/backward/`.

| file | exercise | read first |
|---|---|---|
{rows}

Keep the functions' names, arguments and caches as the docstrings give them: the grader calls them.
"""


# ------------------------------------------------------------------------------------------------
# The check students run from their files
# ------------------------------------------------------------------------------------------------

def check_gradients(forward, backward, inputs, names, skip=(), tol=GRAD_TOL, seed=0):
    """Gradient-check ``forward``/``backward`` in float64 on every float input (see
    ``minibert.gradcheck.check_layer``), print each relative error next to the range it should fall
    in, and raise AssertionError naming the gradients that are off.  ``skip``: names printed but not
    asserted (e.g. a gradient that is exactly zero, whose relative error compares two noises)."""
    errors = check_layer(forward, backward, inputs, names, seed=seed)
    wrong = []
    for name, e in errors.items():
        if name in skip:
            print(f"  {name:12s} rel_error {e:.1e}  (not checked: the true gradient is exactly 0)")
            continue
        ok = e < tol
        print(f"  {name:12s} rel_error {e:.1e}  (expect < {tol:.0e}: 1e-12..1e-8 when right)  "
              f"{'ok' if ok else 'WRONG'}")
        if not ok:
            wrong.append(f"{name} ({e:.1e})")
    assert not wrong, f"gradients off: {', '.join(wrong)}; expected every rel_error < {tol:.0e}"
    return errors


# ------------------------------------------------------------------------------------------------
# Grading
# ------------------------------------------------------------------------------------------------

@dataclass
class Result:
    """The grade of one exercise.  ``wrong``: (array name, case, rel_error) of every array that is off;
    ``todo``: functions that still raise NotImplementedError; ``errors``: other exceptions."""
    name: str
    lines: list = field(default_factory=list)
    wrong: list = field(default_factory=list)
    todo: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    checked: int = 0

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
            parts.append("wrong: " + ", ".join(f"{n} (wrong shape)" if math.isinf(e) else f"{n} (rel_error up to {e:.1e})"
                                               for n, e in worst.items()))
        if self.todo:
            parts.append("not implemented yet: " + ", ".join(dict.fromkeys(self.todo)))
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return f"FAIL  {self.name}: " + "; ".join(parts)


class _Grader:
    """Helpers shared by the exercise graders; one instance per exercise."""

    def __init__(self, result, module, seed):
        self.r = result
        self.m = module
        self.rng = np.random.default_rng(seed)
        self.case = ""

    # -- calling student code ----------------------------------------------------------------------
    def student(self, fname):
        fn = getattr(self.m, fname, None)
        if not callable(fn):
            self.r.errors.append(f"{fname} is missing from {Path(getattr(self.m, '__file__', '?')).name}")
            self.r.say(f"  {fname}: missing (keep the function names of the exercise)")
        return fn

    def call(self, label, fn, *args, **kwargs):
        """(True, value) or (False, None) after recording a TODO or an error under ``label``."""
        if fn is None:
            return False, None
        try:
            return True, fn(*copy.deepcopy(args), **kwargs)  # copies: a student may write into inputs
        except NotImplementedError as e:
            self.r.todo.append(label)
            self.r.say(f"  {label}: not implemented yet ({str(e).splitlines()[0] if str(e) else 'NotImplementedError'})")
        except Exception as e:  # noqa: BLE001 -- a student's bug of any kind is a grade, not a crash
            where = _student_frame(e, getattr(self.m, "__file__", ""))
            msg = f"{label}: {type(e).__name__}: {e}{where}"
            self.r.errors.append(msg)
            self.r.say(f"  {msg}")
        return False, None

    # -- comparing ---------------------------------------------------------------------------------
    def compare(self, label, got, want, numerical=None, tol=GRAD_TOL):
        """One report line for one array: vs the reference ``want`` and, for gradients, vs the finite
        differences ``numerical``.  A reference that is exactly 0 (to rounding) asks for |got| < 1e-10."""
        self.r.checked += 1
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
        line = report_line(label, got_arr, want) + f" | rel_error {err:.1e}"
        zero = want.size > 0 and float(np.abs(want).max()) < 1e-12
        ok = err < tol
        if zero:
            big = float(np.abs(got_arr).max()) if got_arr.size else 0.0
            ok = big < ZERO_TOL
            line += f" (the true value is exactly 0: expect |max| < {ZERO_TOL:.0e}, got {big:.1e})"
        elif numerical is not None:
            fd = rel_error(got_arr, numerical)
            ok = ok and fd < tol
            line += f", vs finite differences {fd:.1e} (expect < {tol:.0e})"
            err = max(err, fd)
        else:
            line += f" (expect < {tol:.0e})"
        self.r.say("  " + line + ("  ok" if ok else "  WRONG"))
        if not ok:
            self.r.wrong.append((label, self.case, err))
        return ok

    def section(self, title):
        self.case = title
        self.r.say(f" {title}")

    def randn(self, *shape, scale=1.0):
        return self.rng.standard_normal(shape) * scale

    # -- the usual pair: forward compared, backward gradient-checked -------------------------------
    def pair(self, title, fwd_name, bwd_name, ref_fwd, ref_bwd, inputs, grad_names, bind=None,
             bwd_args=(), fd=True):
        """Grade ``fwd_name``/``bwd_name`` of the student against ``ref_fwd``/``ref_bwd`` on ``inputs``.

        ``bind(fn) -> fn`` fixes non-differentiated arguments (masks, labels, heads) for both sides;
        ``grad_names`` name the backward's outputs, one per float input; ``fd=False`` skips finite
        differences (when the backward applies a convention, such as ``padding_idx``)."""
        self.section(title)
        bind = bind or (lambda f: f)
        s_fwd, s_bwd = self.student(fwd_name), self.student(bwd_name)
        r_fwd = bind(ref_fwd)
        r_out, r_cache = r_fwd(*inputs)
        ok, res = self.call(fwd_name, bind(s_fwd) if s_fwd else None, *inputs)
        s_cache = None
        if ok:
            if isinstance(res, tuple) and len(res) == 2:
                self.compare("out" if np.ndim(r_out) else "loss", res[0], r_out, tol=FORWARD_TOL)
                s_cache = res[1]
            else:
                self.r.errors.append(f"{fwd_name} must return (out, cache)")
                self.r.say(f"  {fwd_name}: must return (out, cache), got {type(res).__name__}")
        dout = self.randn(*np.shape(r_out))
        ref = ref_bwd(dout, r_cache, *bwd_args)
        ref = ref if isinstance(ref, tuple) else (ref,)
        if s_cache is None:
            self.r.say("  (your backward gets the reference forward's cache, as the docstring describes it)")
            s_cache = r_cache
        ok, got = self.call(bwd_name, s_bwd, dout, s_cache, *bwd_args)
        if not ok:
            return
        got = got if isinstance(got, tuple) else (got,)
        if len(got) != len(ref):
            msg = f"{bwd_name} returned {len(got)} value(s), expected {len(ref)}: {', '.join(grad_names)}"
            self.r.errors.append(msg)
            self.r.say("  " + msg)
            return
        floats = [i for i, x in enumerate(inputs) if isinstance(x, np.ndarray) and x.dtype.kind == "f"]
        for name, pos, g, want in zip(grad_names, floats, got, ref):
            num = numerical_gradient(lambda: r_fwd(*inputs)[0], inputs[pos], dout) if fd else None
            self.compare(name, g, want, num)


def _student_frame(exc, student_file):
    """' (at linear.py:31 in linear_backward)' for the innermost frame in the student's file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if student_file and
              os.path.abspath(f.filename) == os.path.abspath(student_file)]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {Path(f.filename).name}:{f.lineno} in {f.name}: {f.line})"


# ---- the exercises -----------------------------------------------------------------------------

def _grade_linear(g):
    from .layers import linear as L
    w, b = g.randn(7, 12), g.randn(7)
    for title, x in (("x (2, 5, 12), w (7, 12), b (7,)", g.randn(2, 5, 12)),
                     ("a 2-D input: x (3, 12)", g.randn(3, 12))):
        g.pair(title, "linear_forward", "linear_backward", L.linear_forward, L.linear_backward,
               [x, w, b], ["dx", "dw", "db"])


def _grade_softmax(g):
    from .layers import softmax as L
    mask = L.attention_mask_to_additive(np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), np.float64)
    g.pair("attention scores (2, 3, 5, 5) with padded keys", "softmax_forward", "softmax_backward",
           L.softmax_forward, L.softmax_backward, [g.randn(2, 3, 5, 5, scale=2)], ["dx"],
           bind=lambda f: (lambda x: f(x, mask)))
    g.pair("no mask, x (3, 7)", "softmax_forward", "softmax_backward", L.softmax_forward, L.softmax_backward,
           [g.randn(3, 7)], ["dx"])
    g.section("huge logits [1000, 1000, -1000]: no overflow")
    ok, res = g.call("softmax_forward", g.student("softmax_forward"), np.array([[1000.0, 1000.0, -1000.0]]))
    if ok:
        with np.errstate(all="ignore"):
            g.compare("p", res[0], [[0.5, 0.5, 0.0]], tol=FORWARD_TOL)


def _grade_layernorm(g):
    from .layers import layernorm as L
    w, b = 1 + g.randn(12, scale=0.5), g.randn(12)
    for title, x in (("x (2, 5, 12) with mean 1.5 and std 3, non-trivial w and b", g.randn(2, 5, 12) * 3 + 1.5),
                     ("one row, x (1, 12)", g.randn(1, 12))):
        g.pair(title, "layernorm_forward", "layernorm_backward", L.layernorm_forward, L.layernorm_backward,
               [x, w, b], ["dx", "dw", "db"], bind=lambda f: (lambda x, w, b: f(x, w, b, 1e-12)))


def _grade_gelu(g):
    from .layers import gelu as L
    x = g.randn(2, 5, 7, scale=2.5)
    g.pair("exact GELU, x (2, 5, 7) in about [-7, 7]", "gelu_forward", "gelu_backward",
           L.gelu_forward, L.gelu_backward, [x], ["dx"])
    g.pair("tanh GELU, same x", "gelu_tanh_forward", "gelu_tanh_backward",
           L.gelu_tanh_forward, L.gelu_tanh_backward, [x], ["dx"])


def _grade_cross_entropy(g):
    from .layers import cross_entropy as L
    labels = g.rng.integers(0, 11, size=10)
    labels[[1, 4, 5]] = -100
    cases = (("logits (10, 11), 3 rows ignored (label -100)", labels),
             ("every row counted", g.rng.integers(0, 11, size=10)),
             ("every row ignored: loss 0, gradient 0", np.full(10, -100)))
    for title, lab in cases:
        g.pair(title, "cross_entropy_forward", "cross_entropy_backward", L.cross_entropy_forward,
               L.cross_entropy_backward, [g.randn(10, 11, scale=2)], ["dlogits"],
               bind=lambda f, lab=lab: (lambda z: f(z, lab)))


def _grade_embedding(g):
    from .layers import embedding as L
    ids = np.array([[3, 1, 3, 3, 0], [1, 4, 4, 2, 3], [0, 0, 6, 3, 1]])  # 3 used five times, 6 once, 5 never
    w = g.randn(7, 12)
    bind = lambda f: (lambda w: f(ids, w))  # noqa: E731
    g.pair("ids (3, 5) with repeated ids, w (7, 12)", "embedding_forward", "embedding_backward",
           L.embedding_forward, L.embedding_backward, [w], ["dw"], bind=bind)
    g.pair("padding_idx=0: that row's gradient stays 0", "embedding_forward", "embedding_backward",
           L.embedding_forward, L.embedding_backward, [w], ["dw"], bind=bind, bwd_args=(0,), fd=False)


_ATT_NAMES = ["dx", "dwq", "dbq", "dwk", "dbk", "dwv", "dbv", "dwo", "dbo"]


def _attention_inputs(g, B=2, T=5, C=12):
    from .layers.softmax import attention_mask_to_additive
    x = g.randn(B, T, C)
    params = [g.randn(*s, scale=0.5) for s in [(C, C), (C,)] * 4]
    mask = attention_mask_to_additive(np.array([[1] * T, [1, 1, 1] + [0] * (T - 3)]), np.float64)
    return x, params, mask


def _grade_attention(g):
    from .layers import attention as L
    x, params, mask = _attention_inputs(g)
    A = 3
    q, k, v = (g.randn(2, A, 5, 4) for _ in range(3))
    g.pair("scaled dot-product attention, q k v (2, 3, 5, 4), padded keys", "sdpa_forward", "sdpa_backward",
           L.sdpa_forward, L.sdpa_backward, [q, k, v], ["dq", "dk", "dv"],
           bind=lambda f: (lambda q, k, v: f(q, k, v, mask)))
    g.pair("the same with attention dropout 0.3 (the same keep-mask on every call)", "sdpa_forward",
           "sdpa_backward", L.sdpa_forward, L.sdpa_backward, [q, k, v], ["dq", "dk", "dv"],
           bind=lambda f: (lambda q, k, v: f(q, k, v, mask, 0.3, np.random.default_rng(5), True)))
    g.pair("multi-head layer, x (2, 5, 12), 3 heads, padded keys", "attention_forward", "attention_backward",
           L.attention_forward, L.attention_backward, [x] + params, _ATT_NAMES,
           bind=lambda f: (lambda x, *p: f(x, *p, mask, A)))
    g.pair("with attention dropout 0.3 (the same mask on every call)", "attention_forward", "attention_backward",
           L.attention_forward, L.attention_backward, [x] + params, _ATT_NAMES,
           bind=lambda f: (lambda x, *p: f(x, *p, mask, A, 0.3, np.random.default_rng(5), True)))


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


def _grade_attention_ninja(g):
    from . import attention_ninja as ref
    from .layers import attention as L
    x, params, mask = _attention_inputs(g)
    A = 3
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
            g.compare("d" + name, a, b)
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
                    num = numerical_gradient(fwd, inputs[i], dout)
                    g.compare(name, grads.get(name[1:]) if isinstance(grads, dict) else None, want, num)
    # part 2: the fused softmax backward
    g.section("softmax_fused_backward: steps 4-9 in one line")
    ok, got = g.call("softmax_fused_backward", g.student("softmax_fused_backward"), up["P"], cache["P"])
    if ok:
        g.compare("dZ (fused)", got, up["Z"])


@dataclass
class Exercise:
    name: str
    title: str
    docs: str
    grade: Callable
    module: str = ""  # the module holding the solutions; default: minibert.layers.NAME

    def __post_init__(self):
        self.module = self.module or f"minibert.layers.{self.name}"


EXERCISES = {e.name: e for e in [
    Exercise("linear", "the linear layer: dx, dW, db", "backward/linear.md", _grade_linear),
    Exercise("softmax", "stable softmax with a padding mask, and its backward", "backward/softmax.md",
             _grade_softmax),
    Exercise("layernorm", "LayerNorm forward and its three-term backward", "backward/layernorm.md",
             _grade_layernorm),
    Exercise("gelu", "GELU, exact (erf) and tanh forms, each with its own backward", "backward/gelu.md",
             _grade_gelu),
    Exercise("cross_entropy", "fused softmax cross-entropy with ignore_index", "backward/cross_entropy.md",
             _grade_cross_entropy),
    Exercise("embedding", "the embedding lookup and its scatter-add backward", "backward/embedding.md",
             _grade_embedding),
    Exercise("attention_ninja", "backprop ninja: attention through 13 atomic steps, then the fused softmax",
             "backward/attention.md", _grade_attention_ninja, module="minibert.attention_ninja"),
    Exercise("attention", "multi-head attention's backward in the library's compact form",
             "backward/attention.md", _grade_attention),
]}


def _check_names(names):
    unknown = [n for n in names if n not in EXERCISES]
    if unknown:
        raise ValueError(f"unknown exercise(s) {', '.join(map(repr, unknown))}; the exercises are: "
                         f"{', '.join(EXERCISES)}")


def load_module(path, name):
    """Import a student's file under a private module name (a fresh import every time)."""
    spec = importlib.util.spec_from_file_location(f"_minibert_student_{name}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade(name, directory=None, seed=0):
    """Grade one exercise; ``directory`` holds the student's ``NAME.py`` (None: the library's own module)."""
    _check_names([name])
    result = Result(name)
    path = source_path(name) if directory is None else Path(directory) / f"{name}.py"
    if not path.is_file():
        result.errors.append(f"{path} not found (write the student copies with `minibert exercises make DIR`)")
        return result
    try:
        module = importlib.import_module(EXERCISES[name].module) if directory is None else load_module(path, name)
    except Exception as e:  # noqa: BLE001 -- a syntax error in a student's file is a grade
        detail = f"{type(e).__name__}: {e}"
        result.errors.append(f"cannot import {path.name}: {detail}")
        result.say(f"  cannot import {path}: {detail}")
        return result
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        EXERCISES[name].grade(_Grader(result, module, seed))
    return result


def check(names=None, directory=None, out=print, verbose=True):
    """Grade ``names`` (default: all) and print the report; returns the list of ``Result``."""
    names = list(names or EXERCISES)
    _check_names(names)
    results = []
    for name in names:
        where = source_path(name) if directory is None else Path(directory) / f"{name}.py"
        r = grade(name, directory)
        if verbose:
            out(f"== {name}: {EXERCISES[name].title} ({where})")
            for line in r.lines:
                out(line)
            out(r.summary())
            out("")
        results.append(r)
    passed = sum(r.passed for r in results)
    out(f"{passed}/{len(results)} exercise(s) pass" + ("" if passed == len(results) else ":"))
    for r in results:
        if not r.passed or not verbose:
            out("  " + r.summary())
    return results


# ------------------------------------------------------------------------------------------------
# The command line: `minibert exercises ...`
# ------------------------------------------------------------------------------------------------

def add_subparser(sub):
    p = sub.add_parser("exercises", help="classroom exercises: list, make the student copies, check them",
                       description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ex = p.add_subparsers(dest="exercises_command", required=True)
    ex.add_parser("list", help="the exercises, in the suggested order")
    m = ex.add_parser("make", help="write the student copies (solutions replaced by raise NotImplementedError)")
    m.add_argument("outdir")
    m.add_argument("names", nargs="*", metavar="NAME", help="only these exercises (default: all)")
    m.add_argument("--force", action="store_true", help="overwrite exercise files already in OUTDIR")
    c = ex.add_parser("check", help="grade the student copies with gradient checks against the reference")
    c.add_argument("names", nargs="*", metavar="NAME", help="only these exercises (default: all)")
    c.add_argument("--dir", default=None, help="the student's directory (default: the current directory if "
                   "`make` wrote it, else the reference solutions)")
    c.add_argument("--brief", action="store_true", help="only the pass/fail summary")


def run(args):
    """Dispatch ``minibert exercises ...``; returns the exit code."""
    cmd = args.exercises_command
    if cmd == "list":
        for i, (name, e) in enumerate(EXERCISES.items(), 1):
            print(f"{i}. {name:16s} {e.title}  (docs/{e.docs})")
        return 0
    if cmd == "make":
        written = make(args.outdir, force=args.force, names=args.names or None)
        print(f"wrote {len(written)} exercise(s) into {args.outdir}: {', '.join(p.name for p in written)}")
        print(f"next: cd {args.outdir} && python {written[0].name} && minibert exercises check --dir .")
        return 0
    directory = args.dir
    if directory is None and Path(MARKER_FILE).is_file():
        directory = "."
    if directory is not None and not Path(directory).is_dir():
        raise FileNotFoundError(f"exercises check: --dir {directory!r} is not a directory")
    if directory is None:
        print("grading the reference solutions, minibert's own code (pass --dir DIR to grade a student's "
              "copies)\n")
    results = check(args.names or None, directory, verbose=not args.brief)
    return 0 if all(r.passed for r in results) else 1
