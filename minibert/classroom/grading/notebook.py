"""nbgrader's path through the same isolated grader.

A notebook's hidden tests cannot be trusted to grade it: they run in the student's kernel, after the
student's cells, which may patch anything there (one cell ``course.grade_item = ...`` once earned full
points with zero gradients).  So at ``nbgrader autograde`` the grade comes from outside the kernel:
``IsolatedGrades``, a preprocessor that ``minibert exercises course`` puts into the course's
``nbgrader_config.py`` right after nbgrader's ``Execute``, writes the notebook's code cells (the student's
solution cells and the given cells, which nbgrader has just restored from the source) to a file, grades
that file as ``minibert exercises check`` grades a ``.py`` (``grade.grade``: the student's process,
guards, limits, the replay here), and overwrites the output of every hidden-test cell with the item's
verdict -- an error when the item is wrong, which is what nbgrader scores.  The integrity flags become a
line of the feedback.  ``grade_item``, which the hidden-test cells call, grades the same way in the
kernel (for an instructor running the notebook), but its outcome there is replaced at autograde.
"""
import hashlib
import inspect
import re
import tempfile
from pathlib import Path

from ..exercises import EXERCISES, source_text
from .grade import grade

try:
    from nbconvert.preprocessors import Preprocessor
    from traitlets import Bool
except ImportError:  # nbgrader's path is optional; the .py grader does not need it
    Preprocessor, Bool = object, lambda value: value


def grade_id_of(item):
    """The suffix of the grade id of a graded item's hidden-test cell."""
    return re.sub(r"\W+", "_", item).strip("_")


def _is_source_cell(cell, name):
    meta = cell.get("metadata", {}).get("nbgrader", {})
    gid = meta.get("grade_id", "")
    return (cell.get("cell_type") == "code" and not meta.get("grade") and not gid.endswith("_visible_check")
            and "_epilogue_" not in gid and not gid.startswith(f"{name}_test_"))


def notebook_code(nb, name):
    """The notebook's code as one Python file: every code cell but the checks, the tests and the capstone's
    training cell, in order; IPython's ``%magic`` and ``!shell`` lines become comments."""
    parts = []
    for cell in nb.cells:
        if _is_source_cell(cell, name):
            lines = [("# " + l if l.lstrip().startswith(("%", "!")) else l) for l in cell.source.splitlines()]
            parts.append("\n".join(lines))
    return "\n\n\n".join(parts) + "\n"


def grade_code(name, code, timeout=None):
    """``grade.grade`` of the Python text ``code`` as the student's file of exercise ``name``."""
    with tempfile.TemporaryDirectory(prefix="minibert-notebook-") as tmp:
        path = Path(tmp) / f"{name}.py"
        path.write_text(code, encoding="utf-8")
        return grade(name, path=path, timeout=timeout)


_graded = {}


def kernel_code(name, namespace):
    """The code a notebook's kernel ran, as one Python file: its cells in the order they ran (IPython's
    ``In``), without the hidden tests, the visible check's call and the capstone's training cell; outside
    IPython, the exercise's imports and the source of every function the namespace defines."""
    cells = namespace.get("In")
    if isinstance(cells, list) and any(isinstance(c, str) and "def " in c for c in cells):
        keep = []
        for cell in cells:
            if not isinstance(cell, str) or "grade_item(" in cell or "train_side_by_side(" in cell:
                continue
            lines = [("# " + l if l.lstrip().startswith(("%", "!")) or l.strip() == f"test_{name}()" else l)
                     for l in cell.splitlines()]
            keep.append("\n".join(lines))
        return "\n\n\n".join(keep) + "\n"
    parts = [source_text(name).split("\ndef ", 1)[0]]
    for key, value in list(namespace.items()):
        if key.startswith("_") or getattr(value, "__code__", None) is None or getattr(value, "__module__", None) != "__main__":
            continue
        try:
            parts.append(inspect.getsource(value))
        except (OSError, TypeError):
            continue
    return "\n\n".join(parts) + "\n"


def grade_namespace(name, namespace):
    """Grade the code a notebook's kernel ran (``namespace``: its ``globals()``; ``kernel_code``) in the
    isolated grader.  Cached on that text: the hidden tests of one notebook grade it once."""
    code = kernel_code(name, namespace)
    key = (name, hashlib.sha256(code.encode()).hexdigest())
    if key not in _graded:
        _graded.clear()
        _graded[key] = grade_code(name, code)
    return _graded[key]


class IsolatedGrades(Preprocessor):
    """nbgrader preprocessor (autograde): the outputs of the hidden-test cells of a minibert assignment,
    computed by the isolated grader from the notebook's code (see the module docstring)."""
    enabled = Bool(True)  # nbconvert runs a registered preprocessor only when enabled

    def preprocess(self, nb, resources):
        from nbformat.v4 import new_output

        from .report import item_scores
        tests = {}
        for cell in nb.cells:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
            for name in EXERCISES:
                if gid.startswith(f"{name}_test_"):
                    tests[gid] = (name, cell)
        names = {n for n, _ in tests.values()}
        if len(names) != 1:
            return nb, resources  # not one of minibert's assignments
        [name] = names
        result = grade_code(name, notebook_code(nb, name))
        scores = {f"{name}_test_{grade_id_of(item)}": (item, earned, possible, message)
                  for item, earned, possible, message in item_scores(result)}
        flags = [f"INTEGRITY (for the instructor; no points change): {f}" for f in result.integrity]
        first = True
        for gid, (_, cell) in tests.items():
            item, earned, possible, message = scores.get(gid, (gid, 0, 1, "not graded (unknown item)"))
            text = "\n".join(([*flags] if first else []) + [f"graded by minibert's isolated grader: {message}"]) + "\n"
            cell.outputs = [new_output("stream", name="stdout", text=text)]
            if earned < possible:
                cell.outputs.append(new_output("error", ename="AssertionError", evalue=message, traceback=[message]))
            first = False
        return nb, resources
