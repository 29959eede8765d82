"""Execute the lesson notebooks once, and keep the executed copies for whoever needs them next.

Two jobs need every lesson executed: the notebook test (``tests/test_notebooks.py``: does each lesson run
top to bottom in a clean kernel?) and the book (``book/build.py``: show each lesson with its outputs). On
2 cores the lessons take 3-4 minutes, so they run once: :func:`run` executes a notebook in a fresh process
and kernel (nbclient) and, when it ran without an error, stores the executed copy in ``.cache/executed/``
under a key made of everything its outputs depend on (the notebook's bytes, every source file of
``minibert/``, the Python version and the versions of the libraries the lessons use). The next
:func:`run` of the same notebook with the same key takes the stored copy instead of executing again. A
per-notebook file lock makes this safe when the test and the book build run at once (pytest-xdist
workers, two terminals): the second waits for the first and reuses its result.

``MINIBERT_NOTEBOOK_CACHE=0`` turns reuse off (every run executes; the result is still stored).

    python notebooks/run_notebooks.py                 # execute (or reuse) every lesson, print the times
    python notebooks/run_notebooks.py 03_attention
"""
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

NB_DIR = Path(__file__).resolve().parent
ROOT = NB_DIR.parent
CACHE = ROOT / ".cache" / "executed"
BUDGET = 120  # seconds per notebook, top to bottom (the test's bar)
KEEP = 4  # executed copies kept per lesson
# the libraries whose versions change what a lesson prints or plots
LIBRARIES = ("numpy", "scipy", "numba", "matplotlib", "torch", "transformers", "nbclient", "ipykernel")

_RUNNER = r"""
import json, os, sys, time
import nbformat
from nbclient import NotebookClient
path, budget, cwd, out = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=budget, kernel_name="python3", resources={"metadata": {"path": cwd}})
start = time.perf_counter()
error = None
try:
    client.execute()
except Exception as e:  # CellExecutionError holds the failing cell and its traceback
    error = f"{type(e).__name__}: {e}"
seconds = time.perf_counter() - start
if error is None and out:
    nb.metadata.setdefault("minibert", {})["executed_seconds"] = round(seconds, 1)
    nbformat.write(nb, out + ".tmp")
    os.replace(out + ".tmp", out)
print("\n@@RESULT@@" + json.dumps({"seconds": seconds, "error": error}))
"""


def kernel_env():
    """The environment of the executing process: one BLAS thread (on a busy 2-core machine OpenBLAS's
    spinning threads make small matrix products tens of times slower) and the inline plot backend."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silences ipykernel's debugger warning
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return env


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def cache_key(path):
    """A hex digest of everything a lesson's outputs depend on: change any of it and the lesson runs again."""
    h = hashlib.sha256()
    h.update(Path(path).read_bytes())
    for src in sorted((ROOT / "minibert").rglob("*.py")):
        h.update(str(src.relative_to(ROOT)).encode() + b"\0" + src.read_bytes())
    h.update(sys.version.encode())
    for name in LIBRARIES:
        h.update(f"{name}={_version(name)}".encode())
    return h.hexdigest()[:20]


def cached_path(path, key=None):
    """Where the executed copy of ``path`` with this key is (or would be) stored."""
    path = Path(path)
    return CACHE / f"{path.stem}.{key or cache_key(path)}.ipynb"


def _execute(path, out, budget):
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, str(path), str(budget), str(NB_DIR), str(out or "")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=NB_DIR,
                            env=kernel_env(), start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=budget + 60)  # + kernel start-up and shut-down
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and the kernel it started
        proc.communicate()
        return {"seconds": float(budget + 60), "error": f"killed after {budget + 60} s"}
    if "@@RESULT@@" not in stdout:
        return {"seconds": 0.0, "error": f"the runner failed (exit {proc.returncode}):\n{stderr[-3000:]}"}
    return json.loads(stdout.rsplit("@@RESULT@@", 1)[1])


def run(path, budget=BUDGET, reuse=None):
    """Execute the notebook at ``path`` in a fresh process and kernel, or reuse its stored executed copy.

    Returns ``{"seconds", "error", "cached", "executed", "notebook"}``: the execution time (of the run
    that produced the stored copy, when reused), the error (``None`` when every cell ran; a failed run
    stores nothing), whether the result was reused, and the path and the text of the executed notebook
    (``None`` after an error; the text is read under the lock, so a later prune cannot take it away).
    """
    path = Path(path).resolve()
    if reuse is None:
        reuse = os.environ.get("MINIBERT_NOTEBOOK_CACHE", "1") != "0"
    CACHE.mkdir(parents=True, exist_ok=True)
    key = cache_key(path)
    out = cached_path(path, key)
    with open(CACHE / f"{path.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process executing this notebook: wait for it
        if reuse and out.exists():
            text = out.read_text(encoding="utf-8")
            seconds = json.loads(text)["metadata"].get("minibert", {}).get("executed_seconds", 0.0)
            return {"seconds": seconds, "error": None, "cached": True, "executed": out, "notebook": text}
        result = _execute(path, out, budget)
        ok = result["error"] is None
        result.update(cached=False, executed=out if ok else None,
                      notebook=out.read_text(encoding="utf-8") if ok else None)
        _prune(path.stem)
    return result


def newest(path):
    """The text of the newest stored executed copy of a lesson, whatever its key, or None."""
    copies = sorted(CACHE.glob(f"{Path(path).stem}.*.ipynb"), key=lambda p: p.stat().st_mtime, reverse=True)
    for copy in copies:
        try:
            return copy.read_text(encoding="utf-8")
        except FileNotFoundError:  # pruned meanwhile
            continue
    return None


def _prune(stem, keep=KEEP):
    """Keep the ``keep`` newest executed copies of a lesson (several keys live at once while engineers
    edit minibert in one tree; one copy per key would grow without end)."""
    copies = sorted(CACHE.glob(f"{stem}.*.ipynb"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in copies[keep:]:
        old.unlink(missing_ok=True)


def run_all(paths, jobs=None, reuse=None):
    """:func:`run` over several notebooks in parallel (``jobs`` processes, default
    ``MINIBERT_NOTEBOOK_JOBS`` or the number of CPUs, at least 2), longest lessons (the later ones) first."""
    jobs = jobs or int(os.environ.get("MINIBERT_NOTEBOOK_JOBS", max(2, os.cpu_count() or 1)))
    todo = sorted((Path(p) for p in paths), key=lambda p: p.name, reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = dict(zip(todo, pool.map(lambda p: run(p, reuse=reuse), todo)))
    return {p: results[Path(p)] for p in paths}


def lessons():
    """Every lesson notebook, in course order (their names start with the lesson number)."""
    return sorted(NB_DIR.glob("*.ipynb"))


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:])
    paths = [p for p in lessons() if not names or p.stem in names]
    start = time.perf_counter()
    failed = 0
    for p, r in run_all(paths).items():
        state = "reused" if r["cached"] else ("FAILED" if r["error"] else "executed")
        print(f"{p.name}: {state} ({r['seconds']:.1f} s)")
        if r["error"]:
            failed += 1
            print(r["error"][-3000:])
    print(f"{len(paths)} notebooks in {time.perf_counter() - start:.0f} s, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
