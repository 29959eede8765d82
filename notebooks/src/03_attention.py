# %% [markdown]
# # 03 · Scaled dot-product and multi-head attention
#
# ## Derive
#
# Every token asks a question (a *query* $q_i$), offers a *key* $k_j$ and a *value* $v_j$, all three
# linear projections of its vector. Token $i$ takes a weighted average of the values, weighted by how
# well its query matches each key:
#
# $$S = q k^\top, \qquad S' = \frac{S}{\sqrt{D}}, \qquad Z = S' + M, \qquad P = \text{softmax}_j(Z), \qquad \text{ctx} = P\, v$$
#
# (the notation of [`docs/backward/attention.md`](../docs/backward/attention.md): $S$ the raw scores,
# $S'$ the scaled ones, $Z$ the masked ones the softmax reads), with $M$ the padding mask: 0 for a real key, a huge negative number for `[PAD]`, so its weight is
# exactly 0. There is no causal mask: every token sees both sides (BERT's *bidirectionality*).
# **Multi-head**: the `C` features are split into `A` heads of `D = C / A`, each head attends on its
# own, and the heads' contexts are concatenated and projected by $W_o$.
#
# | # | forward | shape | backward |
# |---|---|---|---|
# | 1 | $Q = XW_q^\top + b_q$ (and $K$, $V$) | `(B, T, C)` | $\bar X = \bar Q W_q + \bar K W_k + \bar V W_v$ (three paths) |
# | 2 | split heads | `(B, A, T, D)` | merge heads (a permutation's inverse) |
# | 3 | $S = q k^\top$ | `(B, A, T, T)` | $\bar q$, $\bar k$ from $\bar S$: **your turn** below (a matrix product, as in the linear layer) |
# | 4 | $S' = s\,S$, $s = 1/\sqrt D$ | `(B, A, T, T)` | $\bar S = s\,\bar S'$ |
# | 5 | $Z = S' + M$ | `(B, A, T, T)` | $\bar S' = \bar Z$ ($M$ is a constant) |
# | 6 | $P = \text{softmax}(Z)$ | `(B, A, T, T)` | $\bar Z$ from $\bar P$ and $P$: **your turn** below ([`softmax.md`](../docs/backward/softmax.md)) |
# | 8 | $\text{ctx} = P v$ | `(B, A, T, D)` | $\bar P = \overline{\text{ctx}}\, v^\top$, $\bar v = P^\top \overline{\text{ctx}}$ |
# | 9–10 | merge, $\text{out} = \text{Ctx}\,W_o^\top + b_o$ | `(B, T, C)` | $\overline{\text{Ctx}} = \overline{\text{out}}\,W_o$, $\bar W_o = \overline{\text{out}}^\top \text{Ctx}$ |
#
# (Step 7, dropout on $P$, is off here.) The derivation of each piece:
# [`docs/backward/attention.md`](../docs/backward/attention.md), [`softmax.md`](../docs/backward/softmax.md).

# %%
import math
import os
import tempfile

import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import check, show  # show: the library's own source; check: right or wrong
from minibert import layers as L
from minibert.gradcheck import check_layer, report_line
from minibert.training.plots import plot_attention

minibert.set_backend("numpy")

# %% [markdown]
# Why divide by $\sqrt{D}$? With query and key entries of variance 1, $q \cdot k$ is a sum of $D$
# products, so its standard deviation is $\sqrt{D}$: without the scale, larger heads would push the
# softmax into saturation (one weight ≈ 1, gradients ≈ 0).

# %%
rng = np.random.default_rng(0)
for D in (4, 64, 256):
    q, k = rng.standard_normal((2, 10000, D))
    dots = (q * k).sum(-1)
    print(f"D = {D:3d}: std(q.k) = {dots.std():6.2f} (sqrt(D) = {math.sqrt(D):5.2f}), after the scale {dots.std() / math.sqrt(D):.2f}")

# %% [markdown]
# ## A real sentence, and two heads we can read
#
# A randomly initialised layer attends almost uniformly, which shows nothing. So we *build* two heads
# whose behaviour we know, on a real sentence pair (the second padded). Each token's vector is
# `[content | position]`: 16 features that depend only on the word, 16 that depend only on the position.
#
# * head 0, **same word**: $W_q = W_k$ read the content features, so $q_i \cdot k_j$ is large when
#   tokens $i$ and $j$ are the same word;
# * head 1, **previous token**: $W_q$ reads the position code $p_i$, $W_k$ maps $p_j$ to $p_{j+1}$, so
#   $q_i \cdot k_j$ is large exactly when $j = i - 1$.
#
# Trained BERTs do learn heads like these (Clark et al., 2019, *What Does BERT Look At?*, found
# previous- and next-token heads, and heads that attend to `[SEP]`); lesson 07 shows a trained model's.

# %%
sentences = ["the cat sat on the mat because the cat was tired .", "it slept on the mat ."]
words = sorted({w for s in sentences for w in s.split()})
workdir_tmp = tempfile.TemporaryDirectory(prefix="minibert-lesson03-")  # removed when the kernel stops
workdir = workdir_tmp.name
with open(os.path.join(workdir, "vocab.txt"), "w") as fh:
    fh.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
tok = minibert.BertTokenizer(os.path.join(workdir, "vocab.txt"))
enc = tok(sentences, padding=True, return_tensors="np")
ids, mask = enc["input_ids"], enc["attention_mask"]                  # (B, T)
tokens = [tok.convert_ids_to_tokens(row) for row in ids.tolist()]
B, T = ids.shape
A, D = 2, 16
C = A * D
print(B, "sequences of", T, "tokens:", tokens[1])

g = np.random.default_rng(1)
content = g.standard_normal((len(tok.vocab), D)) / math.sqrt(D)       # (V, D): a random vector per word, norm ~1
position = np.linalg.qr(g.standard_normal((D, D)))[0][:T]             # (T, D): orthonormal position codes (T <= D)
x = np.concatenate([content[ids], np.broadcast_to(position, (B, T, D))], axis=-1)   # (B, T, C)

beta = 6.0                                   # sharpness: a match scores about beta^2 / sqrt(D) = 9
shift = sum(np.outer(position[t + 1], position[t]) for t in range(T - 1))           # maps p_t to p_{t+1}
wq, wk, wv, wo = (np.zeros((C, C)) for _ in range(4))                # (out, in) layout: q = x @ wq.T
wq[:D, :D] = wk[:D, :D] = beta * np.eye(D)                           # head 0: content . content
wq[D:, D:] = beta * np.eye(D)                                        # head 1: position p_i ...
wk[D:, D:] = beta * shift                                            # ... against p_{j+1}
wv[...] = wo[...] = np.eye(C)
bq, bk, bv, bo = (np.zeros(C) for _ in range(4))
mask_add = L.attention_mask_to_additive(mask, np.float64)            # (B, 1, 1, T)
out, cache = L.attention_forward(x, wq, bq, wk, bk, wv, bv, wo, bo, mask_add, A)
probs = cache.sdpa.probs                                             # (B, A, T, T)

fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
plot_attention(probs[0, 0], tokens[0], ax=axes[0], title="head 0 (same word), sequence 0")
plot_attention(probs[0, 1], tokens[0], ax=axes[1], title="head 1 (previous token), sequence 0")
plot_attention(probs[1, 0], tokens[1], ax=axes[2], title="head 0, sequence 1: [PAD] keys get 0")
for ax in axes:
    ax.set_xlabel("key (attended to)"), ax.set_ylabel("query")
fig.tight_layout()

# %% [markdown]
# Every row is a probability distribution over the keys. "cat" attends to both "cat"s, "the" to the
# three "the"s; in head 1 each token looks at its left neighbour (`[CLS]`, with no left neighbour,
# spreads its attention). In sequence 1 the `[PAD]` columns are exactly 0; the `[PAD]` *rows* are
# computed but never used (nothing reads a padded position's output in a loss).
#
# ## Implement: stepping through the forward
#
# The library's forward, then the same computation by hand with every shape printed, compared with it.

# %%
show(L.sdpa_forward)

# %%
q, k, v = (x @ w.T + b for w, b in ((wq, bq), (wk, bk), (wv, bv)))  # (B, T, C) each
qh, kh, vh = (L.split_heads(a, A) for a in (q, k, v))                # (B, A, T, D)
scale = 1 / math.sqrt(D)
scores = qh @ kh.transpose(0, 1, 3, 2) * scale + mask_add            # (B, A, T, T)
P, _ = L.softmax_forward(scores)                                     # (B, A, T, T)
ctx = P @ vh                                                         # (B, A, T, D)
Ctx = L.merge_heads(ctx)                                             # (B, T, C)
out_by_hand = Ctx @ wo.T + bo                                        # (B, T, C)
for name, a in [("x", x), ("q", q), ("q split", qh), ("scores", scores), ("P", P), ("ctx", ctx), ("Ctx", Ctx), ("out", out_by_hand)]:
    print(f"{name:8s} {a.shape}")
print("max |by hand - library| =", np.abs(out_by_hand - out).max(), " (expect 0: the same operations)")

# %% [markdown]
# ## The backward, piece by piece
#
# We push a random upstream gradient $\overline{\text{out}}$ back through the pieces of the table,
# from the last to the first, and compare each result with the library's `attention_backward` (and its
# inner `sdpa_backward`), printing `name | exact | approx | maxdiff` as in Karpathy's
# "becoming a backprop ninja". First the library's code:

# %%
show(L.sdpa_backward)

# %%
show(L.attention_backward)

# %% [markdown]
# ### Your turn: the three lines that are easy to get wrong
#
# The cell below runs the backward of the table, from step 10 down to step 1. Three lines are yours:
# $\bar Z$, the softmax's backward (row 6 of the table), and $\bar q$, $\bar k$, the backward of the
# scores (row 3; mind which of the two needs the transpose). Derive them on paper first: write one entry,
# $S_{ij} = \sum_d q_{id} k_{jd}$, and differentiate it. The next cell compares every gradient with
# the library's, and `minibert exercises` asks for the same lines in the `attention` exercise.

# %% nbgrader={"grade": false, "grade_id": "03-your-turn-attention-backward", "locked": false, "schema_version": 3, "solution": true, "task": false}
dout = np.random.default_rng(2).standard_normal(out.shape)
lib = dict(zip(["x", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"], L.attention_backward(dout, cache)))
lib_dq, lib_dk, lib_dv = L.sdpa_backward(L.split_heads(dout @ wo, A), cache[3])

dCtx = dout @ wo                                         # 10. out = Ctx Wo^T + bo
dwo = dout.reshape(-1, C).T @ Ctx.reshape(-1, C)
dbo = dout.reshape(-1, C).sum(0)
dctx = L.split_heads(dCtx, A)                            # 9. merge -> its inverse, split
dP = dctx @ vh.transpose(0, 1, 3, 2)                     # 8. ctx = P v
dvh = P.transpose(0, 1, 3, 2) @ dctx
# TODO: dZ, the gradient of the scores before the softmax, from dP and P (shape (B, A, T, T))
### BEGIN SOLUTION
dZ = P * (dP - (dP * P).sum(-1, keepdims=True))          # 6. softmax (the mask is a constant)
### END SOLUTION
dS = dZ * scale                                          # 5. mask (a constant): dS' = dZ; 4. scale: dS = s dS'
# TODO: dqh and dkh (B, A, T, D), from dS and the forward's qh, kh (3. S = q k^T)
### BEGIN SOLUTION
dqh = dS @ kh                                            # 3. S = q k^T
dkh = dS.transpose(0, 1, 3, 2) @ qh                      #    (the transpose that is easy to forget)
### END SOLUTION
dQ, dK, dV = (L.merge_heads(a) for a in (dqh, dkh, dvh))  # 2. split -> merge
dx = dQ @ wq + dK @ wk + dV @ wv                         # 1. three paths into x
ours = dict(x=dx, wq=dQ.reshape(-1, C).T @ x.reshape(-1, C), bq=dQ.reshape(-1, C).sum(0),
            wk=dK.reshape(-1, C).T @ x.reshape(-1, C), bk=dK.reshape(-1, C).sum(0),
            wv=dV.reshape(-1, C).T @ x.reshape(-1, C), bv=dV.reshape(-1, C).sum(0), wo=dwo, bo=dbo)

# %% nbgrader={"grade": true, "grade_id": "03-check-attention-backward", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
for name, a, b in [("dq (sdpa)", dqh, lib_dq), ("dk (sdpa)", dkh, lib_dk), ("dv (sdpa)", dvh, lib_dv)]:
    print(report_line(name, a, b))
for name in ours:
    print(report_line("d" + name, ours[name], lib[name]))
print(f"masked keys: max |dZ| over [PAD] columns = {np.abs(dZ[1][..., mask[1] == 0]).max():.1e} (exactly 0)")
for name, a, b, hint in [("dq", dqh, lib_dq, "S = q k^T: which factor of the product multiplies dS, and from which side?"),
                         ("dk", dkh, lib_dk, "k enters S transposed: its gradient needs the transpose of dS"),
                         ("dv", dvh, lib_dv, "given above: if it is wrong, so is P")]:
    check(name, a, b, hint + " (if dq and dk are both wrong, look at dZ first: differentiate one row of the softmax)",
          rtol=1e-10, atol=1e-12)
for name in ours:
    check("d" + name, ours[name], lib[name], "it is computed from dq, dk, dv: fix those first", rtol=1e-10, atol=1e-12)

# %% [markdown]
# Bit for bit the same (`exact: True`): we ran the very operations the library runs. Written in another
# order, the same maths would round differently and show `exact: False | approx: True`, with a maxdiff
# around 1e-16, which is just as right. Note `dbk`: **the key-bias gradient is exactly zero** in exact arithmetic,
# because $q_i \cdot (k_j + b_k)$ adds the same $q_i \cdot b_k$ to a whole row of scores, and softmax
# ignores a constant shift of a row.
#
# ## Check: a gradient check against finite differences
#
# On random weights (these hand-built ones have many zeros, which hide bugs), sizes all different
# (`B=2, T=5, C=12, A=3`), the second sequence padded. Expected: relative errors below 1e-7 for every
# gradient except `dbk`, which must be 0 up to rounding.

# %%
rng = np.random.default_rng(3)
Bc, Tc, Cc, Ac = 2, 5, 12, 3
xc = rng.standard_normal((Bc, Tc, Cc))
params = [rng.standard_normal(s) * 0.5 for s in [(Cc, Cc), (Cc,)] * 4]
mc = L.attention_mask_to_additive(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), np.float64)
names = ["dx", "dwq", "dbq", "dwk", "dbk", "dwv", "dbv", "dwo", "dbo"]
errors = check_layer(lambda x, *p: L.attention_forward(x, *p, mc, Ac), L.attention_backward, [xc] + params, names)
for name, e in errors.items():
    note = "  (dbk: both sides are rounding noise around 0)" if name == "dbk" else "  (expect < 1e-7)"
    print(f"{name:4s} rel_error {e:.1e}{note}")
outc, cachec = L.attention_forward(xc, *params, mc, Ac)
print("max |dbk| =", np.abs(L.attention_backward(rng.standard_normal(outc.shape), cachec)[4]).max(), "(expect < 1e-12)")

# %% [markdown]
# ## See: where the gradient of the scores goes
#
# $\bar Z$ for head 0 of sequence 1: each row sums to 0 (softmax's gradient cannot change the total
# probability) and the `[PAD]` columns are exactly 0: padding receives no gradient.

# %%
fig, ax = plt.subplots(figsize=(5.5, 4.5))
lim = np.abs(dZ[1, 0]).max()
im = ax.imshow(dZ[1, 0], cmap="RdBu_r", vmin=-lim, vmax=lim)
ax.set_xticks(range(T), tokens[1], rotation=90), ax.set_yticks(range(T), tokens[1])
ax.set_title("gradient of the scores, head 0, sequence 1"), fig.colorbar(im)
print("row sums:", np.abs(dZ.sum(-1)).max(), "(expect ~1e-16)")

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** Without the $1/\sqrt D$ scale, what would a head with $D = 64$ do at initialisation (query and key entries of variance 1), and what would happen to its gradient?

# %% [markdown] nbgrader={"grade": true, "grade_id": "03-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# The scores would have a standard deviation of about $\sqrt{64} = 8$, so each softmax row would be close to one-hot. The softmax's backward, $P \odot (\bar P - \text{rowsum}(\bar P \odot P))$, is then close to 0 (a one-hot row's Jacobian vanishes), so almost no gradient reaches $q$ and $k$ and the head barely learns. The scale keeps the scores at unit variance whatever $D$ is.
#
# </details>

# %% [markdown]
# **Question 2.** The `[PAD]` *columns* (keys) of $P$ are masked. Why do the `[PAD]` *rows* (queries) need no mask?

# %% [markdown] nbgrader={"grade": true, "grade_id": "03-question-2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# A padded query's output only lands at a padded position. No real token reads it in the next layer (its key is masked there too) and no loss reads a padded position, so its output never reaches the loss and the gradient that flows back into it is exactly 0. Computing those rows wastes a little work and changes nothing.
#
# </details>

# %% [markdown]
# Exercises: `attention_ninja` (this backward through 13 atomic steps, then the fused softmax) and
# `attention` (the compact form above); `minibert exercises make DIR`. Next:
# [04 · LayerNorm, GELU and the FFN](04_layernorm_gelu_ffn.ipynb).
