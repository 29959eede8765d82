"""The two processes of a grading: the student's computes, the grader's judges.

The same flow (``checks.run_checks``) runs twice on the same seed.  In the student's process
(``Recorder``), which imported the student's file, it only *calls* the student's functions -- the forward
outputs, the backward's gradients, the AdamW states, the masking's raw draws, the capstone's loss curve --
and records, for every call, a digest of its inputs and its outcome as plain data (an .npz read with
``allow_pickle=False``: arrays, and JSON for the rest).  In the grader's process (``Replayer``), which
never imports the student's file, the same flow computes the references, the finite differences, every
comparison and the points, each student call replaced by the recorded outcome.  A call made on other
inputs than the grader's (the digests differ), out of order or missing is not graded, and a call during
which the student's code reached a guarded reference (``sandbox.py``) scores zero.  Whatever a submission
patches in its own process (``rel_error``, numpy, this grader) changes only what that process sends back,
never how it is judged.
"""
import hashlib
import sys

import numpy as np

from .judge import Grader, run_call
from .origin import function_info

REFERENCE_EVENT = "minibert.grading.reference"      # a guard asks the sandbox for the reference (sandbox.py)
VIOLATIONS_EVENT = "minibert.grading.violations"    # the recorder collects the guards that refused a student


class Tampered(Exception):
    """The student's process did not make the calls the grader's flow makes, on the grader's inputs."""


class ProcessFailed(Exception):
    """The student's process timed out or died without a record."""


class ReferenceUsed(RuntimeError):
    """Raised in the student's process when the student's code calls a reference this exercise grades."""


class Opaque:
    """A value the student's process could not send as plain data (a cache object, a generator...)."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name} from the student's process>"


class StandIn:
    """The grader's stand-in for a student function: never called (``Replayer.invoke`` replays)."""

    def __init__(self, name):
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        raise Tampered(f"the grader tried to run the student's {self.__name__} in its own process")


_MAX_DEPTH = 32


def encode(value, arrays, depth=0):
    """``value`` as JSON-able data with tagged containers; ndarrays go to ``arrays`` (saved in an .npz,
    never pickled); anything else becomes an opaque type name."""
    if depth > _MAX_DEPTH:
        return {"t": "opaque", "type": "too deeply nested"}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and type(value) in (int, float):
        return value
    if isinstance(value, np.generic) and type(value).__module__ == "numpy" and value.dtype.kind in "biufcU":
        return encode(value.item(), arrays, depth + 1)
    if type(value) is np.ndarray and value.dtype.kind in "biufcU":
        arrays.append(np.ascontiguousarray(value))
        return {"t": "array", "i": len(arrays) - 1}
    if type(value) in (tuple, list):
        return {"t": "tuple" if type(value) is tuple else "list", "v": [encode(v, arrays, depth + 1) for v in value]}
    if type(value) is dict and all(type(k) in (str, int) for k in value):
        return {"t": "dict", "k": list(value), "v": [encode(v, arrays, depth + 1) for v in value.values()]}
    return {"t": "opaque", "type": type(value).__name__}


def decode(data, arrays):
    if not isinstance(data, dict):
        return data
    kind = data.get("t")
    if kind == "array":
        return arrays[f"a{int(data['i'])}"]
    if kind in ("tuple", "list"):
        items = [decode(v, arrays) for v in data["v"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return dict(zip(data["k"], (decode(v, arrays) for v in data["v"])))
    return Opaque(str(data.get("type")))


def fingerprint(value, produced, depth=0):
    """A digest of the grader's inputs to one call (arrays by their bytes, numbers by value, other
    objects by type), equal in both processes when the student's process used the grader's inputs.
    Values a student call returned (``produced``: their ids) are the student's own: not digested."""
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


def call_student(fn, args, kwargs):
    """Every call of a student's function in the student's process goes through this frame: the sandbox
    recognises its code object on the stack (``sandbox.py``) and refuses the guarded references below it.
    -> ``judge.run_call``'s (status, value, exception)."""
    status, value, exc = run_call(fn, args, kwargs)
    if status == "ok":
        value = _plain(value)  # what is sent back is copied here, still inside the student's call
    return status, value, exc


def _plain(value, depth=0):
    """``value`` with every ndarray (a subclass too) copied as a plain ndarray and plain containers rebuilt,
    so that no method of a student's object runs later in the grader's part of this process (``encode``
    sends other objects as opaque type names, looking only at their exact type)."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, np.ndarray):
        return np.array(np.ndarray.view(value, np.ndarray), copy=True)
    if type(value) in (tuple, list):
        items = [_plain(v, depth + 1) for v in value]
        return tuple(items) if type(value) is tuple else items
    if type(value) is dict and all(type(k) in (str, int) for k in value):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    return value  # a number, a string, or an object of the student's (a cache): passed back, sent as opaque


def take_violations():
    """The guarded references the student's code tried to call since the last time (sandbox.py)."""
    box = []
    sys.audit(VIOLATIONS_EVENT, box)
    return box


def _remember(g, value):
    """Mark ``value`` (and its items) as the student's: ``fingerprint`` does not digest them.  Kept
    alive, so that no other object reuses their ids; numbers, strings and None are values, not objects
    of the student's (they may be shared, interned, with the grader's own)."""
    for v in [value] + (list(value) if isinstance(value, (tuple, list)) else []):
        if not (v is None or isinstance(v, (bool, int, float, str))):
            g._keep.append(v)
            g.produced.add(id(v))


class Recorder(Grader):
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

    def run(self, fn, args, kwargs):
        return call_student(fn, args, kwargs)

    def invoke(self, label, fn, args, kwargs):
        digest = fingerprint((args, kwargs), self.produced)
        take_violations()
        status, value = super().invoke(label, fn, args, kwargs)
        used = take_violations()
        entry = {"label": label, "inputs": digest, "status": status}
        if used:
            entry["reference_used"] = sorted(set(used))
        if status == "ok":
            entry["value"] = encode(value, self.arrays)
            _remember(self, value)
        else:
            entry["message"] = str(value)
        self.calls.append(entry)
        return status, value


class Replayer(Grader):
    """The grader in the grader's process: the same flow, the references, the finite differences and
    every comparison computed here, each student call replaced by the recorded outcome of the student's
    process -- which must have been made on the same inputs (same digest), in the same order."""

    def __init__(self, result, module, seed, own_code_only=True):
        super().__init__(result, module, seed, own_code_only=own_code_only)
        record = module._minibert_record
        self.lookups, self.calls, self.arrays = record.get("lookups") or {}, list(record.get("calls") or []), record["arrays"]
        self.produced, self._keep, self.position = set(), [], 0
        self.numerical_cache = getattr(module, "_minibert_numerical_cache", None)

    def lookup(self, fname):
        info = self.lookups.get(fname)
        if not isinstance(info, dict):
            info = function_info(None)
        info = {**function_info(None), **info}
        return (None if info["missing"] else StandIn(fname)), info

    def numerical(self, f, x, dout):
        """Finite differences depend on the grader's inputs only: a class's gradings share them."""
        if self.numerical_cache is None:
            return super().numerical(f, x, dout)
        key = (self.r.name, self.case, fingerprint((x, dout), set()))
        if key not in self.numerical_cache:
            self.numerical_cache[key] = super().numerical(f, x, dout)
        return self.numerical_cache[key]

    def invoke(self, label, fn, args, kwargs):
        digest = fingerprint((args, kwargs), self.produced)
        if self.position >= len(self.calls):
            raise Tampered(f"{label}: the student's process never ran it (its record ends early): not graded")
        entry = self.calls[self.position]
        self.position += 1
        if entry.get("label") != label:
            raise Tampered(f"{label}: the student's process ran {entry.get('label')!r} instead: not graded")
        if entry.get("inputs") != digest:
            raise Tampered(f"{label}: the student's process ran it on other inputs than the grader's "
                           "(a patched library or grader?): not graded")
        used = entry.get("reference_used")
        if used:
            return "error", (f"{label} used minibert's own {', '.join(map(str, used))}, the reference of what this "
                             "exercise grades: the arrays it returned score zero. Write the computation yourself.")
        if entry.get("status") != "ok":
            return ("todo" if entry.get("status") == "todo" else "error"), str(entry.get("message"))
        value = decode(entry.get("value"), self.arrays)
        _remember(self, value)
        return "ok", value
