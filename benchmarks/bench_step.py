"""minibert (numba and NumPy backends) against transformers + PyTorch on the CPU, side by side.

    python benchmarks/bench_step.py                 # everything: ~10 minutes on 2 cores
    python benchmarks/bench_step.py --quick         # BERT-Tiny only, fewer steps: ~2 minutes
    python benchmarks/bench_step.py --steps 20 --sizes tiny,mini --threads 2
    python benchmarks/bench_step.py --rounds 0      # skip the one-process-per-side timing

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

In one process the thread pools of numba, OpenBLAS and torch disturb each other, so the steps (1)
and (2) are also timed as users run them (``--rounds``, default 3): each side in its own fresh
interpreter, the sides taken in turn (numba, numpy, torch, numba, ...) for several rounds; a process
warms up, then times its pretraining step and its encoder; each figure is the median over the
rounds of each process's median step, with the range of those medians.  Both are reported.

The run starts by printing the machine: the CPU model and its vector extensions (from
/proc/cpuinfo), the BLAS NumPy uses (``numpy.show_config``, and threadpoolctl if installed) and
torch's, their measured float32 GEMM rate with the same thread count, and the load average, which is
printed again at the end.
"""
import argparse
import json
import os
import re
import statistics
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
WHOLE_MODEL = False  # --whole-model: minibert's model itself (every row, the MLM head at every position), as
#                     transformers computes it; by default the pretraining job's loss-only fast path


def minibert_pretraining(size, backend, batch):
    import numpy as np

    import minibert
    from minibert.kernels.heads_rows import LossOnly
    model = minibert.BertForPreTraining(minibert_config(size), seed=0, dtype=np.float32).train()
    # what the pretraining job runs: only the rows the heads read (Job.loss_only); --whole-model: the model
    path = None if WHOLE_MODEL else LossOnly()
    opt = minibert.AdamW(model, lr=1e-4, weight_decay=0.01, eps=1e-6)

    def step():
        minibert.set_backend(backend)
        model.zero_grad()  # backward() adds into the gradients, as torch's; the training step zeroes
        if path is None:
            model(**batch)
            model.backward()
        else:
            path.forward(model, **batch)
            path.backward(model)
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


# -- each side in its own process --------------------------------------------------------------------
def side_probe(side, size, steps, warmup):
    """Run in a fresh process: one side alone; prints JSON {kind: [seconds per step]} for the
    pretraining step and the encoder, each after ``warmup`` untimed steps."""
    batch = make_batch()
    if side == "torch":
        import torch
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        makers = (("step", lambda: torch_pretraining(size, batch)), ("encoder", lambda: torch_encoder(size, batch)))
    else:
        makers = (("step", lambda: minibert_pretraining(size, side, batch)),
                  ("encoder", lambda: minibert_encoder(size, side, batch)))
    out = {}
    for kind, make in makers:
        fn = make()
        for _ in range(warmup):
            fn()
        out[kind] = [_timed(fn) for _ in range(steps)]
    print(json.dumps(out))


def separate_processes(sides, size, rounds, steps, warmup, threads):
    """{side: {kind: [median step of each process]}}: ``rounds`` rounds, one fresh process per side
    in each, the sides in turn."""
    res = {side: {"step": [], "encoder": []} for side in sides}
    for _ in range(rounds):
        for side in sides:
            out = subprocess.run([sys.executable, __file__, "--side-probe", side, size, "--steps", str(steps),
                                  "--warmup", str(warmup), "--threads", str(threads)]
                                 + (["--whole-model"] if WHOLE_MODEL else []),
                                 capture_output=True, text=True, check=True).stdout
            times = json.loads(out.strip().splitlines()[-1])
            for kind, ts in times.items():
                res[side][kind].append(statistics.median(ts))
    return res


# -- the machine -------------------------------------------------------------------------------------
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512dq", "avx512cd", "avx512bw",
                "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


def cpu_info():
    """(model name, vector extensions present, logical CPUs) from /proc/cpuinfo."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, [x for x in VECTOR_FLAGS if x in flags], os.cpu_count()


def cpu_description():
    """One line for every figure: the CPU model and its vector extensions (AVX2 or AVX-512 ...)."""
    model, vector, _ = cpu_info()
    return f"{model} ({', '.join(vector) or 'no AVX'})"


def blas_info():
    """One line each on the BLAS of NumPy (and threadpoolctl's view, if installed) and of torch."""
    import numpy as np
    lines = []
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]
        blas = deps.get("blas", {})
        desc = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        conf = blas.get("openblas configuration")
        lines.append(f"NumPy {np.__version__} BLAS: {desc}" + (f" ({conf})" if conf else ""))
    except Exception as e:  # older NumPy: no mode="dicts"
        lines.append(f"NumPy {np.__version__} BLAS: unknown ({type(e).__name__}: {e})")
    try:
        import threadpoolctl
        for pool in threadpoolctl.threadpool_info():
            lines.append(f"  threadpoolctl: {pool.get('internal_api')} {pool.get('version')}, "
                         f"architecture {pool.get('architecture')}, {pool.get('num_threads')} threads, "
                         f"{os.path.basename(pool.get('filepath', ''))}")
    except ImportError:
        lines.append("  (threadpoolctl not installed: no run-time view of the BLAS's kernels)")
    try:
        import torch
        conf = torch.__config__.show()
        blas = re.findall(r"BLAS_INFO=([^,\s]+)", conf)
        isa = torch.backends.cpu.get_cpu_capability()
        lines.append(f"torch {torch.__version__} BLAS: {blas[0] if blas else '?'}; CPU capability {isa}")
    except Exception as e:
        lines.append(f"torch BLAS: unknown ({type(e).__name__}: {e})")
    return lines


def load_average():
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


# -- FLOPs and the machine's GEMM rate -----------------------------------------------------------------
def step_flops(size, positions, last_rows=B * T):
    """Matmul FLOPs of one training step (forward x 3): encoder on B*T tokens, MLM head on
    ``positions`` rows (P for minibert, all B*T for transformers), NSP negligible; the last layer's FFN
    on ``last_rows`` rows (minibert: the P labelled positions and the B [CLS] rows; transformers: all)."""
    L, C, A, F = SIZES[size]
    tokens = B * T
    encoder = L * tokens * (2 * (4 * C * C + 2 * C * F) + 2 * 2 * T * C)  # projections, FFN, q k^T and p v
    encoder -= (tokens - last_rows) * 2 * 2 * C * F  # the rows the heads do not read skip the last FFN
    head = positions * 2 * (C * C + C * V)
    return 3 * (encoder + head)


def gemm_rate(threads, with_torch=True):
    """Best float32 GEMM rate (FLOP/s) of NumPy's BLAS and (``with_torch``) torch on this machine, 2048^3."""
    import numpy as np
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    rates, sides = {}, [("numpy/OpenBLAS", np.matmul, a)]
    if with_torch:
        import torch
        sides.append(("torch", torch.mm, torch.from_numpy(a)))
    for name, mm, x in sides:
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
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of one fresh process per side, in turn (default 3; 0: skip)")
    ap.add_argument("--memory-probe", nargs=3, metavar=("SIDE", "SIZE", "KIND"), help=argparse.SUPPRESS)
    ap.add_argument("--side-probe", nargs=2, metavar=("SIDE", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--whole-model", action="store_true",
                    help="minibert's BertForPreTraining itself: every row of every layer and the MLM head at every "
                         "position, as transformers computes it (by default the pretraining job's loss-only fast "
                         "path, which computes only the rows the heads read: minibert/kernels/heads_rows.py)")
    args = ap.parse_args()
    global WHOLE_MODEL
    WHOLE_MODEL = args.whole_model
    set_threads(args.threads)
    if args.memory_probe:
        return memory_probe(*args.memory_probe)
    if args.side_probe:
        return side_probe(*args.side_probe, args.steps, args.warmup)
    if args.profile:
        return profile(args.profile, args.sizes.split(",")[0], args.steps if args.steps != 10 else 5)
    if args.quick:
        args.sizes, args.steps, args.no_kernels, args.no_memory = "tiny", min(args.steps, 4), True, True

    started = time.time()
    load_start = load_average()
    import numba
    import numpy as np
    import torch

    import minibert
    torch.set_num_threads(args.threads)
    minibert.set_backend("numba")
    model, vec, ncpu = cpu_info()
    print(f"CPU: {model}, {ncpu} logical CPUs; vector extensions: {' '.join(vec) or 'none found'}")
    print("\n".join(blas_info()))
    print(f"Python {sys.version.split()[0]}, numba {numba.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    from minibert.kernels import _blas
    from minibert.kernels.dropout import uniforms
    uniforms(np.random.default_rng(0), (1 << 16,))  # a parallel kernel: numba starts its threads
    print(f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()}, "
          f"BLAS {os.environ['OPENBLAS_NUM_THREADS']} (OPENBLAS_NUM_THREADS); numba layer "
          f"{numba.threading_layer()}")
    print(f"minibert's products: {_blas.threads()} slabs on numba's threads, OpenBLAS at one thread each"
          if _blas.OPENBLAS else "minibert's products: plain np.matmul (NumPy's BLAS is not its wheel's OpenBLAS)")
    print(f"at the start: {load_start}")
    rates = gemm_rate(args.threads)
    peak = max(rates.values())  # measured again at the end; MFU uses the best rate seen (see the note there)
    print(f"fp32 GEMM 2048^3, {args.threads} threads: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rates.items()))

    batch = make_batch()
    P = int((batch["labels"] != -100).sum())
    # rows of the last layer minibert computes: the labelled positions and the [CLS] rows (BertForPreTraining)
    last_rows = np.union1d(np.flatnonzero(batch["labels"] != -100), np.arange(B) * T).size
    if WHOLE_MODEL:
        last_rows = B * T
    print("minibert's last layer: " + ("every row, the MLM head at every position (--whole-model)" if WHOLE_MODEL
                                        else f"{last_rows} rows, those the heads read"))
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
            flops = step_flops(size, P, last_rows)  # the useful work: what the losses read, and no more
            mfu = flops / s_min / peak
            print(f"{name:16s} {1e3 * s:9.1f} {1e3 * s_min:8.1f} {B * T / s:9.0f} {ref / s:8.2f}x "
                  f"{ref_min / s_min:6.2f}x "
                  f"{flops / 1e12:12.4f} {100 * mfu:5.1f}%")
            rows.append((size, "step", name, 1e3 * s, ref / s, mfu))
        print(f"(transformers computes the decoder and the last layer's FFN on all {B * T} positions: "
              f"{step_flops(size, B * T) / 1e12:.4f} TFLOP per step; minibert on {P} and {last_rows})")
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
        # 1 and 2 again, each side in its own process
        if args.rounds > 0:
            procs = ["numba"] + ([] if args.no_numpy else ["numpy"]) + ["torch"]
            t0 = time.perf_counter()
            sep = separate_processes(procs, size, args.rounds, args.steps, args.warmup, args.threads)
            print(f"\n== BERT-{size}: each side in its own process, {args.rounds} rounds of "
                  f"{len(procs)} processes in turn, {args.steps} steps each after {args.warmup} warm-up "
                  f"({time.perf_counter() - t0:.0f} s); median over rounds of each process's median "
                  f"[range of those medians]")
            print(f"{'':38s} {'ms/step':>9s} {'[range]':>17s} {'tokens/s':>9s} {'vs torch':>9s}")
            names = {"numba": "minibert-numba", "numpy": "minibert-numpy", "torch": "transformers"}
            for kind, label in (("step", "full pretraining step"), ("encoder", "encoder fwd + bwd")):
                ref = statistics.median(sep["torch"][kind])
                for side in procs:
                    ms = sep[side][kind]
                    s = statistics.median(ms)
                    rng = f"[{1e3 * min(ms):.1f}-{1e3 * max(ms):.1f}]"
                    print(f"{label + ', ' + names[side]:38s}" + f" {1e3 * s:9.1f} {rng:>17s} {B * T / s:9.0f} "
                          f"{ref / s:8.2f}x")
                    rows.append((size, kind + "/own-process", names[side], 1e3 * s, ref / s, None))
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
    print(f"at the end: {load_average()}; the whole run took {time.time() - started:.0f} s")
    return rows


if __name__ == "__main__":
    main()
