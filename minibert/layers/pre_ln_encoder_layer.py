"""One **pre-LN** encoder layer: an experiment, **not BERT** (``BertConfig(layer_norm_position="pre")``).

    n1  = LayerNorm(x)                    layernorm.py   (normalise the branch's input, not the sum)
    a   = dropout(Attention(n1))          attention.py, dropout.py
    h   = x + a                           (the residual stream is never normalised)
    n2  = LayerNorm(h)                    layernorm.py
    f   = dropout(FFN(n2))                ffn.py, dropout.py
    out = h + f

BERT (``encoder_layer.py``) is post-LN: ``LayerNorm(x + a)``, the sum normalised.  Pre-LN (Xiong et al.
2020, "On Layer Normalization in the Transformer Architecture"; GPT-2's order) normalises only what
enters each branch, so the residual path from the output back to the input is the identity: the
gradient reaching layer 1 is at least the gradient at the top, whatever the layers do.  A stack of
pre-LN layers ends with one more LayerNorm (``BertModel`` adds ``encoder.final_layer_norm.*`` for it),
since nothing else normalises the last layer's sum.  Lesson 07d compares the two orders' trainability.

Same parameters, names and order as ``encoder_layer.py`` (``PARAMETERS`` is that file's): ``ln1_*``
(``attention.output.LayerNorm``) normalises the attention's *input* here, ``ln2_*`` (``output.LayerNorm``)
the FFN's input.  transformers has no pre-LN BERT, so those names would be misread there: a pre-LN model
refuses ``save_pretrained`` and the torch engine (``minibert.files``, ``minibert.training.torch_engine``).
The cache is ``EncoderLayerCache`` with the same fields: ``attention_norm`` is LayerNorm(x)'s cache,
``ffn_norm`` LayerNorm(h)'s.  Not an exercise (no solution markers): read it next to the capstone.
Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``F`` intermediate, ``A`` heads.
"""
import numpy as np

from .encoder_layer import PARAMETERS, REFERENCE_OPS, EncoderLayerCache, random_parameters  # noqa: F401  (PARAMETERS: the same)


def pre_ln_encoder_layer_forward(x, wq, bq, wk, bk, wv, bv, wo, bo, ln1_w, ln1_b, w1, b1, w2, b2, ln2_w, ln2_b,
                                 mask_add, num_heads, act="gelu", eps=1e-12, hidden_dropout=0.0,
                                 attention_dropout=0.0, rng=None, training=False, ops=None):
    """The arguments of ``encoder_layer_forward``, the same shapes: x (B, T, C), mask (B, 1, 1, T) or
    (B, 1, T, T) -> out (B, T, C), ``EncoderLayerCache``.  Dropout masks are drawn in the same order
    (attention's, then ``a``'s, then ``f``'s)."""
    K = REFERENCE_OPS if ops is None else ops
    drop = dict(rng=rng, training=training)
    n1, c_ln1 = K.layernorm_forward(x, ln1_w, ln1_b, eps)  # (B, T, C)
    a, c_att = K.attention_forward(n1, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads,
                                   attention_dropout, **drop)  # (B, T, C)
    a, c_d1 = K.dropout_forward(a, hidden_dropout, **drop)  # (B, T, C)
    h = x + a  # (B, T, C)
    n2, c_ln2 = K.layernorm_forward(h, ln2_w, ln2_b, eps)  # (B, T, C)
    f, c_ffn = K.ffn_forward(n2, w1, b1, w2, b2, act)  # (B, T, C)
    f, c_d2 = K.dropout_forward(f, hidden_dropout, **drop)  # (B, T, C)
    out = h + f  # (B, T, C)
    return out, EncoderLayerCache(c_att, c_d1, c_ln1, c_ffn, c_d2, c_ln2, ops)


def pre_ln_encoder_layer_backward(dout, cache):
    """(B, T, C) -> dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo, dln1_w, dln1_b, dw1, db1, dw2, db2,
    dln2_w, dln2_b (the gradients of the forward's arguments, in their order)."""
    K = REFERENCE_OPS if cache.ops is None else cache.ops
    # forward: out = h + f, f = dropout(FFN(n2))
    df = K.dropout_backward(dout, cache.ffn_dropout)  # (B, T, C)
    dn2, dw1, db1, dw2, db2 = K.ffn_backward(df, cache.ffn)
    # forward: n2 = LayerNorm(h)
    dh, dln2_w, dln2_b = K.layernorm_backward(dn2, cache.ffn_norm)  # (B, T, C)
    dh = dh + dout  # the residual: h also went straight into out (the identity path)
    # forward: h = x + a, a = dropout(Attention(n1))
    da = K.dropout_backward(dh, cache.attention_dropout)  # (B, T, C)
    dn1, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo = K.attention_backward(da, cache.attention)
    # forward: n1 = LayerNorm(x)
    dx, dln1_w, dln1_b = K.layernorm_backward(dn1, cache.attention_norm)  # (B, T, C)
    dx = dx + dh  # the residual: x also went straight into h
    return dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo, dln1_w, dln1_b, dw1, db1, dw2, db2, dln2_w, dln2_b


def gradcheck_cases(rng):
    """The gradient checks of the pre-LN layer, float64 inputs drawn from ``rng`` (run by
    ``tests/layers/test_layers_gradcheck.py``).  As for the post-LN layer, ``dbk`` is exactly 0 for every input
    (softmax ignores a shift of a row's scores), so it is checked to be 0."""
    from minibert.gradcheck import GradCase
    from minibert.layers.softmax import attention_mask_to_additive
    B, T, C, A, F = 2, 5, 12, 3, 7
    mask = attention_mask_to_additive(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), np.float64)
    params = random_parameters(rng, C, F)  # the post-LN layer's draw: same names, shapes, scales
    x = rng.standard_normal((B, T, C)) * 2 + 0.5  # not already normalised: LayerNorm(x) must do work
    return [
        GradCase("pre-LN layer, x (2, 5, 12), 3 heads, F = 7, padded keys, no dropout",
                 pre_ln_encoder_layer_forward, pre_ln_encoder_layer_backward, inputs=dict(x=x, **params),
                 args=dict(mask_add=mask, num_heads=A), zero=("dbk",)),
        GradCase("pre-LN layer with dropout: hidden 0.2, attention 0.1 (the same masks on every call)",
                 pre_ln_encoder_layer_forward, pre_ln_encoder_layer_backward, inputs=dict(x=x, **params),
                 args=dict(mask_add=mask, num_heads=A, hidden_dropout=0.2, attention_dropout=0.1,
                           rng=np.random.default_rng(4), training=True), zero=("dbk",)),
        GradCase("pre-LN layer, causal mask (B, 1, T, T), relu",
                 pre_ln_encoder_layer_forward, pre_ln_encoder_layer_backward, inputs=dict(x=x, **params),
                 args=dict(mask_add=attention_mask_to_additive(np.ones((B, T), int), np.float64, causal=True),
                           num_heads=A, act="relu"), zero=("dbk",)),
    ]


def test_pre_ln_encoder_layer():
    """The layer's checks, in float64."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))


if __name__ == "__main__":
    test_pre_ln_encoder_layer()
