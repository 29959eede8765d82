# %% [markdown]
# # 11 · One sentence through BERT, one operation at a time
#
# Lessons 02–06 built BERT a layer at a time. Here we follow **one sentence** through all of it, from its
# word pieces to the masked-LM prediction, and back from the loss to the gradient of every weight,
# stopping at **every** operation: the kernels (linear layers, softmax, LayerNorm, GELU) and the glue
# between them (the embedding sum, each residual add, the `[CLS]` slice, the gather of the masked rows,
# the tied decoder, both losses).
#
# To check numbers by hand they must fit on a screen, and to mean something the model must have learned
# something. So we use a BERT with **C = 8** numbers per token, **2 heads** of 4, one layer and a
# vocabulary of **12 words**, trained for a few seconds on a toy language
# (`minibert/classroom/toy.py`):
#
# > [now | often | loudly] (the | a) (cat | dog | cow) [now | often | loudly] (meows | barks | moos) .
#
# A cat meows, a dog barks, a cow moos, and nothing else in the sentence tells which. So a masked sound
# is decided by the animal and a masked animal by the sound, wherever the optional fillers put them: to
# predict, the model has to **look** at that one word.
#
# `step_through(model, ...)` (`minibert/classroom/stepthrough.py`) runs the model's forward and backward
# one line per operation, over the model's own parameters, with the NumPy references of `minibert/layers`
# for the kernels. It is tested to be the model: every output and every gradient equal to 1e-12 in
# float64 (`tests/classroom/test_stepthrough.py`), and we check it again below.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.stepthrough import step_through
from minibert.classroom.toy import TOY_WORDS, check_by_hand, toy_batch_of, train_toy_bert
from minibert.training.plots import plot_attention, smooth

model, tok, history = train_toy_bert(seed=0)  # 400 AdamW steps on batches of 32 sentences, float64
print(model)
print("vocabulary:", tok.convert_ids_to_tokens(list(range(len(tok.vocab)))))
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.plot(history, alpha=0.3, color="C0"), ax.plot(smooth(history), color="C0")
ax.axhline(np.log(17) + np.log(2), ls=":", color="gray", label="uniform guess, ln 17 + ln 2")
ax.set_xlabel("step"), ax.set_ylabel("MLM + NSP loss"), ax.legend()
fig.tight_layout()

# %% [markdown]
# The loss starts at the uniform guess and falls to about 0.1: what is left is the masked filler or
# determiner, which nothing in the sentence decides. (Every toy sentence is alone, so its NSP label is
# always 0, "B follows A": the NSP head only learns its bias, but it is there, so the pooler and the NSP
# loss are in the backward too.)
#
# ## The batch: two sentences, the second padded

# %%
texts, answers = ["the cat often [MASK] .", "a [MASK] moos ."], ["meows", "cow"]
batch = toy_batch_of(tok, texts, answers)
tokens = batch.pop("tokens")
for row in tokens:
    print(" ".join(f"{t}:{tok.vocab[t]}" for t in row))
print("attention_mask\n", batch["attention_mask"])
print("labels (-100: not predicted)\n", batch["labels"])

walk = step_through(model, **batch, tokens=tokens, words=tok.convert_ids_to_tokens(list(range(17))),
                    sentence=" | ".join(texts))
walk

# %%
print(walk.table())

# %% [markdown]
# ## Forward: the embeddings
#
# Step 0 looks up one row of the word-embedding matrix $E$ `(V, C) = (17, 8)` per token; steps 1 and 2
# do the same for the segment and the position; step 3 adds the three; step 4 normalises each token's 8
# numbers. Here is the path of one token up to the LayerNorm, the `[MASK]` of the first sentence
# (position 4):

# %%
np.set_printoptions(precision=4, suppress=True, linewidth=120)
t = tokens[0].index("[MASK]")
for name, tensor in [("bert.embeddings.word_embeddings", "we"), ("bert.embeddings.token_type_embeddings", "te"),
                     ("bert.embeddings.position_embeddings", "pe"), ("bert.embeddings.sum", "e")]:
    out = walk[name].outputs[tensor]
    print(f"{name:40s} {tensor} = {out[0 if out.shape[0] > 1 else 0, t]}")
print("E[id of [MASK]] =", model.bert.params["embeddings.word_embeddings.weight"][tok.mask_token_id])

# %% [markdown]
# ### Your turn 1: one LayerNorm, by hand
#
# LayerNorm normalises each token on its own: $\mu = \frac1C\sum_c e_c$,
# $\sigma^2 = \frac1C\sum_c (e_c-\mu)^2$ (divide by $C$, not $C-1$), then
# $x_c = \frac{e_c - \mu}{\sqrt{\sigma^2 + \epsilon}}\, g_c + b_c$ with $\epsilon = 10^{-12}$.
# Compute `my_x`, the output of `bert.embeddings.LayerNorm` for the `[MASK]` token, from `e_row`, `g` and
# `b` with plain NumPy (`.mean()`, `np.sqrt`); no minibert function.

# %%
ln = walk["bert.embeddings.LayerNorm"]
e_row, g, b = ln.inputs["e"][0, t], ln.inputs["g"], ln.inputs["b"]  # (8,), (8,), (8,)
print("e =", e_row, "\ng =", g, "\nb =", b)

# %% nbgrader={"grade": false, "grade_id": "11-your-turn-layernorm", "locked": false, "schema_version": 3, "solution": true, "task": false}
my_x = ...
### BEGIN SOLUTION
mu = e_row.mean()
var = ((e_row - mu) ** 2).mean()
my_x = (e_row - mu) / np.sqrt(var + 1e-12) * g + b
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "11-check-layernorm", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check_by_hand("LayerNorm of the [MASK] token", my_x, ln.outputs["x"][0, t],
              "subtract the mean of the 8 numbers, divide by the square root of their biased variance "
              "(mean of the squares, over C) plus eps, then multiply by g and add b, entry by entry")

# %% [markdown]
# ## Forward: attention, where the model looks
#
# The query, key and value projections (steps 6–8) are linear layers; `split_heads` cuts each token's 8
# numbers into 2 heads of 4; `scores` takes the dot product of every query with every key, divided by
# $\sqrt{D} = 2$; `softmax` turns each row into probabilities after adding the padding mask $M$ (0 for a
# real key, the most negative float for a `[PAD]` key).

# %%
soft = walk["bert.encoder.layer.0.attention.self.softmax"]
S, M, P = soft.inputs["S"], soft.inputs["M"], soft.outputs["P"]  # (B, A, T, T), (B, 1, 1, T), (B, A, T, T)
print(soft)
fig, axes = plt.subplots(2, 2, figsize=(9, 8.5))
for row in range(2):
    n = int(batch["attention_mask"][row].sum())
    for head in range(2):
        plot_attention(P[row, head, :n, :n], tokens[row][:n], ax=axes[row, head], title=f"sentence {row}, head {head}")
fig.tight_layout()

# %% [markdown]
# Read the `[MASK]` rows: in the first sentence one head puts almost all of the mask's attention on
# **cat**, in the second on **moos**: the one word that decides the answer, at a different distance each
# time. The padded keys of sentence 1 get exactly 0 (they are not drawn: the maps stop at the real tokens).
#
# ### Your turn 2: one softmax row, by hand
#
# Compute `my_p`, the attention of the `[MASK]` token of **sentence 1** (the padded one) in **head 1**:
# the row `P[1, 1, t1, :]` (all T keys, padding included) from the scores `S[1, 1, t1, :]` and the mask
# `M[1, 0, 0, :]`. Subtract the row's maximum before `np.exp`, as the library does: what does the mask do
# to the `[PAD]` keys?

# %%
t1 = tokens[1].index("[MASK]")
s_row, m_row = S[1, 1, t1], M[1, 0, 0]  # (T,), (T,)
print("scores", s_row, "\nmask  ", m_row)

# %% nbgrader={"grade": false, "grade_id": "11-your-turn-softmax", "locked": false, "schema_version": 3, "solution": true, "task": false}
my_p = ...
### BEGIN SOLUTION
z = s_row + m_row
z = z - z.max()
my_p = np.exp(z) / np.exp(z).sum()
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "11-check-softmax", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check_by_hand("softmax row", my_p, P[1, 1, t1],
              "add the mask to the scores, subtract the largest of the sums, exponentiate, and divide by the "
              "sum of the exponentials; the [PAD] keys must come out exactly 0")

# %% [markdown]
# ## Forward: the residuals, the `[CLS]` slice, the gather and the tied decoder
#
# A residual add is one line (`r = a + x`), and it is a step. After the layer, the pooler reads only
# position 0 of each row (the `[CLS]` slice, `(B, T, C) -> (B, C)`), and the MLM head reads only the
# masked rows (the gather, `(B, T, C) -> (P, C)`, here $P = 2$). The decoder's weight **is** the word
# embedding matrix $E$ (tied), so each logit is the dot product of the transformed token with a word's
# embedding.

# %%
res = walk["bert.encoder.layer.0.attention.output.residual"]
print("residual: r == a + x exactly:", np.array_equal(res.out, res.inputs["a"] + res.inputs["x"]))
cls = walk["bert.pooler.cls_slice"]
print("[CLS] slice:", cls.inputs["x"].shape, "->", cls.out.shape)
gather = walk["cls.predictions.gather"]
print("gather: rows", gather.inputs["positions"], "of the flattened (B*T, C):", gather.inputs["x"].shape, "->",
      gather.out.shape)
dec = walk["cls.predictions.decoder"]
print("the decoder's weight is E itself:", dec.inputs["E"] is model.bert.params["embeddings.word_embeddings.weight"])
for p, row in enumerate(dec.out):
    probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
    top = np.argsort(-probs)[:3]
    print(f"[MASK] {p}: answer {answers[p]!r}; top guesses " +
          ", ".join(f"{tok.convert_ids_to_tokens(int(i))} {probs[i]:.3f}" for i in top))
print(f"loss = MLM {walk.mlm_loss:.4f} + NSP {walk.nsp_loss:.4f} = {walk.loss:.4f}")

# %% [markdown]
# ## Backward: the gradients themselves
#
# The backward starts at the loss and runs the same names in reverse. Each step shows the gradient it
# receives and the ones it passes on, full tensors. The first gradient is the cross-entropy's:
# for masked row $p$, $\partial L / \partial \text{logits}_p = (\text{softmax}(\text{logits}_p) -
# \text{onehot}(\text{label}_p)) / P$ (`docs/backward/cross_entropy.md`).
#
# ### Your turn 3: one gradient, by hand
#
# Compute `my_dlogits`, the gradient of the loss with respect to the 17 logits of the **first** masked
# row (`dlogits[0]`), from `logits_row`, the answer's id `label` and the number of masked rows `n_masked`.

# %%
logits_row, label, n_masked = dec.out[0], tok.vocab[answers[0]], dec.out.shape[0]
print("logits", logits_row, "\nlabel", label, "| masked rows", n_masked)

# %% nbgrader={"grade": false, "grade_id": "11-your-turn-gradient", "locked": false, "schema_version": 3, "solution": true, "task": false}
my_dlogits = ...
### BEGIN SOLUTION
q = np.exp(logits_row - logits_row.max())
q = q / q.sum()
q[label] -= 1.0
my_dlogits = q / n_masked
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "11-check-gradient", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check_by_hand("gradient of the first masked row's logits", my_dlogits,
              walk["cls.predictions.loss", "backward"].outputs["dlogits"][0],
              "softmax the logits, subtract 1 at the answer's column only, and remember that the MLM loss is "
              "a mean over the masked rows")

# %% [markdown]
# The tied matrix $E$ was used twice, as the lookup table and as the decoder, so two backward steps give
# it a gradient and a last step adds them (`docs/backward/tied_weights.md`). The decoder's share touches
# every row (every word's logit entered the softmax); the lookup's only the rows of the words in the
# batch, and never `[PAD]` (row 0).

# %%
tied = walk["bert.embeddings.word_embeddings.weight", "backward"]
for part in ("dE_decoder", "dE_lookup"):
    rows = np.flatnonzero(np.abs(tied.inputs[part]).sum(1))
    print(f"{part:10s} rows touched: {tok.convert_ids_to_tokens(rows.tolist())}")
res_b = walk["bert.encoder.layer.0.attention.output.residual", "backward"]
print("layer 0's input gets four paths:", list(res_b.inputs), "->", res_b.out.shape)
print("the gradient of the [MASK] token's embedding output, de[0, t] =", walk["bert.embeddings.LayerNorm", "backward"].outputs["de"][0, t])

# %% [markdown]
# ## It is the model: every gradient, compared
#
# The model's own backward fills `model.grads`; the step-through never touches them. Both in float64:

# %%
model.zero_grad()
out = model(**batch)
model.backward()
worst = max(float(np.abs(walk.param_grad(n) - g).max() / max(np.abs(g).max(), 1e-300))
            for n, _, g in model.named_parameters() if "key.bias" not in n)
print(f"{len(model.named_parameters())} parameters; largest relative difference {worst:.1e} (float64 rounding)")
print(f"loss: model {float(out.loss):.15f}, step-through {walk.loss:.15f}")
model.zero_grad()

# %% [markdown]
# (The key bias is left out of the relative comparison: its gradient is exactly zero in exact arithmetic,
# since adding $q \cdot b_k$ to every score of a row does not change its softmax, so both sides hold
# rounding noise of ~1e-17 there.)
#
# ## Step through it in your browser
#
# `minibert trace --toy --html trace.html "the cat often [MASK] ."` trains this model (a few seconds) and
# writes one page that steps through every operation with the arrow keys, each tensor a heatmap with its
# value on hover, with the formula, the source line and the derivation of each step. `--model DIR`
# instead of `--toy` does it for a saved model (`model.save_pretrained(DIR, tok)`), and the book carries
# two of these pages: [this lesson's model](../trace/toy.html) and [BERT-Tiny](../trace/tiny.html).
#
# ## The kernels of a real model
#
# `minibert.trace` records something else: every kernel call a model makes, as it makes it (the NumPy
# references; the glue is not there). It works on any model, here the toy, in one line; the command
# `minibert trace "the [MASK] statement raises an exception ."` does it for a freshly initialised
# BERT-Tiny, and `--model runs/tiny/model` for a pretrained one.

# %%
kernels = minibert.trace(model, **batch)
print(kernels.table(depth=0, phase="forward", values=0))

# %% [markdown]
# ## Questions
#
# **Question 1.** In the backward of attention, `merge_heads` comes before `split_heads`, the opposite
# of the forward. Why, and why is neither step given a derivation page?

# %% [markdown] nbgrader={"grade": true, "grade_id": "11-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Splitting and merging the heads are permutations of the same numbers (a reshape and a transpose), and
# the backward of a permutation is its inverse, applied in the reverse order of the forward. Nothing is
# computed, so there is nothing to derive: each gradient entry moves to where its number came from.
#
# </details>

# %% [markdown]
# **Question 2.** The gradient of the position embeddings is nonzero only for positions `0..T-1`, and
# row `t`'s gradient is summed over the batch. Why both? (Look at the `bert.embeddings.sum` backward step.)

# %% [markdown] nbgrader={"grade": true, "grade_id": "11-question-2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Only the first T rows were looked up (positions 0..T-1), so only they influenced the loss. Each of them
# was added to the token at that position in *every* sequence of the batch (one `(1, T, C)` lookup
# broadcast over B), so its gradient is the sum over the batch of the gradients at that position.
#
# </details>
