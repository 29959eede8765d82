# %% [markdown]
# # 06 · The pre-training heads: masked LM and next-sentence prediction
#
# ## Derive
#
# On top of the encoder's output $X$ `(B, T, C)` sit two small heads, and the loss is the sum of their
# cross-entropies.
#
# **Masked LM.** At the $P$ positions chosen for prediction (15% of the tokens; of those 80% were
# replaced by `[MASK]`, 10% by a random word, 10% left unchanged), the head computes
#
# $$h = \text{LN}\big(\text{GELU}(x W_t^\top + b_t)\big), \qquad \text{logits} = h\,E^\top + b \quad (P, V)$$
#
# where $E$ `(V, C)` is **the word-embedding table itself** (tied weights). As in transformers, the
# model computes the logits at every position, `(B, T, V)`, but only those $P$ rows enter the loss: an unmasked token can be read directly from the input, so predicting it teaches nothing.
# The 10% random and 10% unchanged keep the model from learning that only `[MASK]` positions matter.
#
# **NSP.** The pooler takes the final vector of `[CLS]`: $\text{pooled} = \tanh(x_{b,0} W_p^\top + b_p)$,
# and a 2-way classifier says whether B followed A (label 0) or was random (label 1).
#
# Labels use transformers' convention: `labels` `(B, T)` holds the original token id at predicted
# positions and **-100** everywhere else; the cross-entropy averages over the positions that are not
# -100 (see [`docs/backward/cross_entropy.md`](../docs/backward/cross_entropy.md), including d2l's
# masking bug) and the tied gradient is a sum over both uses ([`tied_weights.md`](../docs/backward/tied_weights.md)).

# %%
import os
import random
import tempfile
from collections import Counter

import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import check, show  # show: the library's own source; check: right or wrong
from minibert.data.synthetic import synthetic_corpus, synthetic_vocabulary
from minibert.gradcheck import numerical_gradient_at, perturb_parameters, rel_error, report_line
from minibert.models.bert import BertForPreTraining
from minibert.data.dataset import PretrainingDataset
from minibert.data.pretraining import create_masked_lm_predictions, vocab_words_for_replacement

minibert.set_backend("numpy")

workdir_tmp = tempfile.TemporaryDirectory(prefix="minibert-lesson06-")  # removed when the kernel stops
workdir = workdir_tmp.name
with open(os.path.join(workdir, "vocab.txt"), "w") as fh:
    fh.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + synthetic_vocabulary()) + "\n")
tok = minibert.BertTokenizer(os.path.join(workdir, "vocab.txt"))
V = len(tok.vocab)

# %% [markdown]
# ## Choosing what to predict: 15%, then 80 / 10 / 10
#
# `create_masked_lm_predictions` follows google-research/bert: never `[CLS]`/`[SEP]`, at least one
# position, ~15% of the tokens. We draw it many times on one sentence pair and count what happened to
# the chosen tokens.

# %%
tokens = ["[CLS]"] + tok.tokenize("the red cup holds the blue bowl. a green pen is near the red cup.") + ["[SEP]"] \
         + tok.tokenize("the yellow star sees the blue moon.") + ["[SEP]"]
words = vocab_words_for_replacement(tok.vocab)
rng = random.Random(0)
out_tokens, positions, labels = create_masked_lm_predictions(tokens, 0.15, 20, words, rng)
print(" ".join(out_tokens))
print("predict at", positions, "the original tokens", labels)

outcomes, chosen = Counter(), 0
for _ in range(4000):
    out_tokens, positions, labels = create_masked_lm_predictions(tokens, 0.15, 20, words, rng)
    chosen += len(positions)
    for p, label in zip(positions, labels):
        outcomes["[MASK]" if out_tokens[p] == "[MASK]" else "unchanged" if out_tokens[p] == label else "random word"] += 1
n = sum(outcomes.values())
print(f"chosen: {chosen / 4000:.2f} of {len(tokens)} tokens per draw = {chosen / 4000 / len(tokens):.1%} (expect round(15% x {len(tokens)}) = {round(0.15 * len(tokens))})")
for k in ("[MASK]", "random word", "unchanged"):
    print(f"  {k:12s} {outcomes[k] / n:.3f}")

# %% [markdown]
# ("unchanged" is a hair above 10%: a random word is the original word 1 time in |V|.)
#
# ## Implement: the heads in `BertForPreTraining.forward`
#
# The head runs on every row of the encoder's output, `(B*T, C) -> (B*T, V)`; the decoder weight is
# `owner.params[name]`, the word embeddings. The MLM loss then picks the labelled rows: `positions` are
# the flat indices of `labels != -100`. (The decoder is the largest matrix product of a step, B·T × C × V;
# the pretraining job's fast path runs the head at the P labelled rows only, as google-research/bert's
# `gather_indexes` does.)

# %%
show(BertForPreTraining.mlm_head_forward)

# %%
show(BertForPreTraining.forward, "logits, c_mlm_head", "loss = sum(")

# %% [markdown]
# And the backward of the head: the decoder's weight gradient is *accumulated* into the word
# embeddings' gradient (`owner._acc`), which the embedding lookup will add to as well.

# %%
show(BertForPreTraining.mlm_head_backward)

# %%
show(BertForPreTraining.backward, "if cache.mlm_loss is not None:", "self.bert.backward(")

# %% [markdown]
# ## Check
#
# A float64 model on a real batch of the synthetic language (padded, 15% masked, half the pairs random).

# %%
data = PretrainingDataset(synthetic_corpus(60, seed=0).train, tok, batch_size=8, max_seq_length=40, seed=0)
batch = data.next_batch()
cfg = minibert.BertConfig(vocab_size=V, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                          intermediate_size=96, max_position_embeddings=40,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
model = BertForPreTraining(cfg, seed=0, dtype=np.float64)
out = model(**batch)
P = int((batch["labels"] != -100).sum())
print(f"{P} predicted positions out of {int(batch['attention_mask'].sum())} real tokens")
print(f"1. initial MLM loss {out.mlm_loss:.4f} vs ln V = {np.log(V):.4f};  NSP loss {out.nsp_loss:.4f} vs ln 2 = {np.log(2):.4f}  (expect within ~0.1)")

# %% [markdown]
# ### Your turn: what the gather saves
#
# As in transformers, the model runs the MLM head on every position, labels or not. Write the shape of
# `prediction_logits` (a tuple, from `batch["input_ids"].shape` and `V`), and how many times more rows
# the decoder's product has than the loss reads (`P` above): what google-research/bert's
# `gather_indexes` (and minibert's pretraining fast path) saves by running the head at the P rows only.

# %% nbgrader={"grade": false, "grade_id": "06-your-turn-logits-shape", "locked": false, "schema_version": 3, "solution": true, "task": false}
# shape_without_labels = ...
# times_more = ...
### BEGIN SOLUTION
shape_without_labels = batch["input_ids"].shape + (V,)   # (B, T, V): a row for every position
times_more = batch["input_ids"].size / P                  # B*T rows instead of P
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "06-check-logits-shape", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
every = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).prediction_logits
check("the shape of prediction_logits", tuple(shape_without_labels), every.shape,
      "one row of V logits for every position of every sequence, padding included")
check("how many times more rows", times_more, every.shape[0] * every.shape[1] / P,
      "the rows of the decoder's product (every position), divided by the rows the loss reads", rtol=1e-6)

# %% [markdown]
# **2. Only labelled positions count.** Without labels the model returns logits at every position;
# the cross-entropy averaged over the labelled ones must be the MLM loss, and padding must change
# nothing: replacing the `[PAD]` ids by random tokens leaves the loss and every gradient unchanged
# (padded keys get exactly zero attention, and no loss reads a padded position).

# %%
full = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).prediction_logits  # (B, T, V)
lab = batch["labels"].reshape(-1)
z = full.reshape(-1, V)[lab != -100]
logp = z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
manual = -logp[np.arange(len(z)), lab[lab != -100]].mean()
print(f"2a. MLM loss vs mean cross-entropy over the {len(z)} labelled rows: rel_error {rel_error(manual, out.mlm_loss):.1e}  (expect ~1e-16)")

out = model(**batch)
model.backward()
before = {n: g.copy() for n, g in model.grad_state_dict().items()}
noisy = dict(batch, input_ids=np.where(batch["attention_mask"] == 1, batch["input_ids"],
                                       np.random.default_rng(0).integers(5, V, size=batch["input_ids"].shape)))
out2 = model(**noisy)
model.zero_grad()                                   # backward() adds into grads: start afresh
model.backward()
worst = max(np.abs(g - before[n]).max() for n, g in model.grad_state_dict().items())
print(f"2b. random ids at padded positions: |Δloss| = {abs(out2.loss - out.loss):.1e}, max |Δgradient| = {worst:.1e}  (expect 0)")

# %% [markdown]
# **3. Tied weights: the gradient is the sum of both uses.** An untied model (`tie_word_embeddings=False`)
# starting from the same weights has a separate decoder matrix. The tied model's embedding gradient
# must equal the untied model's embedding gradient plus its decoder gradient.

# %%
untied = BertForPreTraining(minibert.BertConfig(**{**cfg.to_dict(), "tie_word_embeddings": False}), seed=0, dtype=np.float64)
untied.load_state_dict({**model.state_dict(), "cls.predictions.decoder.weight": model.state_dict()["bert.embeddings.word_embeddings.weight"].copy()})
model.zero_grad()                                   # the cell above left its gradients in grads
model(**batch), model.backward()
untied(**batch), untied.backward()
tied_g = model.grad_state_dict()["bert.embeddings.word_embeddings.weight"]
ug = untied.grad_state_dict()
both = ug["bert.embeddings.word_embeddings.weight"] + ug["cls.predictions.decoder.weight"]
print(report_line("tied = embedding + decoder", tied_g, both), f"| rel_error {rel_error(tied_g, both):.1e} (expect ~1e-16)")
print(f"   (the decoder path alone: rel_error {rel_error(tied_g, ug['cls.predictions.decoder.weight']):.2f}; forgetting either use is a real bug)")

# %% [markdown]
# **4. The heads' gradients against finite differences** (float64, a few coordinates of each head
# parameter and of the tied embeddings; expect < 1e-7). For this check the parameters get non-trivial
# values (LayerNorm gains ≠ 1, biases ≠ 0, wider weights): at BERT's initialisation some gradients are
# so small that the finite differences' own error (~1e-10) is no longer negligible next to them.

# %%
model = perturb_parameters(BertForPreTraining(cfg, seed=0, dtype=np.float64))
r = np.random.default_rng(1)  # which coordinates to check
model(**batch), model.backward()
loss = lambda: float(model(**batch).loss)
grads = model.grad_state_dict()
params = dict((n, p) for n, p, _ in model.named_parameters())
for name in ["cls.predictions.transform.dense.weight", "cls.predictions.transform.LayerNorm.weight",
             "cls.predictions.bias", "cls.seq_relationship.weight", "bert.pooler.dense.weight",
             "bert.embeddings.word_embeddings.weight"]:
    g = grads[name].reshape(-1)
    idx = np.concatenate([r.choice(np.flatnonzero(g), 4, replace=False), r.choice(g.size, 2, replace=False)])
    print(f"  {name:45s} rel_error {rel_error(g[idx], numerical_gradient_at(loss, params[name], idx)):.1e}")

# %% [markdown]
# ## See: which positions send gradient into the encoder
#
# We catch the gradient the heads pass down to the encoder's output, $\partial L/\partial X$ `(B, T, C)`
# (the upstream gradient of the top layer's backward, MLM and pooler contributions added), and plot
# its norm per position. It is non-zero only at the masked positions (MLM) and at `[CLS]`
# (NSP, through the pooler): the encoder learns everything from these few rows. (The gradient
# still reaches every *input* token, through attention, on the way down.)
#
# minibert's pretraining job uses this: its loss-only fast path (`minibert/kernels/heads_rows.py`)
# computes the last layer's queries, FFN and LayerNorms only at those rows, since no loss reads the
# others. The model itself, as here, computes every row, as transformers does.

# %%
caught = {}
original = model.bert.layer_backward

def spy(i, dout, cache):
    if i == cfg.num_hidden_layers - 1:
        caught["d"] = dout.copy()
    return original(i, dout, cache)

model.bert.layer_backward = spy
model(**batch), model.backward()
model.bert.layer_backward = original
norms = np.linalg.norm(caught["d"], axis=-1)                                  # (B, T)
fig, ax = plt.subplots(figsize=(13, 3.4))
ax.imshow(np.where(batch["attention_mask"] == 1, norms, np.nan), cmap="magma_r", aspect="auto")
for b, t in zip(*np.nonzero(batch["labels"] != -100)):
    ax.text(t, b, "M", ha="center", va="center", color="w", fontsize=8)
ax.set_xlabel("position (column 0 = [CLS]; white = padding)"), ax.set_ylabel("sequence")
ax.set_title("|d loss / d encoder output| per position; M = a masked (predicted) position")
nonzero = norms > 0
predicted = batch["labels"] != -100
print("non-zero exactly at the predicted positions and [CLS]:",
      bool((nonzero == (predicted | (np.arange(norms.shape[1]) == 0))).all()))

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** Suppose the MLM loss averaged the cross-entropies over all $B \cdot T$ positions (zeros at the unlabelled ones) instead of over the $P$ labelled ones. What would change in training?

# %% [markdown] nbgrader={"grade": true, "grade_id": "06-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# The loss and every gradient would be scaled by $P/(BT)$, about 0.15 times the fraction of real tokens, and the factor would change from batch to batch with $P$ and the padding: a learning rate that depends on the batch, and a first loss no longer near $\ln V$. Adam normalises a constant scale away, but not its variation between batches; and comparing losses across runs with different padding would mislead. (d2l's bug went the other way: its 0/1 weights multiplied a loss already averaged over every prediction slot, so the weights had no effect, and the padded slots, whose label is simply id 0, were trained on like real ones: the model learnt to predict id 0 at filler positions, and the loss mixed them in.)
#
# </details>

# %% [markdown]
# **Question 2.** Which rows of the tied word-embedding matrix get gradient from the decoder, and which from the input lookup?

# %% [markdown] nbgrader={"grade": true, "grade_id": "06-question-2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# From the decoder, *every* row: at each predicted position the softmax over all $V$ words gives each word a gradient $p_v$ (minus 1 for the label), so the decoder gradient is dense. From the lookup, only the rows of the ids in the batch (never `[PAD]`'s): a sparse scatter-add. The tied gradient is their sum, which the check above compares with an untied model's two gradients.
#
# </details>

# %% [markdown]
# Next: [07 · pretraining a tiny BERT](07_pretraining.ipynb).
