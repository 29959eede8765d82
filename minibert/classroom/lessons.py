"""What the notebooks in ``notebooks/`` share: showing the library's own source, so that what a
student reads is what runs.  (Imports IPython, which jupyter brings; the library never imports this.)

**The exercises' answers stay hidden from students.**  The layer files (``minibert/layers/*.py``) and
the backprop ninja are also the exercises' sources: their solutions sit between ``### BEGIN SOLUTION``
and ``### END SOLUTION``.  A lesson that shows such a function would hand out the answer before the
exercise, so :func:`show` has two modes:

* **student** (``STUDENT = True``): every solution region is shown as the student copy of
  ``minibert exercises make`` shows it (the ``# TODO`` and its hints, then ``raise
  NotImplementedError(...)``), the hidden tests are left out, and a last comment names the exercise
  that asks for the code.  The lesson's cells still *run* the library's reference, so its checks
  and plots are the same in both modes.
* **instructor** (``STUDENT = False``, the default): the source as it is.  CI runs the lessons this way.

``STUDENT`` starts from the environment variable ``MINIBERT_STUDENT`` (``1``/``true``/``yes``: student;
unset, ``0``, ``false`` or ``no``: instructor); the student copies set it to ``1`` in their first cell.

**The student copies** (``minibert lessons DIR``, :func:`write_lessons`; ``./run lessons`` opens them):
every your-turn emptied, every answer cell "YOUR ANSWER HERE", every hidden test gone, as nbgrader's
``generate_assignment`` does it, and refused if a line of any answer (:func:`answer_lines`) survives.
A your-turn's check calls :func:`check`, which says right or wrong and where, never the expected value.
A notebook may flip it (``lessons.STUDENT = False`` after the exercise is done), and ``show(...,
student=...)`` overrides it for one call.
"""
import inspect
import os
import re
from pathlib import Path

from .exercises import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _student_from_env(value):
    """``MINIBERT_STUDENT``'s value as a bool; a ValueError naming the variable for anything else."""
    v = (value or "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"MINIBERT_STUDENT must be one of {', '.join(_TRUE + _FALSE[1:])} (or unset), got {value!r}")


STUDENT = _student_from_env(os.environ.get("MINIBERT_STUDENT"))


def _exercise_of(obj):
    """The name of the exercise whose source holds ``obj`` (None if none does)."""
    from .exercises import EXERCISES
    module = getattr(inspect.unwrap(obj), "__module__", None)
    return next((e.name for e in EXERCISES.values() if e.module == module), None)


def source(obj, first=None, last=None, student=None):
    """The source text :func:`show` displays (see there), as a string."""
    from .exercises import parse_regions, student_version
    student = STUDENT if student is None else student
    text = inspect.getsource(obj)
    name = getattr(obj, "__qualname__", str(obj))
    hidden = False
    if student:
        regions = parse_regions(text, name)
        hidden = any(r.kind == "solution" for r in regions)
        text = student_version(text, name) if regions else text
    lines = text.splitlines()
    if first is not None:
        if last is None:
            raise ValueError("show: pass `last` with `first` (the lines from the one containing `first` to the "
                             "next one containing `last`)")
        try:
            i = next(n for n, line in enumerate(lines) if first in line)
            j = next(n for n, line in enumerate(lines) if n >= i and last in line)
        except StopIteration:
            raise ValueError(f"show: no line containing {first!r} followed by one containing {last!r} in the "
                             f"source of {name}") from None
        lines = lines[i:j + 1]
    if hidden:
        ex = _exercise_of(obj)
        where = (f"exercise `{ex}`: `minibert exercises make DIR`, then `minibert exercises check {ex} --dir DIR`"
                 if ex else "the exercises: `minibert exercises list`")
        lines.append(f"# (student view: the answer is yours to write, in {where}; "
                     "the cells below run the library's reference)")
    return "\n".join(lines)


def show(obj, first=None, last=None, student=None):
    """The source of ``obj`` as a highlighted code cell output; with ``first`` and ``last``, only the
    lines from the first one containing ``first`` to the next one containing ``last``.

    In student mode (``student=True``, or ``None`` and the module's ``STUDENT`` is set) each exercise's
    solution region is replaced by its ``# TODO`` stub, as in the student copies, so a lesson never
    shows an exercise's answer; see the module docstring."""
    from IPython.display import Code
    return Code(source(obj, first, last, student), language="python")


# ---- the student copies: ``minibert lessons DIR`` ------------------------------------------------
#
# The committed notebooks are the instructor's copies (CI runs them with the answers filled in).  A
# student gets them through ``write_lessons``: every answer removed the way nbgrader's own
# ``generate_assignment`` removes it, so the copies need nothing but nbformat to make.

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"  # nbgrader's default stub (ClearSolutions)
ANSWER_STUB = "YOUR ANSWER HERE"                             # nbgrader's default for a Markdown answer
_BEGIN = {BEGIN_SOLUTION: "solution", BEGIN_HIDDEN: "hidden"}
_END = {END_SOLUTION: "solution", END_HIDDEN: "hidden"}
INSTRUCTOR_ONLY = "instructor-only"  # a cell tag: the student copy replaces the cell by a note
INSTRUCTOR_ONLY_NOTE = "*(This cell is in the instructor's copy only: it shows the answer to the your-turn above.)*"
STUDENT_SETUP = ("import os\n"
                 "os.environ[\"MINIBERT_STUDENT\"] = \"1\"  # the student copy: `show` hides every exercise's answer\n")


def marked_regions(lines):
    """[(kind, begin, end)] for the ``### BEGIN/END SOLUTION`` and ``### BEGIN/END HIDDEN TESTS`` regions
    of ``lines`` (indices of the marker lines).  Unlike ``exercises.parse_regions`` it asks for no TODO
    above a region: a lesson's your-turn has its instructions in the Markdown cell above."""
    regions, open_ = [], None
    for i, line in enumerate(lines):
        s = line.strip()
        if s in _BEGIN:
            open_ = (_BEGIN[s], i)
        elif s in _END and open_ is not None and open_[0] == _END[s]:
            regions.append((open_[0], open_[1], i))
            open_ = None
    return regions


# the modules a lesson or a release reaches the library's functions through
_QUALIFIER = re.compile(r"\b(?:minibert\.)?(?:layers|kernels|L|K)\.(?:\w+\.)?(?=\w+\()")


def _normalise(line):
    """A code line as the leak checks compare it: stripped, without a trailing comment, spaces collapsed.
    Blank lines and comments give ''."""
    s = line.strip()
    if not s or s.startswith("#"):
        return ""
    s = re.split(r"\s+#\s", s, maxsplit=1)[0]  # a trailing comment
    s = _QUALIFIER.sub("", s)                    # `L.ffn_backward(...)` is `ffn_backward(...)`
    return re.sub(r"\s+", " ", s).strip()


# syntax any file has: a line of an answer that is only this is no answer
_TRIVIAL = re.compile(r"^(else:|try:|pass|continue|break|return|[\[\](){},]+|\w+ \+= \[|\)\s*[:,]?)$")
MIN_ANSWER_CHARS = 8  # `dx += dxk` (9) is an answer line; `else:` is not


def is_answer_line(normalised):
    """Whether a normalised line (see ``_normalise``) is long and specific enough to count as an answer."""
    return len(normalised) >= MIN_ANSWER_CHARS and not _TRIVIAL.match(normalised)


def answer_lines(lesson_sources=None):
    """{normalised line: where it comes from} for every line of every answer a student must not be
    handed: the solution regions of every exercise's source (the library's layers, the ninja, the
    masking), and the solution and hidden-test regions of every lesson source (``notebooks/src``),
    each kept when :func:`is_answer_line`."""
    from .exercises import EXERCISES, source_text
    found = {}

    def add(text, where, kinds):
        lines = text.splitlines()
        for kind, b, e in marked_regions(lines):
            if kind in kinds:
                for i in range(b + 1, e):
                    n = _normalise(lines[i])
                    if is_answer_line(n):
                        found.setdefault(n, f"{where}:{i + 1}")
    for name in EXERCISES:
        add(source_text(name), EXERCISES[name].module.replace(".", "/") + ".py", ("solution",))
    paths = sorted((NOTEBOOKS_DIR / "src").glob("*.py")) if lesson_sources is None else lesson_sources
    for path in paths:
        add(Path(path).read_text(encoding="utf-8"), f"notebooks/src/{Path(path).name}", ("solution", "hidden"))
    return found


def leaks(text, answers):
    """[(answer line, where it comes from)] for every line of ``text`` that is an answer line."""
    out = []
    for line in text.splitlines():
        n = _normalise(line)
        if n in answers:
            out.append((n, answers[n]))
    return out


def hint_leaks(text, answers):
    """[(answer line, where)] for every answer line quoted inside a comment of ``text`` (a hint or a TODO
    that hands out the code: ``# hint: decay first, p *= 1 - lr * weight_decay``).  A comment is cut at
    ``;``, ``,`` and `` (`` into the pieces that could be code."""
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("#"):
            continue
        s = re.sub(r"^#+\s*(TODO:|hint:|forward:)?\s*", "", s)
        for piece in re.split(r"[;,]\s+|\s+\(", s):
            n = _normalise(piece)
            if n in answers:
                out.append((n, answers[n]))
    return out


def _strip_regions(source):
    """A solution cell's source as nbgrader's ClearSolutions leaves it: each solution region replaced by
    the stub at its indentation, each hidden-tests region removed; without any region, the whole cell."""
    lines = source.split("\n")
    regions = marked_regions(lines)
    out, pos = [], 0
    for kind, b, e in regions:
        out.extend(lines[pos:b])
        if kind == "solution":
            indent = lines[b][:len(lines[b]) - len(lines[b].lstrip())]
            out.extend(indent + l for l in CODE_STUB.split("\n"))
        pos = e + 1
    out.extend(lines[pos:])
    return "\n".join(out)


def student_notebook(nb):
    """The student copy of an instructor's lesson notebook (a new NotebookNode): every your-turn code
    cell's answer replaced by ``# YOUR CODE HERE / raise NotImplementedError()``, every answer cell of a
    question by "YOUR ANSWER HERE", every hidden test left out, every cell tagged ``instructor-only``
    replaced by a note, outputs cleared, and a first cell that
    switches :func:`show` to student mode (so the library's exercise code shows as its TODO)."""
    import copy

    import nbformat
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if INSTRUCTOR_ONLY in cell.metadata.get("tags", ()):  # e.g. the library's answer to a your-turn
            cell.cell_type, cell.source = "markdown", INSTRUCTOR_ONLY_NOTE
            cell.metadata = {}
            cell.pop("outputs", None), cell.pop("execution_count", None)
            continue
        if cell.cell_type == "markdown":
            if meta.get("solution"):
                cell.source = ANSWER_STUB
            continue
        if meta.get("solution") and not marked_regions(cell.source.split("\n")):
            cell.source = CODE_STUB
        else:
            cell.source = _strip_regions(cell.source)
        cell.outputs, cell.execution_count = [], None
    setup = nbformat.v4.new_code_cell(STUDENT_SETUP)
    setup.id = "student-setup"
    setup.metadata["minibert"] = {"student_copy": True}
    nb.cells.insert(0, setup)
    nb.metadata.setdefault("minibert", {})["student_copy"] = ("written by `minibert lessons`: the answers are "
                                                              "left out; the instructor's copies are in notebooks/")
    return nb


def write_lessons(outdir, names=None, force=False, notebooks_dir=None):
    """Write the student copy of every lesson (or of ``names``, e.g. ``["03_attention"]``) into
    ``outdir``; returns the paths.  Refuses to overwrite a notebook already there unless ``force``:
    it may hold a student's work.  A ValueError if a copy would still hold a line of any answer."""
    import nbformat
    src_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    paths = sorted(src_dir.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"lessons: no notebooks in {src_dir} (the instructor's copies live in a clone "
                                "of minibert's repository, notebooks/)")
    if names:
        unknown = set(names) - {p.stem for p in paths}
        if unknown:
            raise ValueError(f"lessons: unknown lesson(s) {sorted(unknown)}; the lessons are: "
                             f"{', '.join(p.stem for p in paths)}")
        paths = [p for p in paths if p.stem in names]
    outdir = Path(outdir)
    targets = [outdir / p.name for p in paths]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"lessons: {', '.join(existing)} already exist(s) and may hold a student's work; "
                              "choose another directory or pass --force to overwrite")
    answers = answer_lines()
    copies = []
    for path in paths:
        nb = student_notebook(nbformat.read(str(path), as_version=4))
        found = [(n, where) for cell in nb.cells for n, where in leaks(cell.source, answers)]
        if found:
            raise ValueError(f"lessons: the student copy of {path.name} would hold answer line(s): "
                             + "; ".join(f"{n!r} (from {w})" for n, w in found[:5]))
        copies.append(nb)
    outdir.mkdir(parents=True, exist_ok=True)
    for nb, target in zip(copies, targets):
        nbformat.write(nb, str(target))
    return targets


# ---- the checks of a lesson's "your turn": right or wrong, never the expected value -------------------

def _where_wrong(yours, expected, rtol, atol):
    """Words that say where ``yours`` differs from ``expected`` without giving ``expected`` away."""
    import numpy as np
    if isinstance(expected, str) or isinstance(yours, str):
        return "not the right one"
    if isinstance(expected, (list, tuple)) and expected and all(isinstance(e, str) for e in expected):
        if not isinstance(yours, (list, tuple)):
            return f"a list of pieces is expected, got a {type(yours).__name__}"
        if len(yours) != len(expected):
            return f"{'too many' if len(yours) > len(expected) else 'too few'} pieces ({len(yours)})"
        k = next(i for i, (a, b) in enumerate(zip(yours, expected)) if a != b)
        return f"your piece {k} ({yours[k]!r}) is wrong" + (" (and the ones after it)" if k < len(yours) - 1 else "")
    y, e = np.asarray(yours), np.asarray(expected)
    if y.shape != e.shape:
        if y.ndim != e.ndim:
            return f"wrong shape: {y.ndim} axes, {'too many' if y.ndim > e.ndim else 'too few'}"
        axes = [i for i, (a, b) in enumerate(zip(y.shape, e.shape)) if a != b]
        return f"wrong shape {y.shape}: axis {', '.join(map(str, axes))} {'is' if len(axes) == 1 else 'are'} wrong"
    if y.dtype == bool or e.dtype == bool or not np.issubdtype(e.dtype, np.number):
        bad = y != e
        return f"{int(bad.sum())} of {bad.size} entries wrong (first at index {tuple(int(i) for i in np.argwhere(bad)[0])})"
    y, e = y.astype(float), e.astype(float)
    bad = ~np.isclose(y, e, rtol=rtol, atol=atol)
    if e.size == 1:
        if np.sign(y).item() == -np.sign(e).item() != 0:
            return "the wrong sign"
        return "too large" if y.item() > e.item() else "too small"
    words = f"{int(bad.sum())} of {bad.size} entries wrong (first at index {tuple(int(i) for i in np.argwhere(bad)[0])})"
    if np.allclose(y, -e, rtol=rtol, atol=atol):
        return words + ": every one has the wrong sign"
    if y.ndim >= 2 and y.shape[-1] == y.shape[-2] and np.allclose(np.swapaxes(y, -1, -2), e, rtol=rtol, atol=atol):
        return words + ": the transpose of the right answer"
    if np.all(y[bad] > e[bad]):
        return words + ", all too large"
    if np.all(y[bad] < e[bad]):
        return words + ", all too small"
    return words


def check(name, yours, expected, hint="", rtol=1e-9, atol=0.0):
    """A your-turn's check: print ``name: right`` when ``yours`` equals ``expected`` (within ``rtol``,
    ``atol`` for numbers; exactly for strings, lists and shapes), else raise AssertionError saying where
    it is wrong (too large or too small, the wrong sign, a transpose, which axis of a shape, which piece)
    followed by ``hint``.  Never prints ``expected``: the student's copy must not hand out the answer."""
    import numpy as np
    if isinstance(expected, (str, list, tuple)) and not (isinstance(expected, tuple) and
                                                        all(isinstance(e, (int, np.integer)) for e in expected)):
        ok = yours == expected if not isinstance(yours, np.ndarray) else False
    else:
        y, e = np.asarray(yours), np.asarray(expected)
        ok = y.shape == e.shape and (np.array_equal(y, e) if (y.dtype == bool or e.dtype == bool or
                                                              not np.issubdtype(e.dtype, np.number))
                                     else bool(np.allclose(y.astype(float), e.astype(float), rtol=rtol, atol=atol)))
    if ok:
        print(f"{name}: right")
        return
    raise AssertionError(f"{name}: {_where_wrong(yours, expected, rtol, atol)}" + (f". Hint: {hint}" if hint else ""))
