"""What SciPy's erf costs the NumPy reference, against the fdlibm port it replaced (``layers/erf.py``).

    python benchmarks/bench_erf.py                   # ~2 minutes on a quiet 2-core machine, ~4 on a busy one
    python benchmarks/bench_erf.py --rounds 3 --repeat 20 --steps 8 --threads 2

Two sides, each in its own Python process: "port" runs ``minibert/layers/gelu.py`` with its ``erf``
replaced by the NumPy port of fdlibm's erf as it was at commit ``PORT_COMMIT`` (read with ``git show``,
or from ``--port-file``); "scipy" runs the layer as it is.  The processes alternate (port, scipy,
port, scipy, ...) for ``--rounds`` rounds so that a slow spell of the machine hits both; each figure
is the median over every timed call of every round, next to the fastest call ("min": on a shared
machine the better estimate of the undisturbed speed).  Wall time and the process's CPU time are
both shown: with one thread they agree on a quiet machine, and on a busy one the CPU time is the
steadier (time spent descheduled is not counted).  One thread by default: NumPy's elementwise
passes, erf among them, use one thread whatever the setting, and a 2-thread BLAS call on a busy
machine stalls on a descheduled thread (seen here: 12 s for a 1.3 s step).  Measured:

1. ``gelu_forward`` + ``gelu_backward`` at the FFN's size, (B, T, F) = (32, 128, 512), float32 and float64;
2. a BERT-Tiny (L2 H128 A2 F512) pretraining forward + backward on the NumPy backend, float32, on
   ``bench_step.py``'s batch (B=32, T=128, V=8192, dropout 0.1), no optimizer step.

Prints the medians, the ratios port / scipy (above 1: SciPy is faster), the CPU and the load average.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_step import cpu_description  # the scripts' folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
PORT_COMMIT = "887f58207e8cd3e4c04b0c05195d793eb1495d62"  # the last commit with minibert/layers/erf.py
B, T, F = 32, 128, 512


def set_threads(n):
    """Before NumPy is imported: the same thread count for BLAS and numba (as bench_step.py)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)


def _timed(fn, warmup, repeat):
    for _ in range(warmup):
        fn()
    times = []  # [(wall seconds, CPU seconds of this process)]
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t, time.process_time() - c))
    return times


def worker(side, port_file, repeat, steps):
    """Runs in the child process: {case: [seconds per call]}, printed as JSON."""
    os.environ["MINIBERT_BACKEND"] = "numpy"  # no numba import, no compile
    import numpy as np

    import minibert
    from minibert.layers import gelu as G
    if side == "port":
        import importlib.util
        spec = importlib.util.spec_from_file_location("fdlibm_erf_port", port_file)
        port = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(port)
        x = np.linspace(-8, 8, 10_001)
        assert np.max(np.abs(port.erf(x) - G.erf(x))) < 1e-15  # the same function, to rounding
        G.erf = port.erf  # gelu_forward/backward look ``erf`` up in their module at call time
    minibert.set_backend("numpy")
    rng = np.random.default_rng(0)
    results = {}
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((B, T, F)).astype(dtype)  # (B, T, F)
        dout = rng.standard_normal((B, T, F)).astype(dtype)

        def gelu_pair():
            out, cache = G.gelu_forward(x)
            return G.gelu_backward(dout, cache)
        assert gelu_pair().dtype == dtype
        results[f"gelu fwd+bwd {np.dtype(dtype).name}"] = _timed(gelu_pair, 2, repeat)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_step
    model = minibert.BertForPreTraining(bench_step.minibert_config("tiny"), seed=0, dtype=np.float32).train()
    batch = bench_step.make_batch()

    def step():
        model.zero_grad()
        model(**batch)
        model.backward()
    results["BERT-Tiny fwd+bwd float32"] = _timed(step, 1, steps)
    print(json.dumps(results))


def port_source(port_file):
    if port_file:
        return Path(port_file)
    text = subprocess.run(["git", "show", f"{PORT_COMMIT}:minibert/layers/erf.py"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "fdlibm_erf_port.py"
    path.write_text(text)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="alternations of the two processes")
    ap.add_argument("--repeat", type=int, default=15, help="timed GELU calls per process and dtype")
    ap.add_argument("--steps", type=int, default=6, help="timed BERT-Tiny steps per process")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (the step's GEMMs)")
    ap.add_argument("--port-file", help="the old erf.py, instead of reading it from git")
    ap.add_argument("--worker", choices=["port", "scipy"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    set_threads(args.threads)
    if args.worker:
        return worker(args.worker, args.port_file, args.repeat, args.steps)

    import numpy as np
    import scipy
    port = port_source(args.port_file)
    print(f"CPU: {cpu_description()}, {os.cpu_count()} logical CPUs, {args.threads} threads; "
          f"NumPy {np.__version__}, SciPy {scipy.__version__}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    times = {"port": {}, "scipy": {}}
    for r in range(args.rounds):
        for side in times:
            cmd = [sys.executable, __file__, "--worker", side, "--port-file", str(port), "--repeat",
                   str(args.repeat), "--steps", str(args.steps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            for case, ts in json.loads(out.splitlines()[-1]).items():
                times[side].setdefault(case, []).extend(ts)
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    for k, clock in enumerate(("wall", "CPU")):
        print(f"\n| {clock + ' time (ms)':<26} | {'port':>8} | {'scipy':>8} | {'port/scipy':>10} "
              f"| {'port min':>8} | {'scipy min':>9} | {'min ratio':>9} |")
        print(f"|{'-' * 28}|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 10}|{'-' * 11}|{'-' * 11}|")
        for case in times["port"]:
            ts = {side: 1e3 * np.array(times[side][case])[:, k] for side in ("port", "scipy")}
            p, s = float(np.median(ts["port"])), float(np.median(ts["scipy"]))
            pm, sm = float(ts["port"].min()), float(ts["scipy"].min())
            print(f"| {case:<26} | {p:>8.1f} | {s:>8.1f} | {p / s:>9.2f}x | {pm:>8.1f} | {sm:>9.1f} | {pm / sm:>8.2f}x |")
    n = {case: len(ts) for case, ts in times["scipy"].items()}
    print(f"\nmedian of {n} timed calls per side ({args.rounds} processes per side)")


if __name__ == "__main__":
    main()
