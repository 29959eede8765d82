"""Where do a pretraining step's floating-point operations go, and how fast do its products run?

    python benchmarks/step_flops.py                # 10 full-length batches of the default job
    python benchmarks/step_flops.py --short        # 10 batches of its 16-token phase

Builds the default job's data (corpus, vocabulary, batches) and model, then runs ``--steps`` training
steps exactly as ``minibert pretrain`` does (``loop.training_step`` on the loss-only path, which runs the
last layer only at the rows the heads read), with every matrix product counted and timed, by part of the
model.  It prints each part's GFLOP per step (2 per multiply-add) and the products' rate, next to the
whole step's time and NumPy's own float32 2048^3 product on the same threads, which is the machine's
rate of the hour (on a shared machine it moves by the hour: docs/pretraining.md).  docs/pretraining.md
("A step that costs less?") reads it.  The model starts untrained: a step's products do not depend on
the weights' values, only on the batch's shape and its number of masked positions.  It runs the numba
backend (the default job's), whatever ``$MINIBERT_BACKEND`` says: the NumPy reference's products are not
counted.
"""
import argparse
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

from bench_step import cpu_description, gemm_rate  # the scripts' folder is on sys.path
from minibert.kernels import _blas

PARTS = ("decoder (tied word embeddings)", "FFN", "projections (Q, K, V, output, MLM transform, pooler)",
         "attention (scores, context)")


def part_of(caller, a_shape, b_shape, vocab_size):
    """Which part of BERT a product ``a @ b`` belongs to, from the module that called it and the shapes.
    (Shapes alone are ambiguous: the 16-token phase has exactly 512 masked rows, the FFN's width.)"""
    if len(a_shape) > 2:
        return PARTS[3]  # only attention multiplies stacks (batch, heads) of matrices
    if caller == "minibert.kernels.ffn":
        return PARTS[1]
    # the tied decoder is the only product with a side of V (the default job's V matches no other side)
    if vocab_size in (a_shape[-2], a_shape[-1], b_shape[-1]):
        return PARTS[0]
    return PARTS[2]


@contextmanager
def counted_products(vocab_size):
    """Inside: every ``matmul`` that minibert's modules call is counted and timed ->
    the dict ``{part: [GFLOP, seconds]}`` it fills."""
    totals = defaultdict(lambda: [0.0, 0.0])
    real = _blas.matmul

    def matmul(a, b, out=None):
        t = time.perf_counter()
        result = real(a, b, out=out)
        seconds = time.perf_counter() - t
        stack = math.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        entry = totals[part_of(sys._getframe(1).f_globals.get("__name__"), a.shape, b.shape, vocab_size)]
        entry[0] += 2 * stack * a.shape[-2] * a.shape[-1] * b.shape[-1] / 1e9
        entry[1] += seconds
        return result

    callers = [m for name, m in list(sys.modules.items())
               if name.startswith("minibert.") and getattr(m, "matmul", None) is real]
    for m in callers:
        m.matmul = matmul
    try:
        yield totals
    finally:
        for m in callers:
            m.matmul = real


def measure(cfg, steps, short=False, warmup=2):
    """Run ``steps`` training steps of ``cfg``'s job -> ``(parts, step_seconds, batches)``: ``parts``
    ``{part: (GFLOP per step, product seconds per step)}``, the mean step time, and the batches the
    steps trained on.  Full-length batches from ``cfg.short_seq_steps`` on, or (``short``) the first ones."""
    from minibert import backend
    from minibert.kernels.heads_rows import LossOnly
    from minibert.models.bert import BertForPreTraining
    from minibert.optim import AdamW
    from minibert.training import loop
    from minibert.training.pretrain import build_vocab, load_corpus, pretraining_data
    train_docs, _ = load_corpus(cfg.corpus, cfg.seed, verbose=False)
    tokenizer = build_vocab(train_docs, cfg.vocab_size, os.path.join(cfg.out, "vocab.txt"), verbose=False)
    data = pretraining_data(cfg, train_docs, tokenizer)
    model_config = cfg.model_config(len(tokenizer.vocab))
    model = BertForPreTraining(model_config, seed=cfg.seed).train()
    opt, loss_only = AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay), LossOnly()
    first = 0 if short else cfg.short_seq_steps
    seconds, batches = 0.0, []
    # the numba kernels, whose products all go through kernels/_blas.py's matmul (the NumPy reference
    # multiplies with @, which this cannot count), whatever backend the process had chosen before
    with backend.using("numba"):
        for s in range(first, first + warmup):  # compiles the kernels; not counted
            loop.training_step(model, opt, data.batch(s), s, cfg, None, loss_only)
        with counted_products(model_config.vocab_size) as totals:
            for s in range(first + warmup, first + warmup + steps):
                batch = data.batch(s)
                batches.append(batch)
                t = time.perf_counter()
                loop.training_step(model, opt, batch, s, cfg, None, loss_only)
                seconds += time.perf_counter() - t
    parts = {p: (totals[p][0] / steps, totals[p][1] / steps) for p in PARTS if p in totals}
    return parts, seconds / steps, batches


def main(argv=None):
    """Print the table; -> ``(parts, step_seconds, batches)`` as ``measure`` returns them."""
    from minibert.training.pretrain import PretrainConfig
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--short", action="store_true", help="the 16-token phase's batches, not full-length ones")
    ap.add_argument("--out", default=None, help="where the vocabulary is built and kept (default: a temporary "
                                                "directory, removed after); an existing OUT/vocab.txt is reused")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="step_flops-") as scratch:  # removed after, whatever happens
        out = args.out or scratch
        os.makedirs(out, exist_ok=True)
        parts, step, batches = measure(PretrainConfig(out=out, verbose=False), args.steps, args.short)
    tokens = np.mean([b["attention_mask"].sum() for b in batches])
    total_flop, total_s = sum(f for f, _ in parts.values()), sum(s for _, s in parts.values())
    kind = "16-token" if args.short else "full-length"
    print(f"{cpu_description()}: {args.steps} {kind} training steps of the default job, {_blas.threads()} "
          f"thread(s), {tokens:.0f} real tokens per step")
    print(f"{'part':54s} {'GFLOP/step':>10s} {'share':>6s} {'ms/step':>8s} {'GFLOP/s':>8s}")
    for p, (flop, s) in parts.items():
        print(f"{p:54s} {flop:10.2f} {flop / total_flop:6.0%} {1e3 * s:8.1f} {flop / s:8.1f}")
    print(f"{'all products':54s} {total_flop:10.2f} {1:6.0%} {1e3 * total_s:8.1f} {total_flop / total_s:8.1f}")
    print(f"{'everything else (kernels, Python)':54s} {'':10s} {'':6s} {1e3 * (step - total_s):8.1f}")
    print(f"{'the step':54s} {'':10s} {'':6s} {1e3 * step:8.1f}")
    print(f"NumPy's float32 2048^3 product on these threads: "
          f"{gemm_rate(_blas.threads(), with_torch=False)['numpy/OpenBLAS'] / 1e9:.0f} GFLOP/s")
    return parts, step, batches


if __name__ == "__main__":
    main()
