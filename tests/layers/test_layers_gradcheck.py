"""Every layer's every gradient, checked against centered differences in float64, then the layers'
other properties (masking, stability, scatter-add, dtype).

The gradient checks are the layers' own tables, ``gradcheck_cases(rng)`` at the bottom of each file of
``minibert/layers`` (the very cases its ``test_NAME()`` and the exercise grader run, hidden ones
included): one test per case, named by the layer and the case.  Tolerance: ``rel_error < 1e-7``.
With h = 1e-5 a correct float64 backward typically lands at 1e-9..1e-11 (truncation error ~h^2,
rounding ~1e-16/h); a wrong one at 1e-3 or worse.  A gradient that is exactly 0 for every input
(attention's key bias) is checked to be below 1e-10 instead.
"""
import importlib
import pkgutil

import numpy as np
import pytest

from minibert import layers as L
from minibert.gradcheck import check_cases

TOL = 1e-7
rng = np.random.default_rng(0)


def randn(*shape, scale=1.0):
    return rng.standard_normal(shape) * scale


LAYER_MODULES = [importlib.import_module(f"minibert.layers.{m.name}") for m in pkgutil.iter_modules(L.__path__)]
CASES = [(module.__name__.rpartition(".")[2], case) for module in LAYER_MODULES if hasattr(module, "gradcheck_cases")
         for case in module.gradcheck_cases(np.random.default_rng(0))]


def test_every_layer_with_a_backward_has_a_table_of_gradient_checks():
    missing = [m.__name__ for m in LAYER_MODULES
               if any(n.endswith("_backward") and callable(getattr(m, n)) and getattr(m, n).__module__ == m.__name__
                      for n in vars(m)) and not hasattr(m, "gradcheck_cases")]
    assert not missing, f"no gradcheck_cases(rng) in {missing}"


@pytest.mark.parametrize("layer, case", CASES, ids=[f"{layer}: {case.name}" for layer, case in CASES])
def test_gradients(layer, case):
    check_cases([case], tol=TOL)


def test_gelu_forms_are_different_functions():
    # Mixing one form's forward with the other's backward is a classic bug; they differ by ~1e-3.
    x = np.linspace(-3, 3, 101)
    gap = np.abs(L.gelu_forward(x)[0] - L.gelu_tanh_forward(x)[0]).max()
    assert 1e-4 < gap < 1e-2


def test_softmax_masked_keys_get_zero_probability():
    x = randn(2, 3, 5, 5)
    mask = L.attention_mask_to_additive(np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), np.float64)
    p, _ = L.softmax_forward(x, mask)
    assert np.all(p[0, :, :, 3:] == 0), "masked keys must get exactly zero probability"
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-14)


def test_softmax_is_stable_for_huge_logits():
    p, _ = L.softmax_forward(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]])


def test_embedding_gradient_accumulates_repeated_ids():
    ids = np.array([[3, 1, 3, 3, 0], [1, 4, 4, 2, 3]])  # 3 appears four times
    w = randn(6, 12)
    out, cache = L.embedding_forward(ids, w)
    dout = randn(*out.shape)
    dw = L.embedding_backward(dout, cache)
    expected = np.zeros_like(w)
    for b in range(2):
        for t in range(5):
            expected[ids[b, t]] += dout[b, t]
    np.testing.assert_array_equal(dw, expected)
    assert np.all(dw[5] == 0), "an unused row gets no gradient"


def test_embedding_padding_idx_row_gets_no_gradient():
    ids = np.array([[0, 2, 0]])
    out, cache = L.embedding_forward(ids, randn(4, 3))
    dw = L.embedding_backward(np.ones_like(out), cache, padding_idx=0)
    assert np.all(dw[0] == 0) and np.all(dw[2] == 1)


def test_attention_ignores_padded_keys():
    C, A, T = 12, 3, 5
    weights = [randn(C, C, scale=0.4) if i % 2 == 0 else randn(C, scale=0.1) for i in range(8)]
    mask = np.array([[1, 1, 1, 0, 0]])
    mask_add = L.attention_mask_to_additive(mask, np.float64)
    x = randn(1, T, C)
    x2 = x.copy()
    x2[0, 3:] = randn(2, C)  # change only the padded tokens
    out1, _ = L.attention_forward(x, *weights, mask_add, A)
    out2, _ = L.attention_forward(x2, *weights, mask_add, A)
    np.testing.assert_allclose(out1[0, :3], out2[0, :3], rtol=0, atol=1e-14)


def test_dropout_scaling():
    x = randn(4, 50, 30)
    out, (keep, scale) = L.dropout_forward(x, 0.2, np.random.default_rng(3), True)
    assert abs(keep.mean() - 0.8) < 0.01  # 6000 draws: std of the mean is 0.005
    np.testing.assert_allclose(out[keep], x[keep] / 0.8)


def test_dropout_is_identity_in_eval_and_reproducible_with_a_seed():
    x = randn(3, 4)
    out, cache = L.dropout_forward(x, 0.5, np.random.default_rng(0), training=False)
    assert out is x and cache is None
    a, _ = L.dropout_forward(x, 0.5, np.random.default_rng(1))
    b, _ = L.dropout_forward(x, 0.5, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)


def test_cross_entropy_ignore_index():
    logits = randn(7, 11)
    labels = np.array([3, -100, 0, 10, -100, 5, 5])
    loss, cache = L.cross_entropy_forward(logits, labels)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    counted = labels != -100
    expected = -logp[np.arange(7)[counted], labels[counted]].mean()  # mean over the 5 counted rows only
    np.testing.assert_allclose(loss, expected, rtol=1e-14)
    dlogits = L.cross_entropy_backward(1.0, cache)
    assert np.all(dlogits[~counted] == 0)


def test_cross_entropy_is_stable_for_huge_logits():
    loss, _ = L.cross_entropy_forward(np.array([[1e4, 0.0, -1e4]]), np.array([1]))
    np.testing.assert_allclose(loss, 1e4)


@pytest.mark.parametrize("fwd", [L.linear_forward, L.layernorm_forward])
def test_layers_keep_float32(fwd):
    x = np.ones((2, 3, 4), np.float32)
    args = (x, np.ones((5, 4), np.float32), np.zeros(5, np.float32)) if fwd is L.linear_forward else \
        (x, np.ones(4, np.float32), np.zeros(4, np.float32))
    assert fwd(*args)[0].dtype == np.float32
