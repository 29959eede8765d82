"""Each numba twin against its NumPy reference, float32, at B*T = 4096 rows and C = 128
(F = 512 for GELU and the FFN, V = 8192 for the cross-entropy, B=32 T=128 A=2 for attention,
641 x 128 by 8192 x 128 for the linear layer: the MLM decoder).

    python benchmarks/bench_kernels.py [--repeat 7] [--threads 2]

Prints the median time of each side and the speed-up; compile time is paid (and reported) first.
"""
import argparse
import os
import sys
import time

import numpy as np

N, C, F, V, B, T, A = 4096, 128, 512, 8192, 32, 128, 2


def _median_ms(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def cases(dtype=np.float32, seed=0):
    """[(name, reference thunk, twin thunk)], all on the same inputs."""
    from minibert import kernels as K
    from minibert import layers as L
    from minibert.layers.softmax import attention_mask_to_additive
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    x, w, b, dout = r(N, C), 1 + r(C), r(C), r(N, C)
    ln_cache = L.layernorm_forward(x, w, b, 1e-12)[1]
    h, b1, dh = r(N, F), r(F), r(N, F)
    scores, d4 = r(B, A, T, T), r(B, A, T, T)
    mask = np.ones((B, T))
    mask[1::2, T // 2:] = 0
    mask_add = attention_mask_to_additive(mask, dtype)
    probs = L.softmax_forward(scores * 0.125, mask_add)[0]
    logits = r(N, V)
    labels = np.where(rng.random(N) < 0.15, rng.integers(0, V, N), -100)
    ce_cache = L.cross_entropy_forward(logits, labels)[1]
    ids = rng.integers(0, V, (B, T))
    keep = (rng.random((N, C)) >= 0.1, 1 / 0.9)
    P = [r(V, C), r(4 * C, C)]  # ~the BERT-Tiny parameter count in two arrays
    state = [(p, r(*p.shape), np.zeros_like(p), np.zeros_like(p)) for p in P]
    adam = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01, step_size=1e-2, bc2_sqrt=0.04)
    drop = lambda f: (lambda: f(x, 0.1, np.random.default_rng(1), True))  # noqa: E731
    x3 = x.reshape(B, T, C)
    wq, wk, wv, wo = (0.1 * r(C, C) for _ in range(4))
    att_args = (x3, wq, b, wk, b, wv, b, wo, b, mask_add, A, 0.1)
    att_cache = {}

    def att(impl):
        def run():
            att_cache[impl] = impl.attention_forward(*att_args, rng=np.random.default_rng(1), training=True)[1]
        return run
    ffn_args = (x3, 0.1 * r(F, C), b1, 0.1 * r(C, F), b)
    hm, word, dec_bias, dlog = r(641, C), r(V, C), r(V), r(641, V)  # the MLM decoder of a BERT-Tiny step
    dec_cache = (hm, word)
    return [
        ("layernorm_forward", lambda: L.layernorm_forward(x, w, b, 1e-12), lambda: K.layernorm_forward(x, w, b, 1e-12)),
        ("layernorm_backward", lambda: L.layernorm_backward(dout, ln_cache),
         lambda: K.layernorm_backward(dout, ln_cache)),
        ("attention_softmax_forward (+mask, dropout)",
         lambda: L.dropout_forward(L.softmax_forward(scores * np.float32(0.125), mask_add)[0], 0.1,
                                   np.random.default_rng(1), True),  # the middle of layers' sdpa_forward
         lambda: K.attention_softmax_forward(scores, mask_add, 0.125, 0.1, np.random.default_rng(1), True)),
        ("attention_softmax_backward",
         lambda: L.softmax_backward(L.dropout_backward(d4, None), probs) * np.float32(0.125),
         lambda: K.attention_softmax_backward(d4, probs, None, 0.125)),
        ("gelu_forward (F=512)", lambda: L.gelu_forward(h), lambda: K.gelu_forward(h)),
        ("gelu_backward (F=512)", lambda: L.gelu_backward(dh, h), lambda: K.gelu_backward(dh, h)),
        ("bias+gelu forward (F=512)", lambda: L.gelu_forward(h + b1), lambda: K.bias_gelu_forward(h + b1 * 0, b1)),
        ("dropout_forward", drop(L.dropout_forward), drop(K.dropout_forward)),
        ("dropout_backward", lambda: L.dropout_backward(dout, keep), lambda: K.dropout_backward(dout, keep)),
        ("cross_entropy_forward (V=8192)", lambda: L.cross_entropy_forward(logits, labels),
         lambda: K.cross_entropy_forward(logits, labels)),
        ("cross_entropy_backward (V=8192)", lambda: L.cross_entropy_backward(1.0, ce_cache),
         lambda: K.cross_entropy_backward(1.0, ce_cache)),
        ("embedding_backward (V=8192)", lambda: L.embedding_backward(dout.reshape(B, T, C), (ids, V), 0),
         lambda: K.embedding_backward(dout.reshape(B, T, C), (ids, V), 0)),
        ("adamw_update (1.1M params)", lambda: [L.adamw_update(*s, **adam) for s in state],
         lambda: [K.adamw_update(*s, **adam) for s in state]),
        ("attention_forward (whole layer)", att(L), att(K)),
        ("attention_backward (whole layer)", lambda: L.attention_backward(x3, att_cache[L]),
         lambda: K.attention_backward(x3, att_cache[K])),
        ("ffn_forward (whole layer)", lambda: L.ffn_forward(*ffn_args), lambda: K.ffn_forward(*ffn_args)),
        ("linear_forward (MLM decoder, 641 x V)", lambda: L.linear_forward(hm, word, dec_bias),
         lambda: K.linear_forward(hm, word, dec_bias)),
        ("linear_backward (MLM decoder)", lambda: L.linear_backward(dlog, dec_cache),
         lambda: K.linear_backward(dlog, dec_cache)),
    ]


def run(repeat=7, out=sys.stdout):
    """Time every case; returns [(name, ref ms, twin ms)].

    Each side is timed in a block of its own (a pause, one untimed call, then ``repeat`` timed ones),
    not call for call in turn: after a NumPy product OpenBLAS's threads keep polling for ~0.1 s, and
    a twin's call that followed it ran beside them (the linear twin's MLM decoder product: 14-20 ms
    right after the reference's, 10-11 ms after a pause, as fast as NumPy's).  Inside the model no
    OpenBLAS thread polls: the twins' products run on minibert's own threads (``kernels/_blas.py``)."""
    t0 = time.perf_counter()
    todo = cases()
    for _, ref, twin in todo:  # compile (or load from the cache) and warm up both sides
        ref(), twin()
    print(f"compile/load + warm-up of all kernels: {time.perf_counter() - t0:.1f} s", file=out)
    rows = []
    print(f"{'kernel':44s} {'numpy ms':>9s} {'numba ms':>9s} {'speed-up':>8s}", file=out)
    for name, ref, twin in todo:
        time.sleep(0.3)
        ref()
        a = _median_ms(ref, repeat)
        time.sleep(0.3)
        twin()
        b = _median_ms(twin, repeat)
        rows.append((name, a, b))
        print(f"{name:44s} {a:9.2f} {b:9.2f} {a / b:7.1f}x", file=out)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    run(args.repeat)
