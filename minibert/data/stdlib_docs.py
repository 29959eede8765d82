"""Reading the standard library's docstrings, in a fresh interpreter: the raw text of the default corpus.

``stdlib_docstrings()`` returns ``[(module_name, [docstring, ...])]`` for the whole standard library, in
sorted module order.  It runs this file as a script in a child ``python -I -S`` (see its docstring for
why), so this module imports nothing of minibert: the child could not import it.
"""
import ast
import contextlib
import importlib
import inspect
import io
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import warnings


# How the standard library is read.  Most modules are imported (fast: Python loads its compiled caches) and
# their docstrings are read from the live objects -- in a fresh child interpreter, see stdlib_docstrings().
# Importing runs a module's top-level code, so modules whose import has side effects are either skipped or
# read from source:
#   * skipped -- no useful prose, or they print / open a browser when imported, or they are tests, demos,
#     code-generator tables (encodings) or the pydoc topics themselves (read separately);
#   * read from source with ``ast`` (parsing runs nothing, but is ~3x slower than importing) -- GUI toolkits
#     and IDLE (``idlelib.idle`` starts IDLE when imported), and deprecated packages that warn or, like
#     distutils, are swapped for setuptools' copy at import.
SKIPPED_MODULES = frozenset({
    "__main__", "__hello__", "__phello__", "this", "antigravity", "test", "turtledemo", "encodings",
    "pydoc_data", "ensurepip", "readline", "rlcompleter", "_tkinter", "xxlimited", "xxlimited_35",
    "xxsubtype",
})
READ_FROM_SOURCE = frozenset({"idlelib", "tkinter", "turtle", "lib2to3", "distutils"})
_SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__", "site-packages"})


def _stdlib_modules():
    """Deterministic, sorted list of (module_name, source_path_or_None) of the standard library.

    Top-level names come from ``sys.stdlib_module_names``; packages are walked on disk in sorted order, so
    no package has to be imported to list its submodules.  ``source_path`` is None for modules written in C
    (builtins, math, itertools, ...), which have no ``.py`` file.
    """
    lib = sysconfig.get_paths()["stdlib"]
    modules = []
    for name in sorted(sys.stdlib_module_names):
        if name in SKIPPED_MODULES or name.startswith(("__", "_test", "_xxtest")) or name.endswith("_test"):
            continue
        module_file, package_dir = os.path.join(lib, name + ".py"), os.path.join(lib, name)
        if os.path.isfile(module_file):
            modules.append((name, module_file))
        elif os.path.isfile(os.path.join(package_dir, "__init__.py")):
            for root, dirs, files in os.walk(package_dir):
                dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
                for f in sorted(files):
                    if f.endswith(".py") and f != "__main__.py":
                        parts = os.path.relpath(os.path.join(root, f), lib)[:-3].split(os.sep)
                        if parts[-1] == "__init__":
                            parts.pop()
                        modules.append((".".join(parts), os.path.join(root, f)))
        else:
            modules.append((name, None))
    modules.sort()
    return modules


def _docstrings_from_source(path):
    """Docstrings of a module and of every class and function in it, in source order, read with ``ast``
    (nothing is imported, so none of the module's code runs)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        try:
            tree = ast.parse(f.read(), filename=path)
        except SyntaxError:
            return []
    docs = []

    def visit(node):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)               # already dedented (inspect.cleandoc)
            if doc:
                docs.append(doc)
        # A def or class can only appear inside statements, so walk statement bodies, never expressions.
        for body in ("body", "orelse", "finalbody", "handlers"):
            for child in getattr(node, body, ()):
                if isinstance(child, (ast.stmt, ast.excepthandler)):
                    visit(child)
    visit(tree)
    return docs


def _docstrings_from_import(name):
    """Docstrings of an imported module, of the functions and classes it defines and of their methods and
    properties, in definition order (a module's ``__dict__`` keeps it).  Output and warnings of the import
    are silenced; returns [] if the import fails (e.g. ``winreg`` on Linux)."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except (Exception, SystemExit):
        return []
    written_in_python = (getattr(module, "__file__", None) or "").endswith(".py")

    def defined_here(obj):
        # A Python module also holds what it imported; keep only what it defines.  C types often report the
        # public module (_collections.deque says "collections"), so C modules keep everything.
        # (_pydecimal sets its own __name__ to "decimal", so accept that name too.)
        return not written_in_python or getattr(obj, "__module__", None) in (name, module.__name__)

    docs = [module.__doc__]
    for attr, obj in list(vars(module).items()):
        if attr.startswith("__") or not defined_here(obj):
            continue
        if isinstance(obj, type):
            docs.append(obj.__doc__)
            for member_name, member in list(vars(obj).items()):
                if member_name.startswith("__") and not written_in_python:
                    continue                            # C dunders: "Return self==value." boilerplate
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if callable(member) or isinstance(member, property):
                    docs.append(getattr(member, "__doc__", None))
        elif callable(obj):
            docs.append(getattr(obj, "__doc__", None))
    return [inspect.cleandoc(d) for d in docs if isinstance(d, str) and d.strip()]


def _collect_stdlib_docstrings():
    """[(module_name, [docstring, ...])] for the whole standard library, in sorted module order, collected
    in *this* interpreter (see ``stdlib_docstrings`` for why that is a fresh one)."""
    out = []
    for name, path in _stdlib_modules():
        if name.split(".")[0] in READ_FROM_SOURCE:
            out.append((name, _docstrings_from_source(path)))
        else:
            out.append((name, _docstrings_from_import(name)))
    return out


def stdlib_docstrings():
    """``_collect_stdlib_docstrings()`` run in a fresh interpreter, ``python -I -S minibert/data/stdlib_docs.py``.

    Why a child process: what a live module holds depends on who touched it.  pytest replaces
    ``sys.unraisablehook``, IPython ``sys.displayhook``, and importing typing_extensions patches two
    functions of ``typing``; a corpus read in such a process would differ from one read elsewhere.  A child
    started with ``-I -S`` (no environment variables, no site-packages, no .pth hooks) sees the plain
    standard library, so the corpus depends only on the Python installation -- and whatever the imports do
    stays in the child.  It writes JSON to a file in a private temporary directory (stdout could carry a C
    module's chatter), read only once the child has exited with code 0, so a plain write is enough.
    """
    if not sys.executable:
        raise RuntimeError("cannot start a Python interpreter to read the standard library: sys.executable "
                           "is empty (embedded Python?); use read_text_corpus() or synthetic_corpus() instead")
    with tempfile.TemporaryDirectory(prefix="minibert-") as tmp:
        out = os.path.join(tmp, "docstrings.json")
        cmd = [sys.executable, "-I", "-S", os.path.abspath(__file__), "--collect-stdlib-docstrings", out]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not os.path.isfile(out):
            raise RuntimeError(f"collecting the standard library's docstrings failed ({' '.join(cmd)}, "
                               f"exit code {proc.returncode}):\n{proc.stderr[-2000:]}")
        with open(out, encoding="utf-8") as f:
            return json.load(f)


if __name__ == "__main__":
    # The child process of stdlib_docstrings(): python -I -S stdlib_docs.py --collect-stdlib-docstrings OUT.json
    if len(sys.argv) == 3 and sys.argv[1] == "--collect-stdlib-docstrings":
        # A plain write, not an atomic one: OUT is in the parent's private temporary directory, and the
        # parent reads it only after this process has exited with code 0, so no one sees it half-written.
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            json.dump(_collect_stdlib_docstrings(), f)
    else:
        sys.exit("usage: python -I -S stdlib_docs.py --collect-stdlib-docstrings OUT.json")
