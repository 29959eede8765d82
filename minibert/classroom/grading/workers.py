"""Starting the student's processes: a zygote that forks one per grading, or a fresh Python per grading.

``student_process(name, path, seed, timeout)`` runs ``sandbox.run_student`` for one grading and returns its
record, read without unpickling anything.  On POSIX it asks this process's *zygote*: a Python process
started once (``python -m minibert.classroom.grading.workers serve``) that imports NumPy, minibert and the
grading flow -- never a student's file, never a reference answer -- and forks one child per grading, so
a grading does not pay Python's and NumPy's start (about 1 s here; a class is 1,100 gradings).  The
zygote waits for the child and kills it after ``timeout`` seconds.  Elsewhere (no fork), each grading
starts ``python -m minibert.classroom.grading.workers one ...``.  Both run with ``MINIBERT_BACKEND=numpy``
and one BLAS thread: gradings run side by side, one per core (``report.check_class``).
"""
import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .protocol import ProcessFailed

_ENV = {"MINIBERT_BACKEND": "numpy", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _child_env():
    env = dict(os.environ, **_ENV)
    root = str(Path(__file__).resolve().parents[3])  # the directory holding this minibert package
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ---- the zygote (its own process) ---------------------------------------------------------------------

def serve(stdin=sys.stdin, stdout=sys.stdout):
    """The zygote's loop: one JSON request per line ({name, path, seed, out, timeout}), one JSON answer
    per line ({"exit": code} or {"timeout": true}, and the tail of the child's stderr)."""
    import numpy  # noqa: F401 -- what every child needs, imported once
    from . import sandbox
    for name in ("linear", "attention_ninja", "encoder_layer", "masking", "adamw"):
        sandbox._preload(name)  # minibert's modules, imported once (no reference is run)
    for line in stdin:
        req = json.loads(line)
        err = tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:  # the child: its own stderr, the grading, and out without cleanup handlers
            code = 1
            try:
                os.dup2(err.fileno(), 2)
                os.dup2(err.fileno(), 1)  # the zygote's stdout is its answers: a student's print goes to the log
                sys.stdin.close()
                sandbox.run_student(req["name"], req["path"], int(req["seed"]), req["out"],
                                    cpu_seconds=req["timeout"])
                code = 0
            except BaseException:  # noqa: BLE001 -- said on stderr, whose tail the grader reports
                import traceback
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        deadline, status = time.monotonic() + float(req["timeout"]), None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                status = None
                break
            time.sleep(0.005)
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
        err.close()
        answer = {"timeout": True} if status is None else {"exit": os.waitstatus_to_exitcode(status)}
        answer["stderr"] = tail
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


# ---- the grader's side --------------------------------------------------------------------------------

class _Zygote:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "minibert.classroom.grading.workers", "serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_child_env())

    def run(self, request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise OSError("the zygote ended")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


_zygote, _lock = None, threading.Lock()


def _run_forked(request):
    global _zygote
    with _lock:
        for attempt in range(2):
            try:
                if _zygote is None or _zygote.proc.poll() is not None or _zygote.pid != os.getpid():
                    _zygote = _Zygote()
                    _zygote.pid = os.getpid()
                    atexit.register(_zygote.close)  # waited for: its CPU time is counted, nothing is left
                return _zygote.run(request)
            except (OSError, ValueError):
                _zygote = None
                if attempt:
                    raise


def _run_spawned(request):
    cmd = [sys.executable, "-m", "minibert.classroom.grading.workers", "one", json.dumps(request)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=request["timeout"], env=_child_env())
    except subprocess.TimeoutExpired:
        return {"timeout": True, "stderr": ""}
    return {"exit": proc.returncode, "stderr": proc.stderr[-2000:]}


def student_process(name, path, seed, timeout):
    """Run ``sandbox.run_student`` for one grading in a student's process killed after ``timeout``
    seconds; returns its record ({"lookups", "calls", "import_error", "arrays"})."""
    import numpy as np
    with tempfile.TemporaryDirectory(prefix="minibert-grading-") as tmp:
        out = Path(tmp) / "record.npz"
        request = {"name": name, "path": str(path), "seed": seed, "out": str(out), "timeout": float(timeout)}
        answer = _run_forked(request) if hasattr(os, "fork") else _run_spawned(request)
        if answer.get("timeout"):
            raise ProcessFailed(f"timed out after {timeout:g} s (an infinite loop? the time limit is --timeout)")
        if not out.is_file():
            lines = answer.get("stderr", "").strip().splitlines()
            tail = [l for l in lines if l.strip()][-3:]
            why = " | ".join(tail) or f"exit code {answer.get('exit')}"
            if answer.get("exit") in (-9, -24, 137, 152) or "MemoryError" in why:
                why += " (a resource limit: CPU time or memory)"
            raise ProcessFailed(f"the grading process died (exit code {answer.get('exit')}): {why}")
        try:
            with np.load(out, allow_pickle=False) as z:
                record = json.loads(str(z["__record__"]))
                if not isinstance(record, dict):
                    raise ValueError("the record is not a JSON object")
                record["arrays"] = {k: z[k] for k in z.files if k != "__record__"}
        except Exception as e:  # noqa: BLE001 -- whatever the student's process wrote, it is not a crash here
            raise ProcessFailed(f"the grading process wrote an unreadable record ({type(e).__name__}: {e})")
    return record


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["one"]:
        from . import sandbox
        req = json.loads(sys.argv[2])
        sandbox.run_student(req["name"], req["path"], int(req["seed"]), req["out"], cpu_seconds=req["timeout"])
    else:
        sys.exit("usage: python -m minibert.classroom.grading.workers serve | one REQUEST_JSON")
