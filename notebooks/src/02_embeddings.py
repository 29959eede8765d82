# %% [markdown]
# # 02 · Embeddings: word + segment + position, then LayerNorm
#
# ## Derive
#
# Each input token becomes the sum of three learned vectors, one row from each of three tables:
#
# $$s_{bt} = E_{\text{ids}_{bt}} + S_{\text{seg}_{bt}} + P_t, \qquad x_{bt} = \text{LN}(s_{bt}) \qquad (B, T, C)$$
#
# with $E$ `(V, C)` the word pieces, $S$ `(2, C)` the segments A/B and $P$ `(max_T, C)` the
# positions (learned, not sinusoids), followed by LayerNorm (lesson 04) and dropout.
#
# The backward of a lookup `out = W[ids]`: position $(b, t)$ read row $\text{ids}_{bt}$, so it adds its
# upstream gradient into that row:
#
# $$\bar{W}_v = \sum_{(b,t):\ \text{ids}_{bt} = v} \bar{\text{out}}_{bt}$$
#
# a **scatter-add**. A token that appears three times gets three contributions; a row no token read
# gets zero. The three tables are read into the sum $s$, so the gradient that flows into each of them is
# $\bar{s}$, the gradient of the sum *before* LayerNorm (LayerNorm's backward turns $\bar{x}$ into
# $\bar{s}$, lesson 04). The same rule then gives the position table $\bar{P}_t = \sum_b \bar{s}_{bt}$ and
# the segment table (two rows, each summing $\bar{s}$ over every token of its segment).
# Full derivation: [`docs/backward/embedding.md`](../docs/backward/embedding.md).

# %%
import os
import tempfile

import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import check, show  # show: the library's own source; check: right or wrong
from minibert import layers as L
from minibert.data.synthetic import synthetic_vocabulary
from minibert.gradcheck import check_layer, report_line

minibert.set_backend("numpy")

# %% [markdown]
# ## Implement: the library's lookup and scatter-add

# %%
show(L.embedding_backward)

# %% [markdown]
# Why `np.add.at` and not `dw[ids] += dout`? With a repeated index, NumPy's fancy-index assignment
# computes `dw[ids] + dout` for every position and then *writes* the rows one after the other: the
# last write wins, and the other contributions are lost. Token 3 below is read twice:

# %%
ids = np.array([[3, 3, 1]])
dout = np.array([[[1.0, 0.0], [10.0, 0.0], [0.0, 1.0]]])   # (B, T, C) = (1, 3, 2)
wrong = np.zeros((5, 2))
wrong[ids] += dout
right = L.embedding_backward(dout, (ids, 5))
print("dw[ids] += dout   row 3:", wrong[3], " <- lost the first contribution")
print("np.add.at         row 3:", right[3], " <- 1 + 10")

# %% [markdown]
# In the model, the three lookups, their sum and the LayerNorm are `BertModel.embeddings_forward`, the
# first step of `BertModel.forward`, and `BertModel.embeddings_backward`, the last step of
# `BertModel.backward`, sends the gradient back into the three tables. The word table skips the `[PAD]` row (`padding_idx`, as transformers does); the
# position table takes the sum over the batch directly, since every sequence reads rows `0..T-1`.

# %%
from minibert.models.bert import BertModel
show(BertModel.embeddings_forward)

# %%
show(BertModel.embeddings_backward)

# %% [markdown]
# ## Check: a gradient check of the whole embedding block
#
# We assemble the block from the library's layers (as the model does, dropout off) and check the
# gradient of all five parameters against centered differences in float64, on ids with repeats and
# two segments. Expected: every relative error below 1e-7 (typically 1e-10); a lost contribution
# would show up around 1e-1.

# %%
def embeddings_forward(ids, segs, Wword, Wseg, Wpos, gamma, beta):
    we, c_we = L.embedding_forward(ids, Wword)              # (B, T, C)
    se, c_se = L.embedding_forward(segs, Wseg)              # (B, T, C)
    T = ids.shape[1]
    x, c_ln = L.layernorm_forward(we + se + Wpos[:T], gamma, beta, 1e-12)
    return x, (c_we, c_se, c_ln, Wpos.shape)

def embeddings_backward(dx, cache):
    c_we, c_se, c_ln, pos_shape = cache
    dsum, dgamma, dbeta = L.layernorm_backward(dx, c_ln)    # forward: x = LN(we + se + pos)
    dWword = L.embedding_backward(dsum, c_we)               # scatter-add into the rows read
    dWseg = L.embedding_backward(dsum, c_se)
    dWpos = np.zeros(pos_shape)
    dWpos[:dsum.shape[1]] = dsum.sum(axis=0)                # every sequence read rows 0..T-1
    return dWword, dWseg, dWpos, dgamma, dbeta

rng = np.random.default_rng(0)
B, T, V, C, maxT = 2, 5, 11, 12, 7
ids = np.array([[2, 7, 7, 3, 7], [2, 4, 7, 3, 0]])          # id 7 is read four times
segs = np.array([[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]])
params = [rng.standard_normal((V, C)), rng.standard_normal((2, C)), rng.standard_normal((maxT, C)),
          1 + 0.3 * rng.standard_normal(C), 0.2 * rng.standard_normal(C)]
errors = check_layer(lambda *p: embeddings_forward(ids, segs, *p), embeddings_backward, params,
                     ["word", "segment", "position", "LN gamma", "LN beta"])
for name, e in errors.items():
    print(f"d{name:10s} rel_error {e:.1e}  (expect < 1e-7)")

# %% [markdown]
# ### Your turn: the segment and position gradients by hand
#
# `dsum` below is an upstream gradient at the sum $s$ (before LayerNorm), shape `(B, T, C)`. Write the
# segment table's gradient `dWseg` `(2, C)` and the gradient of the position rows the batch read,
# `dWpos_used` `(T, C)`, with plain NumPy sums and boolean masks, without calling the library: a row of
# a table gets the sum of $\bar s$ over every token that read it. The next cell compares with the
# library's scatter-add.

# %% nbgrader={"grade": false, "grade_id": "02-your-turn-segment-gradient", "locked": false, "schema_version": 3, "solution": true, "task": false}
dsum = np.random.default_rng(5).standard_normal((B, T, C))   # an upstream gradient at s
# dWseg = ...        # (2, C)
# dWpos_used = ...   # (T, C)
### BEGIN SOLUTION
dWseg = np.stack([dsum[segs == 0].sum(axis=0), dsum[segs == 1].sum(axis=0)])   # row k: every token of segment k
dWpos_used = dsum.sum(axis=0)                                                   # row t: position t of every sequence
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "02-check-segment-gradient", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
lib_seg = L.embedding_backward(dsum, (segs, 2))
lib_pos = L.embedding_backward(dsum.sum(axis=0, keepdims=True), (np.arange(T)[None], maxT))
check("dWseg", dWseg, lib_seg, "row s adds the gradient of every position whose segment is s, over the batch "
      "too: shape (2, C)", rtol=1e-12, atol=1e-12)
check("dWpos", dWpos_used, lib_pos[:T], "row t adds the gradient at position t of every sequence: shape (T, C)",
      rtol=1e-12, atol=1e-12)
assert not lib_pos[T:].any(), "rows past T were read by no token"

# %% [markdown]
# And against the model itself: `BertModel.backward` must put exactly this gradient into its three
# tables. We give a one-layer float64 `BertModel` our parameters and differentiate
# `sum(last_hidden_state * d)` w.r.t. the embedding tables by finite differences at a few coordinates.

# %%
from minibert.gradcheck import numerical_gradient_at, rel_error
cfg = minibert.BertConfig(vocab_size=V, hidden_size=C, num_hidden_layers=1, num_attention_heads=3,
                          intermediate_size=20, max_position_embeddings=maxT,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
bert = BertModel(cfg, seed=1, dtype=np.float64)
d = rng.standard_normal((B, T, C))
f = lambda: float((bert(ids, segs).last_hidden_state * d).sum())
bert(ids, segs)
bert.zero_grad()
bert.backward(d)
for name, row in [("embeddings.word_embeddings.weight", 7),          # the id read four times
                  ("embeddings.token_type_embeddings.weight", 1),    # segment B
                  ("embeddings.position_embeddings.weight", 4)]:     # the last position
    p, g = bert.params[name], bert.grads[name]
    idx = np.arange(row * C, (row + 1) * C)                          # the whole row
    print(report_line(name.split(".")[1], g.reshape(-1)[idx], numerical_gradient_at(f, p, idx)),
          f"| rel_error {rel_error(g.reshape(-1)[idx], numerical_gradient_at(f, p, idx)):.1e} (expect < 1e-7)")
print("[PAD] row (id 0) of the word table:", np.abs(bert.grads["embeddings.word_embeddings.weight"][0]).max(),
      "(padding_idx keeps it at exactly 0)")

# %% [markdown]
# ## See: repeated tokens accumulate, and LayerNorm standardises every token
#
# A real sentence pair from the synthetic language (lesson 07's corpus): "the" occurs four times, so
# its row of $\bar{E}$ collects four upstream gradients; with independent random upstream gradients
# the norm grows like $\sqrt{n}$. Unused rows get exactly zero.

# %%
workdir_tmp = tempfile.TemporaryDirectory(prefix="minibert-lesson02-")  # removed when the kernel stops
workdir = workdir_tmp.name
vocab_file = os.path.join(workdir, "vocab.txt")
with open(vocab_file, "w") as fh:
    fh.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + synthetic_vocabulary()) + "\n")
tok = minibert.BertTokenizer(vocab_file)
enc = tok("the red cup holds the blue bowl.", "the blue bowl is near the red cup.", return_tensors="np")
tokens = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
print(" ".join(tokens))

C = 32
E = np.random.default_rng(1).standard_normal((len(tok.vocab), C)) * 0.02
out, cache = L.embedding_forward(enc["input_ids"], E)
dW = L.embedding_backward(np.random.default_rng(2).standard_normal(out.shape), cache)
counts = np.bincount(enc["input_ids"].reshape(-1), minlength=len(tok.vocab))
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
ax = axes[0]
ax.scatter(counts, np.linalg.norm(dW, axis=1), alpha=0.6)
n = np.arange(0, counts.max() + 1)
ax.plot(n, np.sqrt(n * C), "k:", label=r"$\sqrt{n C}$: n independent N(0, 1) gradients")
for v in np.flatnonzero(counts > 2):
    ax.annotate(tok.convert_ids_to_tokens(int(v)), (counts[v], np.linalg.norm(dW[v])))
ax.set_xlabel("times the token occurs in the batch"), ax.set_ylabel(r"$\|\bar E_v\|$")
ax.set_title("one gradient contribution per occurrence"), ax.legend()

pos = np.random.default_rng(3).standard_normal((64, C)) * 0.02
seg = np.random.default_rng(4).standard_normal((2, C)) * 0.02
summed = out[0] + seg[enc["token_type_ids"][0]] + pos[:out.shape[1]]          # (T, C)
normed, _ = L.layernorm_forward(summed, np.ones(C), np.zeros(C), 1e-12)
ax = axes[1]
x = np.arange(len(tokens))
ax.plot(x, summed.std(-1), "o-", label="std before LN"), ax.plot(x, normed.std(-1), "s-", label="std after LN")
ax.plot(x, summed.mean(-1), "o:", label="mean before"), ax.plot(x, normed.mean(-1), "s:", label="mean after")
ax.set_yscale("symlog", linthresh=1e-3)
ax.set_xticks(x, tokens, rotation=90), ax.set_title("each token's vector: LayerNorm makes mean 0, std 1"), ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** The three tables receive $\bar s$, the gradient of the sum, and not $\bar x$, the gradient of LayerNorm's output. Why? What would using $\bar x$ get wrong?

# %% [markdown] nbgrader={"grade": true, "grade_id": "02-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# The tables are read into $s = E_{ids} + S_{seg} + P_t$ and LayerNorm comes after: $x = \text{LN}(s)$. By the chain rule the gradient at $s$ is LayerNorm's backward applied to $\bar x$, and the sum passes $\bar s$ unchanged to each of its three terms. Using $\bar x$ skips LayerNorm's Jacobian: it would miss the scaling by $r = 1/\sigma$ and the removal of the row mean and of the component along $\hat x$, so every table's gradient would be wrong (a gradient check shows it at once).
#
# </details>

# %% [markdown]
# **Question 2.** What gradient does the `[PAD]` row of the word table receive, and why is that right?

# %% [markdown] nbgrader={"grade": true, "grade_id": "02-question-2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Exactly zero: the lookup skips the `padding_idx` row, as transformers' `nn.Embedding(padding_idx=0)` does. Padded positions are not text; their vector should not be learned from whatever gradient reaches padding (none reaches it through a loss anyway, but the mask makes it exact), so the `[PAD]` row keeps its initial value.
#
# </details>

# %% [markdown]
# At initialisation (weights ~ N(0, 0.02²)) the summed vectors are tiny; LayerNorm rescales each token
# to mean 0 and standard deviation 1 before its learned gain and bias. Lesson 04 derives its backward.
# Next: [03 · attention](03_attention.ipynb).
