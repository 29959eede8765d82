# %% [markdown]
# # 05 · One encoder layer: residuals, post-LN, and how gradients flow
#
# ## Derive
#
# A BERT layer wraps each of its two sub-layers in dropout, a **residual** connection and a
# **LayerNorm** *after* the sum ("post-LN", as in the original Transformer and BERT):
#
# $$h = \text{LN}_1\big(x + \text{Dropout}(\text{Attention}(x))\big), \qquad
#   y = \text{LN}_2\big(h + \text{Dropout}(\text{FFN}(h))\big)$$
#
# **Backward of a residual.** $s = x + f(x)$ gives $\bar x = \bar s + \big(\tfrac{\partial f}{\partial x}\big)^{\!\top} \bar s$:
# the gradient arrives at $x$ twice, once straight through the sum and once through the sub-layer, and
# the two are *added*. Forgetting the first term is the classic bug; the identity path is also why deep
# residual stacks train at all: every layer's input gets a direct share of the gradient above it.
# In post-LN, each sum is followed by a LayerNorm, whose backward (lesson 04) re-scales the gradient by
# $r = 1/\sigma$ of the sum it normalised. See [`docs/backward/tied_weights.md`](../docs/backward/tied_weights.md)
# for why shared values accumulate gradients.

# %%
import os
import tempfile

import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import show  # the library's own source: what you read is what runs
from minibert import layers as L
from minibert.data.synthetic import synthetic_corpus, synthetic_vocabulary
from minibert.gradcheck import check_layer, numerical_gradient_at, perturb_parameters, rel_error
from minibert.layers.encoder_layer import encoder_layer_forward
from minibert.models.bert import BertModel
from minibert.data.dataset import PretrainingDataset

minibert.set_backend("numpy")

# %% [markdown]
# ## Implement: the model's layer, forward and backward side by side

# %%
show(encoder_layer_forward, "K = REFERENCE_OPS", "return out")

# %%
show(BertModel.layer_forward)

# %%
show(BertModel.layer_backward)

# %% [markdown]
# The model calls `encoder_layer_backward` for each layer (the capstone exercise: your copy shows its
# TODO). It reads the forward above from the bottom up, one sub-layer's backward per line of the forward,
# and at each fork of the graph (a residual: a tensor that goes both into a branch and straight into
# the sum) the gradients of the two paths add. Parameter gradients are *accumulated* (`self._acc`) into `model.grads`: a backward adds,
# and only `zero_grad()` clears. What the forward keeps for the backward is an `EncoderLayerCache`, a
# `NamedTuple` with one named field per part (`attention`, `attention_dropout`, `attention_norm`, `ffn`,
# `ffn_dropout`, `ffn_norm`), so the backward reads `cache.ffn_norm`, never `cache[5]`.
#
# ## Check: one layer against finite differences
#
# A one-layer float64 model with non-trivial parameters (LayerNorm gains ≠ 1, biases ≠ 0, wider
# weights, so nothing sits in a linear regime), a padded batch, dropout off. We check the gradient of
# $\sum y \odot \bar y$ with respect to the layer input (all coordinates) and to a few coordinates of
# each of the layer's 16 parameter arrays. Expected: relative errors below 1e-7 (the key bias, whose
# true gradient is exactly 0, is left out).

# %%
cfg = minibert.BertConfig(vocab_size=23, hidden_size=12, num_hidden_layers=1, num_attention_heads=3,
                          intermediate_size=20, max_position_embeddings=8,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
bert = perturb_parameters(BertModel(cfg, seed=0, dtype=np.float64))  # gains != 1, biases != 0: see its docstring
rng = np.random.default_rng(1)
x = rng.standard_normal((2, 6, 12))
mask_add = L.attention_mask_to_additive(np.array([[1] * 6, [1, 1, 1, 1, 0, 0]]), np.float64)

def layer_forward(x):
    return bert.layer_forward(0, x, mask_add)

def layer_backward(dy, cache):
    return bert.layer_backward(0, dy, cache)

print(f"dx: rel_error {check_layer(layer_forward, layer_backward, [x], ['dx'])['dx']:.1e}  (expect < 1e-7)")

dy = rng.standard_normal(x.shape)
bert.zero_grad()
layer_backward(dy, layer_forward(x)[1])
f = lambda: float((layer_forward(x)[0] * dy).sum())
worst = 0.0
for name, p, g in bert.named_parameters():
    if not name.startswith("encoder.layer.0.") or name.endswith("key.bias"):
        continue
    idx = rng.choice(p.size, size=min(6, p.size), replace=False)
    e = rel_error(g.reshape(-1)[idx], numerical_gradient_at(f, p, idx))
    worst = max(worst, e)
    short = name[len("encoder.layer.0."):]
    print(f"  {short:40s} rel_error {e:.1e}")
print(f"worst parameter rel_error {worst:.1e}  (expect < 1e-7)")

# %% [markdown]
# The residual matters. A backward that forgets the first residual (the fork at `x`) computes the
# gradient of another function: the layer in which `x` moves only through the attention branch, its
# residual copy held fixed. Finite differences give that gradient from the forward alone; it is far from
# the true one:

# %%
from minibert.gradcheck import numerical_gradient  # noqa: E402
from minibert.layers.encoder_layer import PARAMETERS  # noqa: E402
lp = {n: bert.params["encoder.layer.0." + name] for n, name in PARAMETERS.items()}
x_fixed, x_attn = x.copy(), x.copy()   # the residual's copy of x (held fixed) and the attention branch's


def without_first_residual():
    a, _ = L.attention_forward(x_attn, lp["wq"], lp["bq"], lp["wk"], lp["bk"], lp["wv"], lp["bv"], lp["wo"], lp["bo"],
                               mask_add, cfg.num_attention_heads)
    h, _ = L.layernorm_forward(x_fixed + a, lp["ln1_w"], lp["ln1_b"], cfg.layer_norm_eps)
    f, _ = L.ffn_forward(h, lp["w1"], lp["b1"], lp["w2"], lp["b2"], cfg.hidden_act)
    return L.layernorm_forward(h + f, lp["ln2_w"], lp["ln2_b"], cfg.layer_norm_eps)[0]


dx_forgotten = numerical_gradient(without_first_residual, x_attn, dy)
dx_true = numerical_gradient(lambda: layer_forward(x)[0], x, dy)
print(f"without the first residual: rel_error {rel_error(dx_forgotten, dx_true):.1e} against the true gradient "
      "(a bug: far above 1e-7)")

# %% [markdown]
# ## See: gradient norms, layer by layer
#
# A 6-layer model on a real pre-training batch (the synthetic language of lesson 07, MLM + NSP loss)
# at initialisation. We record the norm of the gradient with respect to each layer's input by wrapping
# the model's `layer_backward`, for BERT's initialisation (weights ~ N(0, 0.02²)) and two wider ones,
# and the norms of each layer's parameter gradients.

# %%
workdir_tmp = tempfile.TemporaryDirectory(prefix="minibert-lesson05-")  # removed when the kernel stops
workdir = workdir_tmp.name
with open(os.path.join(workdir, "vocab.txt"), "w") as fh:
    fh.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + synthetic_vocabulary()) + "\n")
tok = minibert.BertTokenizer(os.path.join(workdir, "vocab.txt"))
data = PretrainingDataset(synthetic_corpus(60, seed=0).train, tok, batch_size=16, max_seq_length=32, seed=0)
batch = data.next_batch()

def gradient_flow(initializer_range):
    """(norms of d loss / d layer input, top to bottom), the model after one forward and backward."""
    c = minibert.BertConfig(vocab_size=len(tok.vocab), hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
                            intermediate_size=256, max_position_embeddings=32, initializer_range=initializer_range,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = minibert.BertForPreTraining(c, seed=0, dtype=np.float64)
    flow = {}
    original = model.bert.layer_backward

    def spy(i, dout, cache):            # the model's own backward, plus a note of the norms
        dx = original(i, dout, cache)
        flow[i] = (np.linalg.norm(dout), np.linalg.norm(dx))
        return dx

    model.bert.layer_backward = spy
    out = model(**batch)
    model.backward()
    return flow, model, out

runs = {init: gradient_flow(init) for init in (0.02, 0.2, 0.5)}
flows = {init: run[0] for init, run in runs.items()}
for init, fl in flows.items():
    print(f"init {init}: loss {runs[init][2].loss:.3f}; |d input| from the top layer down: "
          + " ".join(f"{fl[i][1]:.2e}" for i in reversed(range(6))))
flow, model, out = runs[0.02]
print(f"BERT init: MLM {out.mlm_loss:.3f} (about ln V = {np.log(model.config.vocab_size):.3f}), NSP {out.nsp_loss:.3f} (about ln 2)")

groups = {"attention Q, K, V": ("query.weight", "key.weight", "value.weight"),
          "attention output": ("attention.output.dense.weight",),
          "FFN": ("intermediate.dense.weight", "output.dense.weight"),
          "LayerNorms": ("LayerNorm.weight",)}
grads = model.grad_state_dict()                                      # {full name: gradient}
per_layer = {g: [np.sqrt(sum(float((grads[n] ** 2).sum()) for n in grads
                             if n.startswith(f"bert.encoder.layer.{i}.") and n.endswith(suffixes)))
                 for i in range(6)] for g, suffixes in groups.items()}

layers = np.arange(6)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for init, fl in flows.items():
    top = fl[5][0]
    axes[0].plot(layers, [fl[i][1] / top for i in layers], "o-", label=f"weights ~ N(0, {init}²)" + (" (BERT)" if init == 0.02 else ""))
axes[0].set_yscale("log"), axes[0].set_xlabel("layer (0 = closest to the embeddings)")
axes[0].set_ylabel("|d input| / |d output of the top layer|"), axes[0].set_title("the gradient flowing down the stack")
axes[0].legend()
for g, values in per_layer.items():
    axes[1].plot(layers, values, "o-", label=g)
lo, hi = min(map(min, per_layer.values())), max(map(max, per_layer.values()))
axes[1].set_yscale("log"), axes[1].set_ylim(lo / 4, hi * 4)
axes[1].set_xlabel("layer"), axes[1].set_title("parameter-gradient norms per layer, BERT init")
axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ### Your turn: read the gradient flow
#
# `flows[init][i]` is the pair (norm of the gradient at layer `i`'s output, norm at its input); layer 0
# is the bottom one, layer 5 the top. Write `ratio_bert` and `ratio_wide`: the norm of the gradient at
# the bottom layer's input divided by the norm at the top layer's input, at BERT's initialisation (0.02)
# and at 0.5. Before the next cell: which one do you expect near 1?

# %% nbgrader={"grade": false, "grade_id": "05-your-turn-gradient-ratio", "locked": false, "schema_version": 3, "solution": true, "task": false}
# ratio_bert = ...
# ratio_wide = ...
### BEGIN SOLUTION
ratio_bert = flows[0.02][0][1] / flows[0.02][5][1]
ratio_wide = flows[0.5][0][1] / flows[0.5][5][1]
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "05-check-gradient-ratio", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
print(f"bottom / top input gradient: BERT init {ratio_bert:.2f}, init 0.5 {ratio_wide:.1f}")
assert 0.3 < ratio_bert < 3, "at BERT's init each layer's backward is close to the identity path"
assert ratio_wide > 100, "at 0.5 the gradient grows on its way down"
### BEGIN HIDDEN TESTS
assert np.isclose(ratio_bert, flows[0.02][0][1] / flows[0.02][5][1])
assert np.isclose(ratio_wide, flows[0.5][0][1] / flows[0.5][5][1])
### END HIDDEN TESTS

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** Drop the first residual's term (the gradient that reaches `x` straight through the sum) from the layer's backward. The code still runs and every shape is right. What catches the bug, and why can no shape check?

# %% [markdown] nbgrader={"grade": true, "grade_id": "05-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Only a comparison with finite differences (or with a reference): the missing term has the shape of the term that stays, so the result has the right shape and plausible values. The check above shows it: the relative error is far above 1e-7. At BERT's initialisation the identity path carries most of the gradient, so the bug removes most of it.
#
# </details>

# %% [markdown]
# **Question 2.** Why does post-LN BERT need small initial weights and a learning-rate warmup, when pre-LN Transformers train without warmup?

# %% [markdown] nbgrader={"grade": true, "grade_id": "05-question-2", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# In post-LN every residual sum is followed by a LayerNorm, so the path from the loss to a low layer passes through every LayerNorm's Jacobian; when the sub-layers' outputs are large next to the residual stream the backward is no longer close to the identity, and the gradient grows (or shrinks) layer after layer, as at init 0.5 above. Adam's first updates at full learning rate then move some layers far too much; warmup keeps the first steps small while the weights settle. Pre-LN puts the LayerNorm inside the branch, so an un-normalised identity path runs from the loss to every layer and the gradient reaches them at one size (Xiong et al., 2020).
#
# </details>

# %% [markdown]
# What to read in the plot: with BERT's initialisation the sub-layers' outputs are small next to the
# residual stream, each layer's backward is close to the identity path, and the gradient reaches
# every layer at the same size (ratio ≈ 1). With wider initial weights the sub-layers dominate the
# sums and the gradient no longer passes unchanged: at 0.5 it *grows* layer after layer on its way
# down, by more than two orders of magnitude over six layers. Under plain SGD the bottom layers would
# then take far larger steps than the top ones; under Adam a bigger gradient does *not* mean a bigger
# step (each weight moves by about the learning rate, whatever its gradient's size, lesson 07b), so
# what the growth means there is a backward far from the identity: the same small step of a low layer
# moves the output far more than a step of a top layer does. The parameter gradients (right) are of one
# size in every layer. Small
# initial weights, and a learning-rate warmup while they grow (minibert's training step, in `training/loop.py`, uses one), keep
# post-LN BERT trainable; "pre-LN" Transformers (LayerNorm inside the residual branch) were designed
# to avoid the problem.
#
# Next: [06 · the MLM and NSP heads](06_mlm_nsp_heads.ipynb).
