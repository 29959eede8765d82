"""The loss-only fast path of pretraining (``minibert/kernels/heads_rows.py``): computing only the rows the
heads read gives the model's loss and every gradient, "compute everything, then pick the rows".

Tolerances: float64 1e-12, relative to the largest value compared: the fast path does the same
arithmetic, with float sums over rows in another order.  A gradient that is exactly 0 in exact arithmetic
(the attention's key bias: softmax ignores a shift) is held to the scale of the largest gradient.
"""
import types

import numpy as np
import pytest

import minibert
from minibert import backend
from minibert import layers as L
from minibert.gradcheck import GradCase, check_cases
from minibert.kernels import heads_rows as H
from conftest import make_batch, perturb_parameters, small_config


def model_and_fast_path(cfg, batch, train):
    """(the model's output and gradients, the fast path's output and gradients), on two equal models."""
    results = []
    for fast in (False, True):
        model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)).train(train)
        if fast:
            path = H.LossOnly()
            out = path.forward(model, **batch)
            path.backward(model)
        else:
            out = model(**batch)
            model.backward()
        results.append((out, model.grad_state_dict()))
    return results


@pytest.mark.parametrize("variant", [dict(), dict(is_decoder=True), dict(layer_norm_position="pre")],
                         ids=["post-LN", "causal-mask", "pre-LN-whole-layer-then-rows"])
@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["eval", "dropout"])
def test_the_loss_only_path_gives_the_model_s_loss_logits_and_every_gradient(each_backend, dropout, variant):
    """Padding, a labelled [CLS] row (read twice: MLM and pooler), dropout (the rows' masks are those the
    whole layer draws) and a causal mask (a row per query) included.  A pre-LN model (not BERT) runs its
    last layer whole and picks the rows: the other path of ``rows_layer_forward``."""
    cfg = small_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, **variant)
    batch = make_batch(cfg)
    batch["labels"][1, 0] = 7
    (full, g_full), (fast, g_fast) = model_and_fast_path(cfg, batch, train=dropout > 0)
    assert abs(fast.loss - full.loss) <= 1e-12 * abs(full.loss)
    assert abs(fast.nsp_loss - full.nsp_loss) <= 1e-12 * abs(full.nsp_loss)
    V = cfg.vocab_size
    picked = full.prediction_logits.reshape(-1, V)[fast.masked_positions]  # (P, V)
    np.testing.assert_array_equal(fast.masked_positions, np.flatnonzero(batch["labels"].reshape(-1) != -100))
    assert np.abs(fast.masked_logits - picked).max() <= 1e-12 * np.abs(picked).max()
    assert np.abs(fast.seq_relationship_logits - full.seq_relationship_logits).max() <= 1e-12
    assert g_fast.keys() == g_full.keys()
    largest = max(np.abs(g).max() for g in g_full.values())
    for name in g_full:
        scale = largest if name.endswith("attention.self.key.bias") else np.abs(g_full[name]).max()
        assert np.abs(g_fast[name] - g_full[name]).max() <= 1e-12 * scale, name


def test_the_loss_only_path_with_the_nsp_label_alone_reads_only_the_cls_rows(each_backend):
    cfg = small_config()
    batch = make_batch(cfg)
    del batch["labels"]
    (full, g_full), (fast, g_fast) = model_and_fast_path(cfg, batch, train=False)
    assert fast.mlm_loss is None and fast.masked_logits is None
    assert abs(fast.loss - full.loss) <= 1e-12 * abs(full.loss)
    for name in g_full:
        assert np.abs(g_fast[name] - g_full[name]).max() <= 1e-12 * max(1.0, np.abs(g_full[name]).max()), name


@pytest.mark.parametrize("causal", [False, True], ids=["padding-mask", "causal-mask"])
def test_attention_at_some_rows_is_the_whole_attention_at_those_rows(causal):
    """Its output and every gradient (given an upstream gradient at those rows only) are the whole
    attention's, dropout masks included (the same draws)."""
    rng = np.random.default_rng(0)
    B, T, C, A = 3, 6, 12, 3
    weights = [rng.standard_normal((C, C)) * 0.4 if i % 2 == 0 else rng.standard_normal(C) * 0.1 for i in range(8)]
    mask_add = L.attention_mask_to_additive(np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 6]), np.float64, causal)
    x = rng.standard_normal((B, T, C))
    rows = np.array([0, 2, 5, 6, 9, 12, 13, 14, 15, 16, 17])  # 3, 2 and 6 rows of the three sequences
    args = dict(mask_add=mask_add, num_heads=A, dropout_p=0.3, training=True)
    out, cache = L.attention_forward(x, *weights, rng=np.random.default_rng(4), **args)
    out_rows, rows_cache = H.rows_attention_forward(x, rows, *weights, rng=np.random.default_rng(4), **args)
    np.testing.assert_allclose(out_rows, out.reshape(B * T, C)[rows], rtol=1e-12, atol=0)
    d_rows = rng.standard_normal((rows.size, C))
    full_grads = L.attention_backward(H.scatter_rows(d_rows, rows, (B, T, C)), cache)
    for g_rows, g in zip(H.rows_attention_backward(d_rows, rows_cache), full_grads):
        assert np.abs(g_rows - g).max() <= 1e-12 * np.abs(g).max() + 1e-15  # dbk is 0 up to rounding


def test_attention_at_some_rows_passes_its_gradient_check():
    """Centered differences, float64, rel_error < 1e-7 (as every layer: tests/layers/test_layers_gradcheck.py)."""
    rng = np.random.default_rng(0)
    B, T, C, A = 2, 5, 12, 3
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    weights = {n: rng.standard_normal(s) * 0.5 for n, s in zip(
        ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"], [(C, C), (C,)] * 4)}
    x = rng.standard_normal((B, T, C))
    rows = np.array([0, 2, 3, 5, 7])  # 3 read rows in the first sequence, 2 in the second (one padding query)
    check_cases([
        GradCase("rows 0, 2, 3 | 0, 2, padded keys", H.rows_attention_forward, H.rows_attention_backward,
                 inputs=dict(x=x, **weights),
                 args=dict(rows=rows, mask_add=L.attention_mask_to_additive(mask, np.float64), num_heads=A),
                 zero=("dbk",)),
        GradCase("the same with attention dropout 0.3 and a causal mask", H.rows_attention_forward,
                 H.rows_attention_backward, inputs=dict(x=x, **weights),
                 args=dict(rows=rows, mask_add=L.attention_mask_to_additive(mask, np.float64, causal=True),
                           num_heads=A, dropout_p=0.3, rng=np.random.default_rng(5), training=True),
                 zero=("dbk",)),
    ], tol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("causal", [False, True], ids=["padding-mask", "causal-mask"])
def test_the_numba_twin_of_the_rows_attention_equals_the_numpy_one(dtype, dropout, causal):
    """Rows of different counts per sequence (queries padded to the longest), masks drawn from the same
    generator.  float64 to 1e-10, float32 to 1e-4 relative to the largest value (rounding only)."""
    rng = np.random.default_rng(1)
    B, T, C, A = 3, 7, 12, 3
    tol = 1e-10 if dtype == np.float64 else 1e-4
    x = rng.standard_normal((B, T, C)).astype(dtype)
    wb = [(rng.standard_normal(s) * 0.4).astype(dtype) for _ in range(4) for s in ((C, C), (C,))]
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 5:] = 0
    mask_add = L.attention_mask_to_additive(mask, dtype, causal=causal)
    rows = np.array([0, 3, 4, 7, 14, 15, 16, 17, 18, 19, 20])  # 3, 1 and all 7 rows of the sequences
    args = (x, rows, *wb, mask_add, A, dropout)
    out, cache = H.rows_attention_forward(*args, rng=np.random.default_rng(7), training=True)
    out2, cache2 = H.rows_attention_forward_numba(*args, rng=np.random.default_rng(7), training=True)
    assert np.abs(out2 - out).max() <= tol * np.abs(out).max()
    if dropout:
        assert np.array_equal(cache2.sdpa.dropout[0], cache.sdpa.dropout[0]), "the same attention dropout mask"
    dout = rng.standard_normal((rows.size, C)).astype(dtype)
    names = ("dx", "dwq", "dbq", "dwk", "dbk", "dwv", "dbv", "dwo", "dbo")
    grads = H.rows_attention_backward(dout, cache)
    largest = max(np.abs(g).max() for g in grads)
    for what, g1, g2 in zip(names, grads, H.rows_attention_backward_numba(dout, cache2)):
        scale = largest if what == "dbk" else np.abs(g1).max()  # dbk: 0 up to rounding
        assert g2.dtype == dtype and np.abs(g2 - g1).max() <= tol * scale, what


def test_a_students_attention_runs_whole_in_the_last_layer_too():
    """The rows' attention is the library's: with a module of the student's own attention the fast path
    runs the student's attention on every row of every layer (and picks the last layer's rows)."""
    calls = []
    student = types.ModuleType("student_attention")
    student.attention_forward = lambda *a, **k: calls.append(1) or L.attention_forward(*a, **k)
    before = backend.get_backend()
    try:
        minibert.set_backend(student)
        cfg = small_config()
        batch = make_batch(cfg)
        model = minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64).eval()
        H.LossOnly().forward(model, **batch)
        assert len(calls) == cfg.num_hidden_layers  # once per layer, the last included
    finally:
        minibert.set_backend(before)


def test_the_pretraining_job_asks_for_the_loss_only_path_and_the_loop_uses_it():
    """``Job.loss_only``: the training step calls the fast path's forward and backward, not the model's."""
    from minibert.training import loop
    cfg = small_config()
    batch = make_batch(cfg)
    calls = []

    class Counting(H.LossOnly):
        def forward(self, model, **b):
            calls.append("forward")
            return super().forward(model, **b)

        def backward(self, model, **up):
            calls.append("backward")
            super().backward(model, **up)

    model = minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)
    run_cfg = loop.RunConfig(max_steps=2, warmup_steps=0, lr=1e-3)
    result = loop.training_step(model, minibert.AdamW(model, lr=1e-3), batch, 0, run_cfg, loss_only=Counting())
    assert calls == ["forward", "backward"] and isinstance(result.outputs[0], H.LossOnlyOutput)


@pytest.mark.parametrize("fast", [False, True], ids=["model", "loss-only"])
def test_columns_of_padding_every_row_has_change_neither_the_loss_nor_a_gradient(fast):
    """Why pretraining may cut a batch to its longest sequence (``group_by_length``): three more columns of
    [PAD] in every row are masked out of attention and never labelled, so the loss and every gradient
    stay what they were (float64, 1e-12 relative: only the order of sums over rows differs)."""
    cfg = small_config()
    batch = make_batch(cfg)
    padded = {k: np.pad(v, ((0, 0), (0, 3)), constant_values=-100 if k == "labels" else 0) if v.ndim == 2 else v
              for k, v in batch.items()}
    results = []
    for b in (batch, padded):
        model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64))
        if fast:
            path = H.LossOnly()
            out = path.forward(model, **b)
            path.backward(model)
        else:
            out = model(**b)
            model.backward()
        results.append((out.loss, model.grad_state_dict()))
    (loss, grads), (loss_padded, grads_padded) = results
    assert abs(loss_padded - loss) <= 1e-12 * abs(loss)
    largest = max(np.abs(g).max() for g in grads.values())
    for name, g in grads.items():
        scale = largest if name.endswith("attention.self.key.bias") else np.abs(g).max()  # as above
        assert np.abs(grads_padded[name] - g).max() <= 1e-12 * scale, name
