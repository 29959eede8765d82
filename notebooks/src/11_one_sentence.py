# %% [markdown]
# # 11 · One sentence through BERT, one operation at a time
#
# Lessons 02–06 built BERT a layer at a time. Here we follow **one real sentence** through all of it:
# from its word pieces to the masked-LM prediction, and back from the loss to the gradients of the
# embeddings, stopping at every operation the model runs.
#
# `minibert.trace(model, input_ids, ..., labels=..., next_sentence_label=...)` runs the model forward and
# backward once and records every kernel call in order: the ones the model makes (`backend.ops`,
# depth 0) and the ones inside them (the softmax inside attention, depth 2). Each call's array arguments
# and results are **copied as they pass**, so what you look at is what the model used, not a
# recomputation. (For the duration of the trace the readable NumPy references run: the numba twins are
# fused, so their insides cannot be watched.) The result is an iterator: `next(steps)` gives the next
# operation, `steps.next_where("softmax")` runs on to the next one whose name holds a text, and
# `steps.table()` prints them all. The same table from the command line:
# `minibert trace "the [MASK] statement raises an exception ."`.
#
# The model is a **freshly initialised BERT-Tiny** (L=2, C=128, A=2, F=512) with a 2000-piece WordPiece
# vocabulary learned in a second from the bundled corpus: no training, so the prediction is a guess, but
# every shape, mask and gradient path is the real one. (`minibert trace --model runs/tiny/model` does
# the same for a pretrained model.)

# %%
import numpy as np

import minibert
from minibert.classroom.trace import untrained_tiny

model, tok = untrained_tiny(seed=0)  # eval mode: dropout off
print(model)

# %% [markdown]
# ## The batch: two sentences, one of them padded
#
# One sentence has no padding, and the mask we want to watch only appears with padding, so the batch
# holds a second, shorter sentence. Each has a `[MASK]`; `labels` holds the true word there and -100
# everywhere else. Both get the NSP label 0 ("B follows A"): a single sentence has no B, but the label
# sends a gradient through the pooler and the NSP head, so every parameter is in the backward.

# %%
texts = ["the [MASK] statement raises an exception .", "a [MASK] is raised ."]
answers = ["raise", "error"]
enc = tok(texts, padding=True, return_tensors="np")
ids, mask = enc["input_ids"], enc["attention_mask"]  # (B, T) each
labels = np.where(ids == tok.mask_token_id, 0, -100)
for row, word in enumerate(answers):
    labels[row][ids[row] == tok.mask_token_id] = tok.vocab[word]
B, T = ids.shape
for row in range(B):
    print(" ".join(f"{t}:{i}" for t, i in zip(tok.convert_ids_to_tokens(ids[row].tolist()), ids[row])))
print("attention_mask\n", mask)
print("labels\n", labels)

# %%
steps = minibert.trace(model, ids, token_type_ids=enc["token_type_ids"], attention_mask=mask,
                       labels=labels, next_sentence_label=np.zeros(B, dtype=np.int64))
steps

# %% [markdown]
# ## Step 0: tokens become vectors
#
# The first operation is the word-embedding lookup: one row of $E$ `(V, C)` per id.

# %%
step = next(steps)
print(step)
E = model.bert.params["embeddings.word_embeddings.weight"]
print("out equals E[ids]:", np.array_equal(step.out, E[ids]))
print("the [PAD] rows of row 1 are E[0], which starts at zero:", np.abs(step.out[1, mask[1] == 0]).max())

# %% [markdown]
# The next three steps add the segment and position embeddings and normalise the sum (lesson 02).

# %%
for _ in range(3):
    print(next(steps).row(values=3))

# %% [markdown]
# ## Your turn: the padding mask
#
# Next comes `bert.extended_attention_mask`: the `(B, T)` mask of 1s and 0s becomes an **additive**
# mask that is added to every attention score before the softmax (`layers/softmax.py`,
# `attention_mask_to_additive`). Predict its shape (it must broadcast against the scores,
# `(B, A, T, T)`) and the value it holds at the first `[PAD]` key of row 1 for a float32 model.

# %% nbgrader={"grade": false, "grade_id": "11-your-turn-mask", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
my_shape = (B, 1, 1, T)
my_value = np.finfo(np.float32).min
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "11-check-mask", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
step = steps.next_where("extended_attention_mask")
first_pad = int(np.flatnonzero(mask[1] == 0)[0])
print(step)
print("row 1, key", first_pad, "->", step.out[1, 0, 0, first_pad])
assert tuple(my_shape) == step.out.shape, f"the mask has shape {step.out.shape}, not {tuple(my_shape)}"
assert my_value == step.out[1, 0, 0, first_pad], f"the value there is {step.out[1, 0, 0, first_pad]}, not {my_value}"
print("right: the padded keys get finfo(float32).min =", np.finfo(np.float32).min, "and the others 0")

# %% [markdown]
# Why `finfo.min` and not $-\infty$: a row whose keys were *all* masked would be $-\infty - (-\infty)$
# = NaN after the max-subtraction; with the most negative finite number it stays finite (transformers
# does the same). Added to a score of size ~1, it leaves the score at `finfo.min`, and
# $e^{\text{finfo.min} - \max} = 0$ exactly in floating point.
#
# ## Inside attention: the softmax rows
#
# The attention op of layer 0 is one call of the model (depth 0); the trace also recorded what it did
# inside: the three projections, the head split, the scaled dot-product attention and, inside that,
# the softmax.

# %%
for s in steps.find("encoder.layer.0.attention", phase="forward"):
    print(s.row(values=0))

# %%
soft = steps.next_where("attention.sdpa.softmax")
P = soft.out  # (B, A, T, T): P[b, a, i, j] = how much query i of head a attends to key j
scores, mask_add = soft.inputs["x"], soft.inputs["mask_add"]
print(soft)
print("row sums (expect 1):", P.sum(-1).min(), P.sum(-1).max())
print("probabilities of the padded keys of row 1 (expect exactly 0):", P[1][..., mask[1] == 0].max())
print("head 0, query 0 ([CLS]) of row 1:", np.round(P[1, 0, 0], 3))
print("its scores before the mask:       ", np.round(scores[1, 0, 0], 3))

# %% [markdown]
# At initialisation the scores are small (`|s| < 1`), so each row of a real sentence is close to uniform
# over its keys: about $1/7$ for the 7 real keys of row 1 and exactly 0 for its padded ones. These are
# the arrays the model used: they equal what `output_attentions=True` returns (tested in
# `tests/test_trace.py`).

# %%
out = model(ids, enc["token_type_ids"], mask, output_attentions=True)  # an untraced forward, numba or NumPy
print("max |trace - output_attentions| =", np.abs(P - out.attentions[0]).max(),
      "(0 on the NumPy backend; float32 rounding on numba's)")

# %% [markdown]
# ## The `[CLS]` path into the pooler
#
# After the last layer, the pooler reads **only position 0** (`[CLS]`) of each sequence:
# $\text{pooled} = \tanh(x_{b,0} W_p^\top + b_p)$. The trace shows the `(B, C)` slice going in.

# %%
last = steps.next_where("encoder.layer.1.output.LayerNorm")  # the encoder's output (B, T, C)
pool = steps.next_where("pooler.dense")
print(pool.row(values=3))
print("the pooler's input is the [CLS] vector:", np.array_equal(pool.x, last.out[:, 0]), pool.x.shape)

# %% [markdown]
# ## The prediction
#
# The MLM head runs only at the labelled positions ($P = 2$ here, one `[MASK]` per sentence), and its
# decoder is the word-embedding matrix itself (tied): `cls.predictions.decoder` is a linear layer whose
# weight **is** $E$.

# %%
dec = steps.next_where("cls.predictions.decoder")
print(dec)
print("the decoder's weight is the embedding matrix (same array):", dec.inputs["w"] is E)
logits = dec.out  # (P, V)
for p, row in enumerate(logits):
    top = np.argsort(-row)[:3]
    print(f"[MASK] {p}: true {answers[p]!r}, top guesses {tok.convert_ids_to_tokens(top.tolist())}")
print("loss", steps.output.loss, "= MLM", steps.output.mlm_loss, "+ NSP", steps.output.nsp_loss,
      f"(an untrained model: MLM ~ ln V = {np.log(len(tok.vocab)):.2f}, NSP ~ ln 2 = {np.log(2):.2f})")

# %% [markdown]
# ## Backward: the tied decoder receives gradient twice
#
# The backward half starts at the loss and runs the same names in reverse. The word-embedding matrix
# $E$ was used twice in the forward: as the lookup table at step 0 and as the decoder. So two backward
# steps give it a gradient, and `model.grads` holds their sum (lesson 06, `docs/backward/tied_weights.md`).

# %%
word = "bert.embeddings.word_embeddings.weight"
givers = [s for s in steps.backward if s.depth == 0 and word in s.grads]
for s in givers:
    g = s.grads[word]
    print(f"step {s.index:3d} {s.name:35s} |g| = {np.linalg.norm(g):.4f}, rows touched: {int((np.abs(g).sum(1) > 0).sum())}")
total = givers[0].grads[word] + givers[1].grads[word]
print("sum of the two == model's gradient:", np.array_equal(total, model.bert.grads["embeddings.word_embeddings.weight"]))

# %% [markdown]
# The decoder's share touches every row of $E$ (every word's logit entered the softmax); the lookup's
# share only the rows of the ids in the batch, and never row 0 (`[PAD]`, `padding_idx`).
#
# ## Your turn: how big is a gradient?
#
# Each attention layer has a key bias $b_k$ `(C,)`, added to every key before the scores
# $q_i \cdot k_j$ are taken. Predict the size of its gradient: give a number `my_key_bias_norm_is_below`
# that the norm of layer 0's key-bias gradient stays under, yet the query bias's does not (hint: what
# does $b_k$ add to the scores of one row, and what does the softmax do with that?).

# %% nbgrader={"grade": false, "grade_id": "11-your-turn-key-bias", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
my_key_bias_norm_is_below = 1e-6  # an upper bound: softmax ignores a shift of a whole row, and q . bk is one
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "11-check-key-bias", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
norms = {name: float(np.linalg.norm(steps.param_grad(name))) for name in
         ("bert.encoder.layer.0.attention.self.key.bias", "bert.encoder.layer.0.attention.self.query.bias")}
print(norms)
assert norms["bert.encoder.layer.0.attention.self.key.bias"] < my_key_bias_norm_is_below, "larger than your bound"
assert my_key_bias_norm_is_below < norms["bert.encoder.layer.0.attention.self.query.bias"], \
    "your bound does not tell the key bias apart from the query bias"
print("right: d(key bias) is zero up to float32 rounding: q . (k_j + bk) = q . k_j + q . bk adds the same "
      "number to every score of a row, and the softmax does not see it")

# %% [markdown]
# The whole backward at depth 0 (the model's own calls): `|d|` is the norm of the gradient each step
# passes on, and under each step the gradients it gave its parameters.

# %%
print(steps.table(depth=0, phase="backward", values=0))

# %% [markdown]
# ## Every parameter, accounted for
#
# Each parameter appears in the backward, and the gradients the trace recorded add up to `model.grads`
# bit for bit (the trace zeroed the gradients first).

# %%
names = [n for n, _, _ in model.named_parameters()]
seen = {p for s in steps.backward for p in s.grads}
same = all(np.array_equal(steps.param_grad(n), g) for n, _, g in model.named_parameters())
print(f"{len(names)} parameters, {len(seen & set(names))} with a gradient in the trace; all equal model.grads: {same}")
print(f"{len(steps.forward)} forward and {len(steps.backward)} backward operations")

# %% [markdown]
# ## Questions
#
# **Question 1.** In the backward of attention, the trace shows three `merge_heads` steps and one
# `split_heads`, the opposite of the forward. Why?

# %% [markdown] nbgrader={"grade": true, "grade_id": "11-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Splitting and merging the heads are permutations of the same numbers (a reshape and a transpose), and
# the backward of a permutation is its inverse. The forward split q, k and v (three `split_heads`) and
# merged the context once; so the backward splits the context's gradient once and merges the gradients
# of q, k and v three times.
#
# </details>

# %% [markdown]
# **Question 2.** The gradient reaching `bert.embeddings.position_embeddings` has nonzero rows only for
# positions `0..T-1` though the table has 128 rows, and row `t`'s gradient is summed over the batch. Why
# both?

# %% [markdown] nbgrader={"grade": true, "grade_id": "11-question-2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Only the first T rows were looked up (positions 0..T-1), so only they influenced the loss. Each of them
# was added to the token at that position in *every* sequence of the batch (one `(1, T, C)` lookup
# broadcast over B), so its gradient is the sum over the batch of the gradients at that position.
#
# </details>
