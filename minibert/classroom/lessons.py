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
unset, ``0``, ``false`` or ``no``: instructor); ``./run lessons`` sets it to ``1`` unless it is already set.
A notebook may flip it (``lessons.STUDENT = False`` after the exercise is done), and ``show(...,
student=...)`` overrides it for one call.
"""
import inspect
import os

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
