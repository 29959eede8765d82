"""The foreign-code rule: a graded function must be written in the student's own file.

``function_info`` describes a function as plain data (the student's process sends it); ``foreign_reason``
decides, in the grader's process, whether it is the student's work: a function whose code lives in the
minibert package is the library's reference re-exported (``from minibert.layers.linear import *``), one
defined in another file than the student's is not the student's work either.  In the student's process the
graded functions of the library are replaced by guards (``sandbox.py``), so a re-export is caught twice:
here by where its code lives, there when it is called.
"""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent.parent  # minibert/


def function_info(fn):
    """What the foreign-code rule needs to know of ``fn``, as plain data: ``missing`` (not a callable),
    ``has_code`` (a Python function), ``filename`` (``__code__.co_filename``), ``module``, ``type`` and
    ``guard`` (one of the sandbox's stand-ins for a graded reference)."""
    code = getattr(fn, "__code__", None)
    return {"missing": not callable(fn), "has_code": code is not None, "type": type(fn).__name__,
            "filename": getattr(code, "co_filename", None), "module": getattr(fn, "__module__", None),
            "guard": bool(getattr(fn, "_minibert_guard", False))}


def foreign_reason(info, fname, student_file=None):
    """Why the function described by ``info`` (``function_info``) is not the student's own code (a
    message: it scores zero), or "" if it is.  Notebook cells are written to a file of their own before
    grading, so the same rules apply there."""
    if info.get("guard"):
        return (f"{fname} is minibert's own reference, imported into your code, not your implementation: it "
                "scores zero. Write the function yourself.")
    if not info.get("has_code") or not isinstance(info.get("filename"), str):
        return f"{fname} is not a function written in your file ({info.get('type')}): it scores zero"
    filename = info["filename"]
    where = Path(filename).resolve() if not filename.startswith("<") else None
    if where is not None and PACKAGE_DIR in where.parents:
        return (f"{fname} is minibert's own reference ({where.relative_to(PACKAGE_DIR.parent)}), imported into "
                "your code, not your implementation: it scores zero. Write the function yourself.")
    if student_file and where is not None and where != Path(student_file).resolve():
        return f"{fname} is defined in {where}, not in your file {Path(student_file).name}: it scores zero"
    return ""


def foreign_function(fn, fname, student_file=None):
    """``foreign_reason`` of the function ``fn`` itself."""
    return foreign_reason(function_info(fn), fname, student_file)
