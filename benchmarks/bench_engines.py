"""The two engines side by side: minibert's (numba), the torch engine in one process, and ``--nproc 2``.

    python benchmarks/bench_engines.py                     # BERT-Tiny, 60 steps of B=32 T=128, 3 rounds
    python benchmarks/bench_engines.py --preset mini --steps 30 --rounds 2

Each configuration is the real command (``minibert pretrain ... --engine ...``) in a fresh process, on
the bundled corpus, full-length sequences from the first step (``--short-seq-fraction 0``), dropout 0,
evaluation and checkpoint only at the end.  The figure is ``tokens_per_second`` from its metrics.json
(non-padding tokens over the training loop's wall time, start-up and evaluation excluded); the rounds
interleave the configurations and the median is shown.  Every configuration gets the machine's cores
(``--threads``, default all): minibert's BLAS and numba threads, torch's intra-op threads; with
``--nproc 2`` each process gets half.  Prints the CPU and the load average (other work on the machine
slows every configuration; the interleaving spreads that over all of them).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from bench_step import cpu_description  # the scripts' folder is on sys.path

CONFIGS = {  # name -> extra arguments
    "minibert (numba)": ["--engine", "minibert", "--backend", "numba"],
    "torch, 1 process": ["--engine", "torch"],
    "torch, --nproc 2": ["--engine", "torch", "--nproc", "2"],
}


def run(name, args, out, threads):
    per_process = max(1, threads // 2) if "--nproc" in args else threads
    env = {**os.environ, **{v: str(per_process) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                          "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    cmd = [sys.executable, "-m", "minibert", "pretrain", "--out", out, "--preset", ARGS.preset,
           "--max-steps", str(ARGS.steps), "--short-seq-fraction", "0", "--eval-every", str(ARGS.steps),
           "--checkpoint-every", str(ARGS.steps), "--quiet", *args]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)["tokens_per_second"]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=["tiny", "mini"])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    ARGS = p.parse_args()
    print(f"CPU: {cpu_description()}, {os.cpu_count()} logical CPUs, {ARGS.threads} threads per configuration; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    results = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        vocab = None
        for r in range(ARGS.rounds):
            for name, args in CONFIGS.items():
                out = os.path.join(tmp, f"{r}-{len(results[name])}-{name.split()[0]}{len(args)}")
                os.makedirs(out)
                if vocab:  # every run trains the same 8192-piece vocabulary: train it once
                    os.link(vocab, os.path.join(out, "vocab.txt"))
                results[name].append(run(name, args, out, ARGS.threads))
                vocab = vocab or os.path.join(out, "vocab.txt")
                print(f"round {r + 1}: {name:18s} {results[name][-1]:9.0f} tokens/s", flush=True)
    base = statistics.median(results["minibert (numba)"])
    print(f"\npreset {ARGS.preset}, B=32 T=128, {ARGS.steps} steps; load average after: {os.getloadavg()[0]:.2f}")
    print(f"{'engine':18s} {'tokens/s (median)':>18s} {'vs minibert':>12s}")
    for name, values in results.items():
        m = statistics.median(values)
        print(f"{name:18s} {m:18.0f} {m / base:11.2f}x")
