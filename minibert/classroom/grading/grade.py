"""Grading one exercise: ``grade(name, directory)`` (a student's file, in two processes) and
``grade_module(name, module)`` (a module in this process: the library's own code).

A student's file is never imported here: a student's process (``workers.student_process``, set up by
``sandbox.py``) imports it and runs the student's functions on the grader's inputs, and sends back plain
arrays; this process computes the references, the finite differences and every comparison
(``protocol.Replayer``).  The integrity check (``integrity.py``) reads the file as text.
"""
import importlib
import types
from pathlib import Path

from ..exercises import EXERCISES, exercise_names, source_path
from .checks import run_checks
from .integrity import integrity_findings
from .judge import Grader, Result
from .protocol import ProcessFailed, Replayer, Tampered
from .sandbox import load_student
from .workers import student_process

TIME_LIMIT = 120.0  # seconds per exercise; the slowest (the capstone) grades in a few seconds


def load_module(path, name):
    """Import a student's file under a private module name, in this process (the capstone does; the
    grader never does)."""
    return load_student(path, name)


def grade_module(name, module, seed=0, own_code_only=True, grader=None):
    """Grade exercise ``name`` on the functions of ``module`` (any object with them as attributes) in this
    process; returns a ``Result``.  ``grader``: the class that runs the checks (``judge.Grader``: call and
    compare here; ``protocol.Replayer``: replay a student's process's record)."""
    exercise_names([name])
    result = Result(name)
    g = (grader or Grader)(result, module, seed, own_code_only=own_code_only)
    try:
        run_checks(name, g)
    except Tampered as e:
        result.errors.append(str(e))
        result.say(f"  {e}")
    except Exception as e:  # noqa: BLE001 -- malformed values sent back by the student's process
        if not isinstance(g, Replayer):
            raise
        msg = f"the student's process sent back values the grader cannot read ({type(e).__name__}: {e})"
        result.errors.append(msg)
        result.say(f"  {msg}")
    return result


def grade(name, directory=None, seed=0, timeout=None, path=None, numerical_cache=None):
    """Grade one exercise; ``directory`` holds the student's ``NAME.py`` (or ``path`` names the file; None
    for both: the library's own module, graded in this process).  ``numerical_cache``: a dict shared by
    the gradings of a class (the finite differences depend on the grader's inputs only)."""
    exercise_names([name])
    if path is None:
        path = source_path(name) if directory is None else Path(directory) / f"{name}.py"
    path = Path(path)
    if not path.is_file():
        result = Result(name)
        result.errors.append(f"{path} not found (write the student copies with `minibert exercises make DIR`)")
        return result
    if directory is None and path == source_path(name):
        return grade_module(name, importlib.import_module(EXERCISES[name].module), seed, own_code_only=False)
    timeout = TIME_LIMIT if timeout is None else timeout
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        record = student_process(name, path.resolve(), seed, timeout)
    except ProcessFailed as e:
        result = Result(name)
        result.errors.append(str(e))
        result.say("  " + str(e))
    else:
        if record.get("import_error"):
            result = Result(name)
            detail = str(record["import_error"])
            result.errors.append(f"cannot import {path.name}: {detail}")
            result.say(f"  cannot import {path}: {detail}")
        else:
            stand_in = types.SimpleNamespace(__file__=str(path.resolve()), _minibert_record=record,
                                             _minibert_numerical_cache=numerical_cache)
            result = grade_module(name, stand_in, seed, grader=Replayer)
    result.integrity = integrity_findings(name, text)
    return result
