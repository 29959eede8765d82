"""The student's process: where a student's file is imported and its functions run, and what it cannot do.

A student's file is never imported by the grader.  For each grading a fresh process (forked from a
*zygote*, a process that has imported NumPy and minibert and nothing of any student, or started anew
where there is no fork) does, in order:

1. **Limits.**  ``resource.setrlimit``: CPU time (the ``--timeout``), address space (``MEMORY_LIMIT``),
   no core files; the zygote also kills it after ``timeout`` seconds of wall time.
2. **Guards.**  Every function the exercise grades (its solution regions, ``graded_functions``) and their
   equivalents (the ninja's fused softmax is ``softmax_backward``) is replaced, in every minibert module
   that holds it -- ``minibert.layers``, ``minibert.layers.linear``, the composites that call it through
   their globals (``ffn``, ``attention``, ``encoder_layer``), ``backend.ops``, the encoder layer's
   ``REFERENCE_OPS``, ``ACTIVATIONS`` -- by a guard.  The real functions are then held only by an audit
   hook (``sys.addaudithook``; a hook cannot be removed, and no Python name reaches it).  A guard asks
   the hook for its function; the hook looks at the stack: below a call of the student's code
   (``protocol.call_student``, the import of the student's file, or any frame of the student's file) it
   refuses -- the guard raises ``ReferenceUsed``, and the call scores zero with a message that says why --
   otherwise (the grading flow's own calls) it hands the function over.  The numba twins
   (``minibert.kernels``) and the autodiff libraries (torch, jax, autograd, tensorflow) cannot be imported.
   The building blocks of earlier exercises (``linear_backward`` in the attention exercise) stay usable.
3. **Audit hook.**  From then on the process may not read the source or bytecode of a graded module
   (``open`` of ``minibert/**/linear.py`` or ``linear.*.pyc`` in any copy of minibert: the checkout,
   site-packages) or anything of ``minibert/kernels``; may not write outside the temporary directory; may
   not start processes or threads, load C libraries (ctypes), open sockets, list the garbage collector's
   objects (``gc.get_objects``/``get_referrers``), make or patch code objects, trace, or -- below a student
   call -- get at frames (``sys._getframe``, ``tb_frame``: the grading flow's locals).
4. **The student's file** is imported, and the grading flow runs its functions (``protocol.Recorder``);
   the record is written for the grader's process, which judges (``protocol.Replayer``).

What is not closed is written down in ``docs/grading.md``: this is a sandbox inside CPython, not an
operating-system one (a container or a separate user is that), and what it cannot prevent the
integrity check flags (``integrity.py``: introspection, copies of the reference).
"""
import json
import os
import sys
from pathlib import Path

from ..exercises import EXERCISES, parse_regions, source_path
from .protocol import REFERENCE_EVENT, VIOLATIONS_EVENT, ReferenceUsed, call_student

MEMORY_LIMIT = 3 << 30  # bytes of address space of a student's process (NumPy + minibert need ~1 GiB)
# library functions whose result is the answer of an exercise without being one of its solution regions
EQUIVALENTS = {
    "attention_ninja": {"minibert.layers.softmax": ["softmax_backward"],
                        "minibert.layers.attention": ["attention_backward", "sdpa_backward"]},
    "adamw": {"minibert.layers.adamw": ["textbook_adamw"]},
}
ALWAYS = {"minibert.gradcheck": ["numerical_gradient", "numerical_gradient_at"]}  # a backward is derived
BLOCKED_IMPORTS = ("minibert.kernels", "torch", "jax", "autograd", "tensorflow", "gc")
_DENIED_EVENTS = ("gc.", "ctypes.", "socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                  "os.fork", "os.forkpty", "os.kill", "os.killpg", "pty.", "_thread.start_new_thread",
                  "sys.addaudithook", "sys.settrace", "sys.setprofile", "sys._current_frames", "code.__new__",
                  "sys.set_asyncgen_hooks", "_posixsubprocess.")
_FRAME_ATTRS = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "gi_code"}
_PATH_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.truncate", "os.chmod", "os.chown", "os.link",
                "os.symlink", "os.utime", "os.mkdir", "shutil.")


def graded_functions(name):
    """{module name: [function names]} the exercise ``name`` grades, with their equivalents."""
    ex = EXERCISES[name]
    text = source_path(name).read_text(encoding="utf-8")
    table = {ex.module: sorted({r.function for r in parse_regions(text) if r.kind == "solution"})}
    for extra in (EQUIVALENTS.get(name, {}), ALWAYS):
        for module, names in extra.items():
            table.setdefault(module, []).extend(n for n in names if n not in table.get(module, []))
    return table


def _make_guard(name, module):
    def guard(*args, **kwargs):
        box = []
        sys.audit(REFERENCE_EVENT, name, box)
        if not box:
            raise ReferenceUsed(f"{name} is minibert's own reference of what this exercise grades: it cannot be "
                                "called from your code (write the computation yourself)")
        return box.pop()(*args, **kwargs)
    guard.__name__ = guard.__qualname__ = name
    guard.__module__ = module
    guard.__doc__ = f"minibert's {name}: not available to a student's code while it is graded."
    guard._minibert_guard = True
    return guard


def install_guards(table):
    """Replace every function of ``table`` ({module: [names]}) by a guard in every loaded minibert module
    (their globals, and the dicts, tuples and namespaces they hold one level down).  Returns {name: the
    real function}: the caller hands it to the audit hook and keeps no other reference."""
    import importlib
    import types
    real = {}
    for module, names in table.items():
        mod = importlib.import_module(module)
        for n in names:
            fn = getattr(mod, n, None)
            if callable(fn) and not getattr(fn, "_minibert_guard", False):
                real[n] = fn
    guards = {id(fn): _make_guard(n, fn.__module__) for n, fn in real.items()}

    def swap(v):
        if id(v) in guards:
            return guards[id(v)]
        if type(v) is tuple and any(id(x) in guards for x in v):
            return tuple(guards.get(id(x), x) for x in v)
        return v

    for mname, mod in list(sys.modules.items()):
        if not (mname == "minibert" or mname.startswith("minibert.")) or mod is None:
            continue
        spaces = [vars(mod)]
        for v in list(vars(mod).values()):
            if isinstance(v, dict):
                spaces.append(v)
            elif isinstance(v, types.SimpleNamespace):
                spaces.append(vars(v))
        for space in spaces:
            for k, v in list(space.items()):
                new = swap(v)
                if new is not v:
                    space[k] = new
    for mname in list(sys.modules):
        if mname.startswith("minibert.kernels") or mname.split(".")[0] in BLOCKED_IMPORTS[1:]:
            sys.modules[mname] = None
    for mname in BLOCKED_IMPORTS:
        if mname != "gc" and mname not in sys.modules:
            sys.modules[mname] = None  # `import torch` fails at once (the audit hook refuses it again)
    return real


def install_audit_hook(real, protected_stems, student_path, write_dirs):
    """The audit hook of the student's process (see the module docstring).  Everything it decides on is
    held in this closure: no name of the process reaches it."""
    import tempfile
    student_path = os.path.realpath(student_path)
    student_dir = os.path.dirname(student_path)
    write_dirs = tuple(os.path.realpath(d) + os.sep for d in [tempfile.gettempdir(), *write_dirs])
    protected_stems = frozenset(protected_stems)
    real = dict(real)
    entry_codes = frozenset({call_student.__code__, load_student.__code__})
    stdlib = os.path.dirname(os.__file__) + os.sep
    frame_ok_callers = frozenset(os.path.join(stdlib, f) for f in ("collections/__init__.py", "typing.py", "enum.py",
                                                                   "dataclasses.py", "abc.py", "functools.py"))
    violations, busy = [], [0]

    def student_context(frame):
        while frame is not None:
            code = frame.f_code
            if code in entry_codes or code.co_filename == student_path:
                return True
            frame = frame.f_back
        return False

    def protected(path):
        try:
            p = os.path.realpath(os.fsdecode(path)) if not isinstance(path, int) else ""
        except (TypeError, ValueError):
            return False
        if not p or p == student_path or (p.startswith(student_dir + os.sep) and "/minibert/" not in p[len(student_dir):]):
            return False
        if "/minibert/kernels/" in p:
            return True
        return "/minibert/" in p and os.path.basename(p).split(".")[0] in protected_stems

    def writable(path, mode, flags):
        if isinstance(path, int):
            return True
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
        if not writing:
            return True
        p = os.path.realpath(os.fsdecode(path))
        return p.startswith(write_dirs)

    def hook(event, args):
        if busy[0]:
            return
        busy[0] += 1
        try:
            if event == REFERENCE_EVENT:
                name, box = args
                if student_context(sys._getframe(1)):
                    violations.append(name)
                elif name in real:
                    box.append(real[name])
            elif event == VIOLATIONS_EVENT:
                if student_context(sys._getframe(1)):
                    raise PermissionError("the grading's record is not the student's to read")
                args[0].extend(violations)
                violations.clear()
            elif event == "open":
                path, mode, flags = (list(args) + [None, None])[:3]
                if protected(path):
                    raise PermissionError(f"{os.fsdecode(path)}: minibert's source of a graded function cannot be "
                                          "read while you are graded")
                if not writable(path, mode, flags):
                    raise PermissionError(f"{os.fsdecode(path)}: a graded program may write only to temporary files")
            elif event == "import":
                mod = str(args[0])
                if mod.startswith("minibert.kernels") or mod.split(".")[0] in BLOCKED_IMPORTS[1:] or mod == "gc":
                    raise ImportError(f"{mod} cannot be imported while you are graded (minibert's numba twins, "
                                      "automatic differentiation and the garbage collector are not available)")
            elif event.startswith(_DENIED_EVENTS):
                raise PermissionError(f"{event} is not allowed while you are graded")
            elif event.startswith(_PATH_EVENTS):
                for a in args:
                    if isinstance(a, (str, bytes, os.PathLike)) and (protected(a) or not writable(a, "w", None)):
                        raise PermissionError(f"{event} on {os.fsdecode(a)} is not allowed while you are graded")
            elif event == "sys._getframe":
                caller = sys._getframe(1)
                if caller.f_code.co_filename not in frame_ok_callers and student_context(caller):
                    raise PermissionError("frames are not available to code being graded")
            elif event == "object.__getattr__":
                if args[1] in _FRAME_ATTRS and student_context(sys._getframe(1)):
                    raise PermissionError(f"{args[1]} is not available to code being graded")
            elif event == "object.__setattr__":
                if args[1] in ("__code__", "__globals__", "__closure__", "__defaults__", "__kwdefaults__") \
                        and getattr(args[0], "__module__", "") and str(getattr(args[0], "__module__", "")).startswith("minibert"):
                    raise PermissionError(f"changing {args[1]} of minibert's functions is not allowed while you are graded")
        finally:
            busy[0] -= 1

    sys.addaudithook(hook)


def load_student(path, name):
    """Import a student's file under a private module name (a fresh import every time).  The sandbox
    recognises this function's frame: code run by the import is the student's."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"_minibert_student_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _preload(name):
    """Import everything the grading flow of ``name`` needs before the student's file runs (afterwards
    no file of minibert's graded modules can be read)."""
    import importlib
    import traceback  # noqa: F401 -- the messages of a student's errors
    import linecache  # noqa: F401
    import scipy.special  # noqa: F401 -- gelu's erf
    from .. import attention_ninja, capstone  # noqa: F401 -- the ninja's reference, the capstone's model and data
    from . import checks  # noqa: F401
    importlib.import_module(EXERCISES[name].module)
    import minibert.layers  # noqa: F401
    import numpy.linalg  # noqa: F401


def run_student(name, path, seed, out, memory=MEMORY_LIMIT, cpu_seconds=None):
    """In the student's process: limits, guards, the audit hook, then import ``path``, run the grading
    flow's student calls (``protocol.Recorder``) and write the record to ``out`` (an .npz: the arrays,
    and the rest as JSON text; no pickle)."""
    import numpy as np

    from .checks import run_checks
    from .judge import Result
    from .protocol import Recorder
    _limit(memory, cpu_seconds)
    _preload(name)
    table = graded_functions(name)
    stems = {Path(sys.modules[m].__file__).stem for m in table if m != "minibert.gradcheck"}
    real = install_guards(table)
    install_audit_hook(real, stems, path, [os.path.dirname(out)])
    del real
    log = {"lookups": {}, "calls": [], "import_error": None}
    arrays = []
    sys.path.insert(0, str(Path(path).parent))  # a student's helper module next to the file imports
    try:
        module = load_student(path, name)
    except BaseException as e:  # noqa: BLE001 -- a syntax error (or a sys.exit) in a student's file is a grade
        log["import_error"] = f"{type(e).__name__}: {e}"
    else:
        g = Recorder(Result(name), module, seed)
        try:
            run_checks(name, g)
        except Exception:  # noqa: BLE001 -- the record so far is sent; the grader's replay says what is missing
            pass
        log["lookups"], log["calls"], arrays = g.lookups, g.calls, g.arrays
    payload = {f"a{i}": a for i, a in enumerate(arrays)}
    payload["__record__"] = np.array(json.dumps(log))
    with open(out, "wb") as f:
        np.savez(f, **payload)


def _limit(memory, cpu_seconds):
    try:
        import resource
    except ImportError:  # not on POSIX: the wall-clock timeout still applies
        return
    for what, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_CPU, None if cpu_seconds is None else int(cpu_seconds) + 1)):
        if value is not None:
            soft, hard = resource.getrlimit(what)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(what, (value, hard))
