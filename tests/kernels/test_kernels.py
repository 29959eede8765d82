"""Every numba twin (``minibert.kernels``) against its NumPy reference (``minibert.layers``,
``minibert.layers.adamw.adamw_update``).

Tolerances (rel_error: max|a-b| over max|a|+|b|): float64 < 1e-12 (the twins do the reference's
arithmetic in another order, or through the C library's exp/erf: ~1e-16 expected), float32 < 1e-5
(float32 twins use vectorized exp/erf good to ~1e-7, see ``minibert/kernels/_vecmath.py``).
Sizes are odd and all different (B=3, T=7, C=12, A=3, D=4, F=20, V=17) and inputs carry padding,
ignored labels and repeated token ids.  Dropout twins draw from the same generator as the reference,
so their masks must be *identical*, not just close.

Every product of the twins goes through ``kernels/_blas.py``'s ``matmul``, which cuts it into one slab
per thread.  These sizes are below the size it starts cutting at, and the test run has one thread, so
the fixture ``every_product_cut_in_three`` makes it cut every product into 3 slabs for every test here.

The first use of each twin compiles it (or loads it from numba's cache); the time is printed.
"""
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import minibert
from minibert import kernels as K
from minibert import layers as L
from minibert.kernels import _blas
from minibert.gradcheck import rel_error
from minibert.layers.softmax import attention_mask_to_additive

B, T, C, A, F, V = 3, 7, 12, 3, 20, 17
TOL = {np.float64: 1e-12, np.float32: 1e-5}
DTYPES = [np.float64, np.float32]
_first_use = {}


def timed(name, fn, *args, **kwargs):
    """Call ``fn``; the first call for each (name, dtype) is timed (compilation or cache load)."""
    dtype = next((a.dtype.name for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"), "")
    key = f"{name} {dtype}".strip()
    if key in _first_use:
        return fn(*args, **kwargs)
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    _first_use[key] = time.perf_counter() - t
    return out


def rnd(dtype, *shape, scale=1.0, seed=None, rng=[np.random.default_rng(0)]):  # noqa: B006
    r = rng[0] if seed is None else np.random.default_rng(seed)
    return (scale * r.standard_normal(shape)).astype(dtype)


def close(a, b, dtype, what=""):
    err = rel_error(a, b)
    assert err < TOL[dtype], f"{what}: rel_error {err:.2e} (expected < {TOL[dtype]:.0e} in {np.dtype(dtype).name})"
    assert np.asarray(a).dtype == np.asarray(b).dtype, f"{what}: dtype {np.asarray(a).dtype} != {np.asarray(b).dtype}"


@pytest.fixture(autouse=True)
def every_product_cut_in_three(monkeypatch):
    monkeypatch.setattr(_blas, "SMALL", 0)
    monkeypatch.setattr(_blas, "threads", lambda: 3)


def padding_mask_add(dtype):
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    return attention_mask_to_additive(mask, dtype)  # (B, 1, 1, T)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm(dtype):
    x = rnd(dtype, B, T, C, scale=3) + dtype(1.5)
    w, b, dout = 1 + rnd(dtype, C, scale=0.5), rnd(dtype, C), rnd(dtype, B, T, C)
    out, cache = L.layernorm_forward(x, w, b, 1e-12)
    out2, cache2 = timed("layernorm_forward", K.layernorm_forward, x, w, b, 1e-12)
    close(out2, out, dtype, "out")
    for name, c1, c2 in zip(("mean", "rstd"), cache[2:], cache2[2:]):
        close(c2, c1, dtype, name)
    grads = L.layernorm_backward(dout, cache)
    for name, g1, g2 in zip(("dx", "dw", "db"), grads, timed("layernorm_backward", K.layernorm_backward, dout, cache)):
        close(g2, g1, dtype, name)
    # the caches are interchangeable: the reference backward accepts the twin's cache
    for g1, g2 in zip(grads, L.layernorm_backward(dout, cache2)):
        close(g2, g1, dtype, "reference backward of the twin's cache")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_attention_with_padding_and_dropout(dtype, dropout):
    x = rnd(dtype, B, T, C)
    wb = [rnd(dtype, *s, scale=0.4) for _ in range(4) for s in ((C, C), (C,))]
    mask_add = padding_mask_add(dtype)
    args = (x, *wb, mask_add, A, dropout)
    out, cache = L.attention_forward(*args, rng=np.random.default_rng(7), training=True)
    out2, cache2 = timed("attention_forward", K.attention_forward, *args, rng=np.random.default_rng(7),
                         training=True)
    close(out2, out, dtype, "out")
    close(cache2.sdpa.probs, cache.sdpa.probs, dtype, "probs (cache.sdpa.probs, the model's output_attentions)")
    if dropout:
        assert np.array_equal(cache2[3][5][0], cache[3][5][0]), "same generator: the same attention dropout mask"
    check_attention_backward("attention_backward", rnd(dtype, B, T, C), cache, cache2, dtype)


def check_attention_backward(name, dout, cache, cache2, dtype):
    """The twin's backward ``K.<name>`` against the reference's ``L.<name>`` on the reference's ``cache``
    and the twin's ``cache2``: the same 9 gradients, and either backward accepts either forward's cache."""
    reference, twin = getattr(L, name), getattr(K, name)
    names = ("dx", "dwq", "dbq", "dwk", "dbk", "dwv", "dbv", "dwo", "dbo")
    grads = reference(dout, cache)
    for what, g1, g2 in zip(names, grads, timed(name, twin, dout, cache2)):
        if what == "dbk":  # exactly 0 in exact arithmetic (softmax ignores a per-row shift): compare absolutely
            assert np.abs(g2).max() < 100 * TOL[dtype] * np.abs(grads[0]).max()
        else:
            close(g2, g1, dtype, what)
    for what, g1, g2, g3 in zip(names, grads, twin(dout, cache), reference(dout, cache2)):
        if what != "dbk":
            close(g2, g1, dtype, what + " (twin backward, reference cache)")
            close(g3, g1, dtype, what + " (reference backward, twin cache)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_padding_keys_get_zero_probability(dtype):
    x = rnd(dtype, B, T, C)
    wb = [rnd(dtype, *s, scale=0.4) for _ in range(4) for s in ((C, C), (C,))]
    _, cache = K.attention_forward(x, *wb, padding_mask_add(dtype), A)
    probs = cache.sdpa.probs  # (B, A, T, T)
    assert np.all(probs[2, :, :, 3:] == 0) and np.all(probs[1, :, :, 5:] == 0)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=0, atol=10 * TOL[dtype])


def attention_softmax_forward_reference(scores, mask_add, scale, dropout_p=0.0, rng=None, training=False):
    """The NumPy reference of the fused op: the middle of ``layers.attention.sdpa_forward``."""
    probs, _ = L.softmax_forward(scores * scores.dtype.type(scale), mask_add)
    dropped, drop_cache = L.dropout_forward(probs, dropout_p, rng, training)
    return probs, dropped, drop_cache


def attention_softmax_backward_reference(ddropped, probs, drop_cache, scale):
    return L.softmax_backward(L.dropout_backward(ddropped, drop_cache), probs) * probs.dtype.type(scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_softmax_fused_op_and_its_reference(dtype):
    scores, dd = rnd(dtype, B, A, T, T, scale=3), rnd(dtype, B, A, T, T)
    mask_add = padding_mask_add(dtype)
    ref = attention_softmax_forward_reference(scores, mask_add, 0.5, 0.25, np.random.default_rng(3), True)
    twin = timed("attention_softmax_forward", K.attention_softmax_forward, scores, mask_add, 0.5, 0.25,
                 np.random.default_rng(3), True)
    close(twin[0], ref[0], dtype, "probs")
    close(twin[1], ref[1], dtype, "dropped")
    assert np.array_equal(twin[2][0], ref[2][0])
    # the reference of the fused op is the reference sdpa's softmax: scale, mask, softmax, dropout
    p_sdpa, _ = L.softmax_forward(scores * dtype(0.5), mask_add)
    close(ref[0], p_sdpa, dtype, "reference vs layers.softmax")
    for drop_cache in (None, ref[2]):
        close(timed("attention_softmax_backward", K.attention_softmax_backward, dd, ref[0], drop_cache, 0.5),
              attention_softmax_backward_reference(dd, ref[0], drop_cache, 0.5), dtype, "dscores")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_and_bias_gelu(dtype):
    h = rnd(dtype, B, T, F, scale=2.5)
    h[0, 0, :4] = [0.0, -7.0, 7.0, 1e-9]  # 0, the saturated tails, a tiny value
    dout = rnd(dtype, B, T, F)
    out, cache = L.gelu_forward(h)
    close(timed("gelu_forward", K.gelu_forward, h)[0], out, dtype, "gelu")
    close(timed("gelu_backward", K.gelu_backward, dout, cache), L.gelu_backward(dout, cache), dtype, "dgelu")
    # fused bias + GELU; its reference is gelu_forward(h + b), and db is the row sum of dh
    b = rnd(dtype, F)
    h2 = h.reshape(-1, F)
    ref_out, ref_cache = L.gelu_forward(h2 + b)
    out2, cache2 = timed("bias_gelu_forward", K.bias_gelu_forward, h2.copy(), b)
    close(out2, ref_out, dtype, "bias+gelu")
    close(cache2, h2 + b, dtype, "pre-activation cache")
    dh_ref = L.gelu_backward(dout.reshape(-1, F), ref_cache)
    dh, db = timed("gelu_bias_backward", K.gelu_bias_backward, dout.reshape(-1, F).copy(), cache2)
    close(dh, dh_ref, dtype, "dh")
    close(db, dh_ref.sum(axis=0), dtype, "db")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_ffn(dtype, act):
    x = rnd(dtype, B, T, C)
    args = (x, rnd(dtype, F, C, scale=0.5), rnd(dtype, F), rnd(dtype, C, F, scale=0.5), rnd(dtype, C), act)
    out, cache = L.ffn_forward(*args)
    out2, cache2 = timed("ffn_forward", K.ffn_forward, *args)
    close(out2, out, dtype, "out")
    dout = rnd(dtype, B, T, C)
    for name, g1, g2, g3 in zip(("dx", "dw1", "db1", "dw2", "db2"), L.ffn_backward(dout, cache),
                                timed("ffn_backward", K.ffn_backward, dout, cache2), K.ffn_backward(dout, cache)):
        close(g2, g1, dtype, name)
        close(g3, g1, dtype, name + " (twin backward, reference cache)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear(dtype):
    x, w, b = rnd(dtype, B, T, C), rnd(dtype, F, C), rnd(dtype, F)
    out, cache = L.linear_forward(x, w, b)
    out2, cache2 = timed("linear_forward", K.linear_forward, x, w, b)
    close(out2, out, dtype, "out")
    dout = rnd(dtype, B, T, F)
    for name, g1, g2 in zip(("dx", "dw", "db"), L.linear_backward(dout, cache), K.linear_backward(dout, cache2)):
        close(g2, g1, dtype, name)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_in_slabs_is_numpys_matmul(dtype):
    """2-D products (transposed operands, rows not divisible by 3), stacks of heads written through
    strided views, and a given ``out``: the same numbers as np.matmul (each element is the same dot
    product over the whole inner axis; only the rows each thread owns differ)."""
    a, b = rnd(dtype, 11, 6), rnd(dtype, 9, 6)
    close(_blas.matmul(a, b.T), a @ b.T, dtype, "2-D, b transposed")
    c = rnd(dtype, 11, 5)
    close(_blas.matmul(a.T, c), a.T @ c, dtype, "2-D, a transposed")
    merged = np.zeros((B * T, C), dtype)  # (B*T, C) seen as (B, A, T, D) heads, as in the attention twin
    heads = merged.reshape(B, T, A, C // A).transpose(0, 2, 1, 3)
    p, v = rnd(dtype, B, A, T, T), rnd(dtype, B, A, T, C // A)
    assert _blas.matmul(p, v, out=heads) is heads
    close(merged.reshape(B, T, A, C // A).transpose(0, 2, 1, 3), p @ v, dtype, "stack into a strided out")
    with pytest.raises(ValueError):
        _blas.matmul(a, b.T, out=np.empty((11, 8), dtype))  # a wrong out: NumPy's own error
    square, other = rnd(dtype, 9, 9), rnd(dtype, 9, 9)
    expected, written_over = square @ other, square.copy()
    _blas.matmul(written_over, other, out=written_over)  # out is an input: NumPy's result, not half-overwritten rows
    close(written_over, expected, dtype, "out is the left operand")


def test_matmul_runs_one_slab_per_thread_while_openblas_is_on_one_thread(monkeypatch):
    """No OpenBLAS worker gets work, so none spins after the product: the slabs run while OpenBLAS is
    set to one thread, a 2-D product as one slab of rows per thread (3 here), a stack one matrix at a
    time, and OpenBLAS's thread count is put back after."""
    assert _blas.OPENBLAS is not None, "NumPy's wheel ships OpenBLAS: its thread setters were not found"
    get_threads, set_threads = _blas.OPENBLAS
    seen, run = [], _blas._gemm_slabs

    def watched(*args):
        seen.append((get_threads(), args[-3]))  # OpenBLAS's threads during the call, and the slabs
        return run(*args)

    monkeypatch.setattr(_blas, "_gemm_slabs", watched)
    previous = get_threads()
    set_threads(2)
    try:
        _blas.matmul(rnd(np.float32, 12, 4), rnd(np.float32, 4, 5))
        _blas.matmul(rnd(np.float32, 2, 3, 4, 4), rnd(np.float32, 2, 3, 4, 5))
        assert get_threads() == 2
    finally:
        set_threads(previous)
    assert seen == [(1, 3), (1, 1)], seen


_FORKED_CHILD = """
import os, warnings, numpy as np
import minibert
from minibert import backend
from minibert.kernels import _blas
_blas.SMALL = 0
a = np.ones((64, 64), np.float32)
_blas.matmul(a, a)  # the parent's OpenMP threads now run
model = minibert.BertModel(minibert.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=16), seed=0).eval()
expected = model(np.array([[2, 5, 7]])).last_hidden_state
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pid = os.fork()
if pid == 0:
    ok = (_blas.matmul(a, a)[0, 0] == 64 and backend.get_backend() == "numpy"
          and np.allclose(model(np.array([[2, 5, 7]])).last_hidden_state, expected, atol=1e-5)
          and any("forked" in str(w.message) for w in caught))
    try:
        minibert.set_backend("numba")
        ok = False
    except RuntimeError as error:
        ok = ok and "spawn" in str(error)
    os._exit(0 if ok else 3)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), backend.get_backend())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_after_the_kernels_ran_runs_the_numpy_references():
    """GNU OpenMP cannot run in a child forked after its threads started (numba terminates the child at its
    first parallel kernel, exit code -15).  So such a child runs the NumPy references, says so once, and
    refuses ``set_backend("numba")`` with the reason; the parent keeps its numba kernels."""
    run = subprocess.run([sys.executable, "-c", _FORKED_CHILD], capture_output=True, text=True,
                         timeout=120, check=True)
    assert run.stdout.split()[-2:] == ["0", "numba"], run.stdout + run.stderr


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_same_generator_same_mask(dtype):
    x, dout = rnd(dtype, B, T, C), rnd(dtype, B, T, C)
    out, cache = L.dropout_forward(x, 0.3, np.random.default_rng(5))
    out2, cache2 = timed("dropout_forward", K.dropout_forward, x, 0.3, np.random.default_rng(5))
    assert np.array_equal(cache2[0], cache[0]) and cache2[1] == cache[1]
    assert np.array_equal(out2, out), "dropout is a multiply by 0 or by the same scale: bit-identical"
    assert np.array_equal(timed("dropout_backward", K.dropout_backward, dout, cache2), L.dropout_backward(dout, cache))
    # eval, and p = 0: the identity, no cache
    for kw in (dict(training=False), dict(training=True, p=0.0)):
        kw = {"p": 0.3, **kw}
        y, c = K.dropout_forward(x, kw.pop("p"), np.random.default_rng(5), **kw)
        assert y is x and c is None and K.dropout_backward(dout, c) is dout
    # same seed, same masks; a generator moves on, so the next call draws a new mask
    rng = np.random.default_rng(9)
    assert not np.array_equal(K.dropout_forward(x, 0.3, rng)[1][0], K.dropout_forward(x, 0.3, rng)[1][0])


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1 << 15, (1 << 15) + 1, (1 << 16) + 3, 600_001])
@pytest.mark.parametrize("already_drawn", [0, 1, 2])
def test_uniforms_are_the_generators_numbers_made_on_every_thread(n, already_drawn):
    """``uniforms`` runs NumPy's PCG64 in jitted code, each task jumped ahead to its own chunk of
    2^15 numbers, in 8 interleaved runs of 2^12 (``kernels/_pcg64.py``).  The numbers and the
    generator's final state must be exactly those of one ``rng.random`` call: across the chunk and
    run boundaries (the sizes above straddle them), with a half 64-bit draw pending before (an odd
    count drawn before) and after (an odd n)."""
    from minibert.kernels.dropout import uniforms
    a, b = np.random.default_rng(42), np.random.default_rng(42)
    a.random(already_drawn, dtype=np.float32)
    b.random(already_drawn, dtype=np.float32)
    assert np.array_equal(uniforms(a, (n,)), b.random(n, dtype=np.float32))
    assert a.bit_generator.state == b.bit_generator.state


def test_uniforms_from_a_generator_other_than_pcg64_are_numpys():
    from minibert.kernels.dropout import uniforms
    a, b = np.random.Generator(np.random.Philox(3)), np.random.Generator(np.random.Philox(3))
    assert np.array_equal(uniforms(a, (5, 7)), b.random((5, 7), dtype=np.float32))
    assert a.random() == b.random()  # left in the same state


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_ignored_rows(dtype):
    N = 11
    logits = rnd(dtype, N, V, scale=4)
    labels = np.random.default_rng(2).integers(0, V, N)
    labels[[1, 4, 5, 9]] = -100
    loss, cache = L.cross_entropy_forward(logits, labels)
    loss2, cache2 = timed("cross_entropy_forward", K.cross_entropy_forward, logits, labels)
    close(loss2, loss, dtype, "loss")
    close(cache2[0], cache[0], dtype, "probs")
    assert np.array_equal(cache2[1], cache[1]) and np.array_equal(cache2[2], cache[2]) and cache2[3] == cache[3]
    d_ref = L.cross_entropy_backward(1.0, cache)
    d = timed("cross_entropy_backward", K.cross_entropy_backward, 1.0, cache2)
    close(d, d_ref, dtype, "dlogits")
    assert np.all(d[[1, 4, 5, 9]] == 0), "ignored rows get no gradient"
    close(K.cross_entropy_backward(0.7, cache), L.cross_entropy_backward(0.7, cache), dtype, "dlogits, dloss=0.7")
    # no counted row at all: loss 0 and zero gradient, as the reference defines it
    loss0, c0 = K.cross_entropy_forward(logits, np.full(N, -100))
    assert loss0 == 0 and not K.cross_entropy_backward(1.0, c0).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_a_nan_logit_is_nan(dtype):
    """The row maximum is compiled assuming no NaNs (so that it vectorizes); a NaN logit, wherever it
    sits in the row, must still give a NaN loss, as the reference does: that is how the training loop
    notices a diverged run."""
    logits = rnd(dtype, 6, V)
    labels = np.zeros(6, np.int64)
    for col in (0, 5, V - 1):  # at the label, in the middle, last
        bad = logits.copy()
        bad[2, col] = np.nan
        assert np.isnan(K.cross_entropy_forward(bad, labels)[0]) and np.isnan(L.cross_entropy_forward(bad, labels)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_scatter_add_with_padding_idx(dtype):
    ids = np.random.default_rng(4).integers(0, 6, (B, T))  # V=17 rows, only 0..5 used: many repeats
    ids[:, -1] = 0  # padding
    dout = rnd(dtype, B, T, C)
    cache = L.embedding_forward(ids, rnd(dtype, V, C))[1]
    for pad in (None, 0):
        ref = L.embedding_backward(dout, cache, pad)
        twin = timed("embedding_backward", K.embedding_backward, dout, cache, pad)
        close(twin, ref, dtype, f"dw, padding_idx={pad}")
        assert np.array_equal(twin, ref), "the columns are summed in the reference's order: bit-identical"
    assert not twin[0].any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_update_is_bit_for_bit_the_reference(dtype):
    shapes = [(V, C), (C,), (5, 3, 2), (129, 130)]
    ref = [[rnd(dtype, *s, seed=i)] + [np.zeros(s, dtype) for _ in range(2)] for i, s in enumerate(shapes)]
    twin = [[a.copy() for a in state] for state in ref]
    b1, b2 = 0.9, 0.999
    for t in range(1, 4):
        step = dict(lr=1e-2 * t, beta1=b1, beta2=b2, eps=1e-6, step_size=1e-2 * t / (1 - b1 ** t),
                    bc2_sqrt=math.sqrt(1 - b2 ** t))  # Python floats, as AdamW.step passes them
        for i, ((p, m, v), (p2, m2, v2)) in enumerate(zip(ref, twin)):
            g = rnd(dtype, *p.shape, seed=100 * t + i)
            wd = 0.0 if i == 1 else 0.01
            L.adamw_update(p, g, m, v, weight_decay=wd, **step)
            timed("adamw_update", K.adamw_update, p2, g, m2, v2, weight_decay=wd, **step)
    for (p, m, v), (p2, m2, v2) in zip(ref, twin):
        assert np.array_equal(p, p2) and np.array_equal(m, m2) and np.array_equal(v, v2)


def test_vectorized_exp_and_erf_are_accurate_in_float32():
    from numba import njit

    from minibert.kernels._vecmath import vexp, verf
    from scipy.special import erf

    @njit
    def apply(x, which):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = vexp(x[i]) if which == 0 else verf(x[i])
        return out
    x = np.linspace(-87, 88, 200_001, dtype=np.float32)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(apply(x, 0) - ref) / ref) < 2e-7  # ~1 ulp of float32
    assert apply(np.array([-1e30, -3.4e38, -200.0], np.float32), 0).tolist() == [0, 0, 0]  # flushed, no overflow
    x = np.linspace(-8, 8, 20_001, dtype=np.float32)
    assert np.max(np.abs(apply(x, 1) - erf(x.astype(np.float64)))) < 5e-7


# ------------------------------------------------------------------------------------------------
def test_backend_switch_swaps_exactly_the_twins():
    previous = minibert.get_backend()
    try:
        minibert.set_backend("numba")
        from minibert import backend
        for name, twin in K.OPS.items():
            assert getattr(backend.ops, name) is twin
        assert backend.ops.tanh_forward is L.tanh_forward  # not twinned: the reference
        minibert.set_backend("numpy")
        assert backend.ops.layernorm_forward is L.layernorm_forward
        assert backend.ops.adamw_update is L.adamw_update  # the reference AdamW uses (layers/adamw.py)
    finally:
        minibert.set_backend(previous)


def test_float32_training_step_is_the_same_under_both_backends():
    """Dropout on: both backends draw the same masks from the same generator, so a float32 forward and
    backward give the same loss and gradients to float32 precision (AdamW: bit-for-bit, above)."""
    from conftest import make_batch, small_config
    cfg = small_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    batch = make_batch(cfg, B=3, T=11, seed=2)
    previous, results = minibert.get_backend(), {}
    try:
        for name in ("numpy", "numba"):
            minibert.set_backend(name)
            model = minibert.BertForPreTraining(cfg, seed=3).train()
            loss = timed("model step", lambda: model(**batch).loss)
            model.backward()
            results[name] = loss, {n: g.copy() for n, g in model.grad_state_dict().items()}
    finally:
        minibert.set_backend(previous)
    (l1, g1), (l2, g2) = results["numpy"], results["numba"]
    assert abs(l1 - l2) <= 1e-5 * abs(l1)
    for n in g1:
        if n.endswith("attention.self.key.bias"):  # exactly 0 in exact arithmetic: float32 noise on both
            assert np.abs(g1[n]).max() < 1e-6 and np.abs(g2[n]).max() < 1e-6, n
        else:
            assert rel_error(g2[n], g1[n]) < 1e-5, n


_FAULTS_OF_TEN_STEPS = """
import resource, numpy as np, minibert.kernels
def step():  # three 21 MB arrays alive at once (the MLM probabilities of a BERT-Tiny step are one), then freed
    arrays = [np.ones((641, 8192), np.float32) for _ in range(3)]
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_the_memory_a_step_frees_is_kept_for_the_next_step():
    """Importing the kernels tells glibc to keep freed memory (``kernels/__init__.py``): ten steps that
    make and free three 21 MB arrays fault no page in again.  Without it (seen: 107,340 faults) or with
    glibc's own ``MALLOC_TRIM_THRESHOLD_`` at its default (the control), most pages fault every step.
    (Pages of 4 KiB, so that faults count pages: NumPy would ask for 2 MiB pages for large arrays.)"""
    def faults(**env):
        run = subprocess.run([sys.executable, "-c", _FAULTS_OF_TEN_STEPS], capture_output=True, text=True,
                             env={**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0", **env}, check=True)
        return int(run.stdout.split()[-1])
    pages = 641 * 8192 * 4 // 4096  # of one array
    assert faults() < pages, "freed pages were faulted in again"
    assert faults(MALLOC_TRIM_THRESHOLD_="131072") > 10 * pages  # the control



def test_zz_report_first_use_times(capsys):
    """Prints how long the first call of each twin took (compilation, or loading numba's cache)."""
    with capsys.disabled():
        total = sum(_first_use.values())
        print(f"\nfirst use of the numba twins (compile or cache load), {total:.1f} s in all:")
        for name, t in sorted(_first_use.items(), key=lambda kv: -kv[1]):
            print(f"    {name:36s} {t:6.2f} s")

