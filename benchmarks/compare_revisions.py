"""Is this checkout as fast as an earlier revision?  The step of ``bench_step.py``, before and after.

    python benchmarks/compare_revisions.py 887f582              # BERT-Tiny, numba and NumPy backends
    python benchmarks/compare_revisions.py HEAD~3 --sizes tiny,mini --rounds 6 --backends numba

The revision is checked out with ``git worktree`` into a temporary folder; each round then runs one
process per side (revision, this checkout), in turn, as users run them: a fresh interpreter that
builds BERT from ``bench_step.py``'s own functions (the same batch, B=32 T=128 V=8192, dropout 0.1,
float32), warms up, and times the full pretraining step (forward, MLM + NSP loss, backward, AdamW)
and the encoder's forward + backward.  Each figure is the median over rounds of each process's median
step; the ratio is revision / this checkout (> 1: this checkout is faster).  Prints the CPU too.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_step import cpu_description  # the scripts' folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time, statistics
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
sys.path.insert(0, sys.argv[1])
import bench_step as b
b.set_threads(int(sys.argv[5]))
size, backend, steps = sys.argv[2], sys.argv[3], int(sys.argv[4])
import minibert
assert minibert.__file__.startswith(sys.argv[1]), minibert.__file__
batch = b.make_batch()
out = {}
for kind, make in (("step", b.minibert_pretraining), ("encoder", b.minibert_encoder)):
    fn = make(size, backend, batch)
    for _ in range(2):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    out[kind] = statistics.median(times)
print(json.dumps(out))
"""



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("revision", help="the git revision to compare with (e.g. a commit before a refactor)")
    ap.add_argument("--sizes", default="tiny")
    ap.add_argument("--backends", default="numba,numpy")
    ap.add_argument("--rounds", type=int, default=4, help="processes per side and setting (default 4)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per process (default 8)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"CPU: {cpu_description()}; {os.cpu_count()} cores; threads per side {args.threads}; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        old = os.path.join(tmp, "rev")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", old, args.revision],
                       check=True, capture_output=True)
        try:
            sides = {args.revision: old, "this checkout": str(ROOT)}
            for size in args.sizes.split(","):
                for backend in args.backends.split(","):
                    steps = args.steps if backend == "numba" else max(2, args.steps // 4)
                    runs = {name: [] for name in sides}
                    for _ in range(args.rounds):
                        for name, tree in sides.items():
                            r = subprocess.run([sys.executable, "-c", CHILD, tree, size, backend, str(steps),
                                                str(args.threads)], capture_output=True, text=True, check=True)
                            runs[name].append(json.loads(r.stdout.strip().splitlines()[-1]))
                    for kind in ("step", "encoder"):
                        med = {n: statistics.median(r[kind] for r in rs) * 1e3 for n, rs in runs.items()}
                        a, b = med[args.revision], med["this checkout"]
                        print(f"{size:5s} {backend:6s} {kind:8s}  {args.revision}: {a:8.1f} ms   "
                              f"this checkout: {b:8.1f} ms   ratio {a / b:.3f}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", old], capture_output=True)


if __name__ == "__main__":
    main()
