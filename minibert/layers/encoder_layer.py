"""One post-LN encoder layer of BERT, composed from the sibling layers (the capstone exercise).

    a   = dropout(Attention(x))           attention.py, dropout.py
    h   = LayerNorm(x + a)                layernorm.py   (the first residual, then LN)
    f   = dropout(FFN(h))                 ffn.py, dropout.py
    out = LayerNorm(h + f)                layernorm.py   (the second residual, then LN)

Post-LN, as in the paper and transformers.  ``BertModel`` runs every layer through this pair (looked up
in ``minibert.backend.ops``, so ``minibert.set_backend(your_module)`` runs the model on yours).  The
inner kernels come from ``ops``, a namespace of layer functions: by default the NumPy references of this
folder; the model passes ``backend.ops``, so the numba twins run inside the layer when the backend is
numba, and a student's own LayerNorm or attention when the backend is the student's module.  The
forward keeps ``ops`` in its cache, so the backward runs the backward functions of the very kernels the
forward used.

Exercise ``encoder_layer`` of ``minibert exercises`` (the capstone, "your BERT, your backward"): the
backward, from the layers' backward functions; then ``minibert.classroom.capstone`` pretrains a tiny BERT
on it next to the reference.  Derivation: ``docs/backward/tied_weights.md`` (residuals: gradients add).
Shapes: ``B`` batch, ``T`` sequence, ``C`` hidden, ``F`` intermediate, ``A`` heads.
"""
import types
from typing import NamedTuple

import numpy as np

from .attention import attention_backward, attention_forward
from .dropout import dropout_backward, dropout_forward
from .ffn import ffn_backward, ffn_forward
from .layernorm import layernorm_backward, layernorm_forward

# the kernels a layer runs when no ``ops`` is given: the NumPy references of this folder
REFERENCE_OPS = types.SimpleNamespace(
    attention_forward=attention_forward, attention_backward=attention_backward,
    dropout_forward=dropout_forward, dropout_backward=dropout_backward,
    ffn_forward=ffn_forward, ffn_backward=ffn_backward,
    layernorm_forward=layernorm_forward, layernorm_backward=layernorm_backward)

# the layer's parameters, in the order of the forward's arguments and of the backward's gradients, with
# the transformers names they have inside ``encoder.layer.<i>.`` of a BertModel
PARAMETERS = {
    "wq": "attention.self.query.weight", "bq": "attention.self.query.bias",
    "wk": "attention.self.key.weight", "bk": "attention.self.key.bias",
    "wv": "attention.self.value.weight", "bv": "attention.self.value.bias",
    "wo": "attention.output.dense.weight", "bo": "attention.output.dense.bias",
    "ln1_w": "attention.output.LayerNorm.weight", "ln1_b": "attention.output.LayerNorm.bias",
    "w1": "intermediate.dense.weight", "b1": "intermediate.dense.bias",
    "w2": "output.dense.weight", "b2": "output.dense.bias",
    "ln2_w": "output.LayerNorm.weight", "ln2_b": "output.LayerNorm.bias",
}


class EncoderLayerCache(NamedTuple):
    """What ``encoder_layer_backward`` needs: the cache of every kernel of the forward, and the kernels."""
    attention: tuple          # the attention cache; ``.sdpa.probs`` (B, A, T, T) are its probabilities
    attention_dropout: object  # dropout cache of a (None when dropout is off)
    attention_norm: tuple     # LayerNorm cache of h = LayerNorm(x + a)
    ffn: tuple                # the FFN cache
    ffn_dropout: object       # dropout cache of f
    ffn_norm: tuple           # LayerNorm cache of out = LayerNorm(h + f)
    ops: object = None        # the namespace of kernels the forward ran (None: REFERENCE_OPS)


def encoder_layer_forward(x, wq, bq, wk, bk, wv, bv, wo, bo, ln1_w, ln1_b, w1, b1, w2, b2, ln2_w, ln2_b,
                          mask_add, num_heads, act="gelu", eps=1e-12, hidden_dropout=0.0,
                          attention_dropout=0.0, rng=None, training=False, ops=None):
    """(B, T, C), attention weights (C, C) and biases (C,), LayerNorm (C,), FFN (F, C), (F,), (C, F), (C,),
    mask (B, 1, 1, T) -> out (B, T, C), ``EncoderLayerCache``.

    ``hidden_dropout`` drops ``a`` and ``f``, ``attention_dropout`` the attention probabilities; masks
    are drawn from ``rng`` (attention's first, then ``a``'s, then ``f``'s) when ``training``."""
    K = REFERENCE_OPS if ops is None else ops
    drop = dict(rng=rng, training=training)
    a, c_att = K.attention_forward(x, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, num_heads,
                                   attention_dropout, **drop)  # (B, T, C)
    a, c_d1 = K.dropout_forward(a, hidden_dropout, **drop)  # (B, T, C)
    h, c_ln1 = K.layernorm_forward(a + x, ln1_w, ln1_b, eps)  # (B, T, C)
    f, c_ffn = K.ffn_forward(h, w1, b1, w2, b2, act)  # (B, T, C)
    f, c_d2 = K.dropout_forward(f, hidden_dropout, **drop)  # (B, T, C)
    out, c_ln2 = K.layernorm_forward(f + h, ln2_w, ln2_b, eps)  # (B, T, C)
    return out, EncoderLayerCache(c_att, c_d1, c_ln1, c_ffn, c_d2, c_ln2, ops)


def encoder_layer_backward(dout, cache):
    """(B, T, C) -> dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo, dln1_w, dln1_b, dw1, db1, dw2, db2,
    dln2_w, dln2_b (the gradients of the forward's arguments, in their order)."""
    K = REFERENCE_OPS if cache.ops is None else cache.ops  # K.layernorm_backward, K.ffn_backward, ...
    # TODO: the FFN half: undo out = LayerNorm(f + h), f = dropout(FFN(h)); get dln2_w, dln2_b, dw1, db1,
    #       dw2, db2, and dh, the gradient of h.
    #   hint: each forward line is undone by its layer's backward: K.layernorm_backward(d, cache.ffn_norm),
    #         K.dropout_backward(d, cache.ffn_dropout), K.ffn_backward(d, cache.ffn) (5 gradients).
    #   hint: h went into the sum twice, through the FFN and straight (the residual): dh adds both paths.
    ### BEGIN SOLUTION
    # forward: out = LayerNorm(f + h)
    dsum2, dln2_w, dln2_b = K.layernorm_backward(dout, cache.ffn_norm)  # (B, T, C)
    # forward: f = dropout(FFN(h))
    df = K.dropout_backward(dsum2, cache.ffn_dropout)  # (B, T, C)
    dh, dw1, db1, dw2, db2 = K.ffn_backward(df, cache.ffn)
    dh = dh + dsum2  # the residual: h also went straight into the sum
    ### END SOLUTION
    # TODO: the attention half: undo h = LayerNorm(x + a), a = dropout(Attention(x)); get dln1_w, dln1_b,
    #       the eight attention gradients and dx.
    #   hint: K.attention_backward(d, cache.attention) returns dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo.
    #   hint: the second residual: x went into the sum too.
    ### BEGIN SOLUTION
    # forward: h = LayerNorm(a + x)
    dsum1, dln1_w, dln1_b = K.layernorm_backward(dh, cache.attention_norm)  # (B, T, C)
    # forward: a = dropout(Attention(x))
    da = K.dropout_backward(dsum1, cache.attention_dropout)  # (B, T, C)
    dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo = K.attention_backward(da, cache.attention)
    dx = dx + dsum1  # the residual: x also went straight into the sum
    ### END SOLUTION
    return dx, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo, dln1_w, dln1_b, dw1, db1, dw2, db2, dln2_w, dln2_b


def random_parameters(rng, C, F):
    """The layer's parameters for a gradient check, float64 drawn from ``rng``, keyed as ``PARAMETERS``:
    (C, C) / (C,) attention, (F, C) / (C, F) FFN; LayerNorm gains around 1, not 1 (ones and zeros hide
    bugs), everything else N(0, 0.5^2)."""
    shapes = {"wq": (C, C), "bq": (C,), "wk": (C, C), "bk": (C,), "wv": (C, C), "bv": (C,), "wo": (C, C),
              "bo": (C,), "ln1_w": (C,), "ln1_b": (C,), "w1": (F, C), "b1": (F,), "w2": (C, F), "b2": (C,),
              "ln2_w": (C,), "ln2_b": (C,)}
    params = {}
    for name, shape in shapes.items():  # gains around 1, not 1 (ones and zeros hide bugs)
        params[name] = (1 + 0.3 * rng.standard_normal(shape) if name.startswith("ln") and name.endswith("_w")
                        else rng.standard_normal(shape) * 0.5)
    return params


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_encoder_layer`` runs
    them, and so do ``tests/layers/test_layers_gradcheck.py`` and the grader (``minibert exercises check``, on
    your functions).  ``dbk`` is exactly 0 for every input (softmax ignores a shift of a row's scores:
    ``docs/backward/attention.md``), so it is checked to be 0, not by a relative error."""
    from minibert.gradcheck import GradCase
    from minibert.layers.softmax import attention_mask_to_additive
    B, T, C, A, F = 2, 5, 12, 3, 7
    mask = attention_mask_to_additive(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), np.float64)
    params = random_parameters(rng, C, F)
    x = rng.standard_normal((B, T, C))
    cases = [GradCase("one layer, x (2, 5, 12), 3 heads, F = 7, padded keys, no dropout", encoder_layer_forward,
                      encoder_layer_backward, inputs=dict(x=x, **params), args=dict(mask_add=mask, num_heads=A),
                      zero=("dbk",))]
    ### BEGIN HIDDEN TESTS
    cases.append(GradCase("with dropout: hidden 0.2, attention 0.1 (the same masks on every call)",
                          encoder_layer_forward, encoder_layer_backward, inputs=dict(x=x, **params),
                          args=dict(mask_add=mask, num_heads=A, hidden_dropout=0.2, attention_dropout=0.1,
                                    rng=np.random.default_rng(4), training=True), zero=("dbk",)))
    ### END HIDDEN TESTS
    return cases


def test_encoder_layer():
    """The exercise's checks, in float64 with non-trivial LayerNorm gains and a padded sequence."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))


if __name__ == "__main__":
    test_encoder_layer()
