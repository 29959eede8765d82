"""minibert (numba and NumPy backends) against transformers + PyTorch on the CPU, side by side.

    python benchmarks/bench_step.py                 # everything: ~10 minutes on 2 cores
    python benchmarks/bench_step.py --quick         # BERT-Tiny only, fewer steps: ~2 minutes
    python benchmarks/bench_step.py --steps 20 --sizes tiny,mini --threads 2

What it measures, in one process, on one batch (B=32, T=128, V=8192, 15% of positions masked):

1. the full pretraining step (forward, MLM + NSP loss, backward, AdamW) of BERT-Tiny (L2 H128 A2 F512)
   and BERT-Mini (L4 H256 A4 F1024), dropout 0.1, float32: minibert-numba, minibert-numpy, and
   transformers' ``BertForPreTraining`` with ``torch.optim.AdamW`` (default attention, float32);
2. the encoder alone (``BertModel``), forward + backward from a random upstream gradient;
3. each numba kernel against its NumPy reference (``benchmarks/bench_kernels.py``);
4. peak memory of a step (each side in a fresh subprocess, after a warm-up step: peak RSS over
   3 steps minus the RSS before them), and model FLOP utilisation against this machine's measured float32 GEMM rate.

The sides alternate step by step (numba, numpy, torch, numba, ...) so that a slow spell of the
machine hits all of them alike; each figure is the median over the timed steps, and the fastest
step, "(min)", is shown too: on a shared machine it is the better estimate of the undisturbed speed.
MFU uses the fastest step.  Torch, numba and
BLAS get the same thread count.
"""
import argparse
import os
import subprocess
import sys
import time

SIZES = {  # name: (layers L, hidden C, heads A, intermediate F)
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
}
B, T, V, MASKED = 32, 128, 8192, 0.15
MASK_ID = 4


def set_threads(n):
    """Before NumPy, numba and torch are imported: the same thread count for BLAS, numba and torch."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)


def make_batch(seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, (B, T))
    ids[:, 0] = 2  # [CLS]
    segs = np.zeros((B, T), dtype=np.int64)
    segs[:, T // 2:] = 1
    masked = rng.random((B, T)) < MASKED
    masked[:, 0] = False
    labels = np.where(masked, ids, -100)
    inputs = np.where(masked, MASK_ID, ids)
    return dict(input_ids=inputs, token_type_ids=segs, attention_mask=np.ones((B, T), dtype=np.int64),
                labels=labels, next_sentence_label=rng.integers(0, 2, B))


def minibert_config(size):
    import minibert
    L, C, A, F = SIZES[size]
    return minibert.BertConfig(vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=A,
                               intermediate_size=F, max_position_embeddings=512, hidden_dropout_prob=0.1,
                               attention_probs_dropout_prob=0.1)


def torch_config(size):
    import transformers
    L, C, A, F = SIZES[size]
    return transformers.BertConfig(vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=A,
                                   intermediate_size=F, max_position_embeddings=512, hidden_dropout_prob=0.1,
                                   attention_probs_dropout_prob=0.1)


# -- the sides: each returns a function that runs one step ------------------------------------------
def minibert_pretraining(size, backend, batch):
    import numpy as np

    import minibert
    model = minibert.BertForPreTraining(minibert_config(size), seed=0, dtype=np.float32).train()
    opt = minibert.AdamW(model, lr=1e-4, weight_decay=0.01, eps=1e-6)

    def step():
        minibert.set_backend(backend)
        model(**batch)
        model.zero_grad()  # backward() adds into the gradients, as torch's; the training step zeroes
        model.backward()
        opt.step()
    return step


def torch_pretraining(size, batch):
    import torch
    import transformers
    model = transformers.BertForPreTraining(torch_config(size)).train()
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, eps=1e-6)
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}

    def step():
        opt.zero_grad(set_to_none=True)
        model(**tb).loss.backward()
        opt.step()
    return step


def minibert_encoder(size, backend, batch):
    import numpy as np

    import minibert
    model = minibert.BertModel(minibert_config(size), seed=0, dtype=np.float32).train()
    g = np.random.default_rng(1).standard_normal((B, T, SIZES[size][1])).astype(np.float32)

    def step():
        minibert.set_backend(backend)
        model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        model.zero_grad()
        model.backward(g)
    return step


def torch_encoder(size, batch):
    import numpy as np
    import torch
    import transformers
    model = transformers.BertModel(torch_config(size)).train()
    g = torch.from_numpy(np.random.default_rng(1).standard_normal((B, T, SIZES[size][1])).astype(np.float32))
    tb = {k: torch.from_numpy(batch[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}

    def step():
        model.zero_grad(set_to_none=True)
        model(**tb).last_hidden_state.backward(g)
    return step


def alternate(sides, steps, warmup, pause):
    """{name: [seconds per step]}, running the sides in turn, one step each, ``steps`` times."""
    import numpy as np
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in sides}
    for _ in range(steps):
        for name, fn in sides.items():
            time.sleep(pause)  # let the previous side's idle BLAS/OpenMP threads go to sleep
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: (float(np.median(ts)), float(np.min(ts))) for name, ts in times.items()}


# -- FLOPs and the machine's GEMM rate -----------------------------------------------------------------
def step_flops(size, positions):
    """Matmul FLOPs of one training step (forward x 3): encoder on B*T tokens, MLM head on
    ``positions`` rows (P for minibert, all B*T for transformers), NSP negligible."""
    L, C, A, F = SIZES[size]
    tokens = B * T
    encoder = L * tokens * (2 * (4 * C * C + 2 * C * F) + 2 * 2 * T * C)  # projections, FFN, q k^T and p v
    head = positions * 2 * (C * C + C * V)
    return 3 * (encoder + head)


def gemm_rate(threads):
    """Best float32 GEMM rate (FLOP/s) of NumPy's BLAS and torch on this machine, 2048^3."""
    import numpy as np
    import torch
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    rates = {}
    for name, mm, x in (("numpy/OpenBLAS", np.matmul, a), ("torch", torch.mm, torch.from_numpy(a))):
        mm(x, x)
        best = min(_timed(lambda: mm(x, x)) for _ in range(5))
        rates[name] = 2 * n ** 3 / best
    return rates


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# -- memory: each side in a fresh process ------------------------------------------------------------
def memory_probe(side, size, kind):
    """Run in a subprocess: prints the peak RSS growth (MiB) over 3 steps of one side, after one
    warm-up step, and the process's peak RSS."""
    batch = make_batch()
    if side == "torch":
        fn = torch_pretraining(size, batch) if kind == "step" else torch_encoder(size, batch)
    else:
        fn = (minibert_pretraining if kind == "step" else minibert_encoder)(size, side, batch)
    fn()  # warm-up: compiling (or loading numba's cache) is not part of a step's memory
    base = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset this process's peak RSS (VmHWM) to the current RSS
    fn()
    fn()
    fn()
    peak = _status_mib("VmHWM")  # (ru_maxrss cannot be reset, and would include the parent's, from fork)
    print(f"{max(0.0, peak - base):.1f} {peak:.1f}")


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(side, size, threads):
    out = subprocess.run([sys.executable, __file__, "--memory-probe", side, size, "step", "--threads", str(threads)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def profile(backend, size, steps):
    """cProfile ``steps`` pretraining steps (after 2 warm-up steps); the 25 biggest by own time."""
    import cProfile
    import pstats
    step = minibert_pretraining(size, backend, make_batch())
    step()
    step()
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    print(f"BERT-{size}, backend {backend}: {1e3 * (time.perf_counter() - t) / steps:.1f} ms/step under the "
          f"profiler, load average {os.getloadavg()[0]:.2f}")
    pstats.Stats(prof).strip_dirs().sort_stats("tottime").print_stats(25)


# -----------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per side (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (default 2)")
    ap.add_argument("--sizes", default="tiny,mini", help="comma-separated: tiny, mini")
    ap.add_argument("--threads", type=int, default=2, help="threads for BLAS, numba and torch (default 2)")
    ap.add_argument("--quick", action="store_true", help="BERT-Tiny only, 4 steps, no kernels or memory")
    ap.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy backend in the step")
    ap.add_argument("--no-kernels", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between sides (default 0.05)")
    ap.add_argument("--profile", metavar="BACKEND", choices=("numpy", "numba"),
                    help="instead: cProfile 5 pretraining steps of minibert on BACKEND (per --sizes), print the top")
    ap.add_argument("--memory-probe", nargs=3, metavar=("SIDE", "SIZE", "KIND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    set_threads(args.threads)
    if args.memory_probe:
        return memory_probe(*args.memory_probe)
    if args.profile:
        return profile(args.profile, args.sizes.split(",")[0], args.steps if args.steps != 10 else 5)
    if args.quick:
        args.sizes, args.steps, args.no_kernels, args.no_memory = "tiny", min(args.steps, 4), True, True

    import numba
    import numpy as np
    import torch

    import minibert
    torch.set_num_threads(args.threads)
    minibert.set_backend("numba")
    print(f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()}, "
          f"BLAS {os.environ['OPENBLAS_NUM_THREADS']} (OPENBLAS_NUM_THREADS); numba layer "
          f"{numba.config.THREADING_LAYER}; load average {os.getloadavg()[0]:.2f}")
    rates = gemm_rate(args.threads)
    peak = max(rates.values())  # measured again at the end; MFU uses the best rate seen (see the note there)
    print("fp32 GEMM 2048^3: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rates.items()))

    batch = make_batch()
    P = int((batch["labels"] != -100).sum())
    rows = []
    for size in args.sizes.split(","):
        # 1. the full pretraining step
        sides = {"minibert-numba": minibert_pretraining(size, "numba", batch)}
        if not args.no_numpy:
            sides["minibert-numpy"] = minibert_pretraining(size, "numpy", batch)
        sides["transformers"] = torch_pretraining(size, batch)
        t0 = time.perf_counter()
        med = alternate(sides, args.steps, args.warmup, args.pause)
        print(f"\n== BERT-{size}: full pretraining step, B={B} T={T} V={V}, P={P} masked, "
              f"{args.steps} steps per side ({time.perf_counter() - t0:.0f} s)")
        print(f"{'side':16s} {'ms/step':>9s} {'(min)':>8s} {'tokens/s':>9s} {'vs torch':>9s} {'(min)':>7s} "
              f"{'model TFLOP':>12s} {'MFU':>6s}")
        (ref, ref_min) = med["transformers"]
        for name, (s, s_min) in med.items():
            flops = step_flops(size, P)  # the useful work: MLM head on the masked positions only
            mfu = flops / s_min / peak
            print(f"{name:16s} {1e3 * s:9.1f} {1e3 * s_min:8.1f} {B * T / s:9.0f} {ref / s:8.2f}x "
                  f"{ref_min / s_min:6.2f}x "
                  f"{flops / 1e12:12.4f} {100 * mfu:5.1f}%")
            rows.append((size, "step", name, 1e3 * s, ref / s, mfu))
        print(f"(transformers computes the decoder on all {B * T} positions: "
              f"{step_flops(size, B * T) / 1e12:.4f} TFLOP per step)")
        # 2. the encoder alone
        enc = {"minibert-numba": minibert_encoder(size, "numba", batch)}
        if not args.no_numpy:
            enc["minibert-numpy"] = minibert_encoder(size, "numpy", batch)
        enc["transformers"] = torch_encoder(size, batch)
        med = alternate(enc, args.steps, args.warmup, args.pause)
        print(f"\n== BERT-{size}: encoder (BertModel) forward + backward")
        print(f"{'side':16s} {'ms/step':>9s} {'(min)':>8s} {'tokens/s':>9s} {'vs torch':>9s} {'(min)':>7s}")
        (ref, ref_min) = med["transformers"]
        for name, (s, s_min) in med.items():
            print(f"{name:16s} {1e3 * s:9.1f} {1e3 * s_min:8.1f} {B * T / s:9.0f} {ref / s:8.2f}x "
                  f"{ref_min / s_min:6.2f}x")
            rows.append((size, "encoder", name, 1e3 * s, ref / s, None))
        # 4. memory
        if not args.no_memory:
            print(f"\n== BERT-{size}: peak memory of a pretraining step (fresh process, warm-up, then 3 steps)")
            for side in ("numba", "numpy", "torch"):
                grow, total = measure_memory(side, size, args.threads)
                print(f"{side:8s} peak RSS growth {grow:7.1f} MiB   (process peak {total:7.1f} MiB)")
    # 3. the kernels
    if not args.no_kernels:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_kernels
        print(f"\n== numba kernels vs NumPy references, float32, B*T={bench_kernels.N}")
        bench_kernels.run(repeat=max(5, args.steps))
    rates = gemm_rate(args.threads)
    print("\nfp32 GEMM 2048^3 again: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rates.items()))
    if max(rates.values()) > peak:
        print(f"(the MFU above used {peak / 1e9:.0f} GFLOP/s; with this better rate, multiply it by "
              f"{peak / max(rates.values()):.2f})")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return rows


if __name__ == "__main__":
    main()
