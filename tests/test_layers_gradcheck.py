"""Every layer's every gradient, checked against centered differences in float64.

Tolerance: ``rel_error < 1e-7``.  With h = 1e-5 a correct float64 backward typically lands at
1e-9..1e-11 (truncation error ~h^2, rounding ~1e-16/h); a wrong one at 1e-3 or worse.
Sizes are odd and all different (B=2, T=5, C=12, A=3, F=7, V=11) so that a transposed axis cannot
pass by accident, and batch 1 is covered too.  Parameters get non-trivial values (gamma != 1).
"""
import numpy as np
import pytest

from minibert import layers as L
from minibert.gradcheck import check_layer

TOL = 1e-7
rng = np.random.default_rng(0)


def randn(*shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def assert_all_below(errors, tol=TOL):
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"gradients off: {bad} (expected every rel_error < {tol})"


ATTENTION_NAMES = ["x", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"]


def check_attention(forward, inputs):
    """Gradient-check attention.  The key bias is special: q.(k_j + bk) = q.k_j + q.bk adds the same
    number to every score of a row, and softmax ignores a constant shift, so d loss/d bk is exactly 0.
    A relative error of two zeros is meaningless (the finite difference is rounding noise ~1e-10),
    so bk is checked absolutely: the analytic gradient must be 0 to rounding, the numerical one to
    its noise floor."""
    errors = check_layer(forward, L.attention_backward, inputs, ATTENTION_NAMES)
    bk_error = errors.pop("bk")
    assert_all_below(errors)
    out, cache = forward(*inputs)
    dbk = L.attention_backward(rng.standard_normal(out.shape), cache)[4]
    assert np.abs(dbk).max() < 1e-12
    assert bk_error < 1e-1  # tiny/tiny: only shows that the numerical gradient is noise around 0


@pytest.mark.parametrize("B", [1, 2])
def test_linear_gradients(B):
    errors = check_layer(L.linear_forward, L.linear_backward,
                         [randn(B, 5, 12), randn(7, 12), randn(7)], ["x", "w", "b"])
    assert_all_below(errors)


def test_layernorm_gradients_with_nontrivial_gamma_beta():
    x = randn(2, 5, 12) * 3 + 1.5
    errors = check_layer(lambda x, w, b: L.layernorm_forward(x, w, b, 1e-12), L.layernorm_backward,
                         [x, 1 + randn(12, scale=0.5), randn(12)], ["x", "gamma", "beta"])
    assert_all_below(errors)


@pytest.mark.parametrize("pair", [(L.gelu_forward, L.gelu_backward),
                                  (L.gelu_tanh_forward, L.gelu_tanh_backward),
                                  (L.tanh_forward, L.tanh_backward)], ids=["gelu", "gelu_tanh", "tanh"])
def test_elementwise_activation_gradients(pair):
    assert_all_below(check_layer(*pair, [randn(2, 5, 7) * 2], ["x"]))


def test_gelu_forms_are_different_functions():
    # Mixing one form's forward with the other's backward is a classic bug; they differ by ~1e-3.
    x = np.linspace(-3, 3, 101)
    gap = np.abs(L.gelu_forward(x)[0] - L.gelu_tanh_forward(x)[0]).max()
    assert 1e-4 < gap < 1e-2


def test_softmax_gradient_with_additive_mask():
    x = randn(2, 3, 5, 5)
    mask = L.attention_mask_to_additive(np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), np.float64)
    errors = check_layer(lambda x: L.softmax_forward(x, mask), L.softmax_backward, [x], ["x"])
    assert_all_below(errors)
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
    assert check_layer(lambda w: L.embedding_forward(ids, w), L.embedding_backward, [w], ["w"])["w"] < TOL


def test_embedding_padding_idx_row_gets_no_gradient():
    ids = np.array([[0, 2, 0]])
    out, cache = L.embedding_forward(ids, randn(4, 3))
    dw = L.embedding_backward(np.ones_like(out), cache, padding_idx=0)
    assert np.all(dw[0] == 0) and np.all(dw[2] == 1)


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_ffn_gradients(act):
    errors = check_layer(lambda *a: L.ffn_forward(*a, act=act), L.ffn_backward,
                         [randn(2, 5, 12), randn(7, 12, scale=0.5), randn(7), randn(12, 7, scale=0.5), randn(12)],
                         ["x", "w1", "b1", "w2", "b2"])
    assert_all_below(errors)


@pytest.mark.parametrize("B", [1, 2])
def test_attention_gradients_with_padding_mask(B):
    C, A, T = 12, 3, 5
    mask = np.ones((B, T), dtype=np.int64)
    mask[-1, 3:] = 0  # the last sequence is padded after 3 tokens
    mask_add = L.attention_mask_to_additive(mask, np.float64)
    weights = [randn(C, C, scale=0.4) if i % 2 == 0 else randn(C, scale=0.1) for i in range(8)]
    check_attention(lambda x, *w: L.attention_forward(x, *w, mask_add, A), [randn(B, T, C)] + weights)


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


def test_attention_backward_with_dropout_passes_gradcheck_with_masks_fixed():
    C, A, T = 12, 3, 5
    weights = [randn(C, C, scale=0.4) if i % 2 == 0 else randn(C, scale=0.1) for i in range(8)]
    mask_add = L.attention_mask_to_additive(np.ones((2, T)), np.float64)

    def forward(x, *w):  # the same seed each call: the same dropout mask each call
        return L.attention_forward(x, *w, mask_add, A, dropout_p=0.3,
                                   rng=np.random.default_rng(7), training=True)
    check_attention(forward, [randn(2, T, C)] + weights)


def test_dropout_gradient_and_scaling():
    x = randn(4, 50, 30)
    fwd = lambda x: L.dropout_forward(x, 0.2, np.random.default_rng(3), True)
    assert check_layer(fwd, L.dropout_backward, [x], ["x"])["x"] < TOL
    out, (keep, scale) = fwd(x)
    assert abs(keep.mean() - 0.8) < 0.01  # 6000 draws: std of the mean is 0.005
    np.testing.assert_allclose(out[keep], x[keep] / 0.8)


def test_dropout_is_identity_in_eval_and_reproducible_with_a_seed():
    x = randn(3, 4)
    out, cache = L.dropout_forward(x, 0.5, np.random.default_rng(0), training=False)
    assert out is x and cache is None
    a, _ = L.dropout_forward(x, 0.5, np.random.default_rng(1))
    b, _ = L.dropout_forward(x, 0.5, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)


def test_cross_entropy_gradient_and_ignore_index():
    logits = randn(7, 11)
    labels = np.array([3, -100, 0, 10, -100, 5, 5])
    errors = check_layer(lambda z: L.cross_entropy_forward(z, labels), L.cross_entropy_backward,
                         [logits], ["logits"])
    assert errors["logits"] < TOL
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
