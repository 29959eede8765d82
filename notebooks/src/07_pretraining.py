# %% [markdown]
# # 07 · Pretraining a tiny BERT
#
# Everything so far, put to work: a corpus, a WordPiece vocabulary, MLM + NSP batches, the model,
# its backward, and AdamW. We pretrain a tiny BERT for a few hundred steps (about a minute on a
# laptop CPU) and look at what it learned: the loss curves, fill-mask before and after, and the
# attention maps of the trained model.
#
# **The corpus** is minibert's synthetic language (`minibert.data.synthetic.synthetic_corpus`), made so that
# the right answers are known: documents about one topic (kitchen, farm, sea, ...), sentences such as
# *"the red cup holds the blue bowl."*, and every noun always wears the same colour. So a masked
# **colour** is predictable only from the noun to its *right* (a left-to-right model is stuck at
# 1/4, a bidirectional one can reach 1), a **noun** from its colour and the topic (at most 1/2),
# a **verb** not at all (1/8); NSP is learnable from the topics (at most 93.75%).
#
# **The step** (`training_step` in `minibert/training/loop.py` is the same step, inside the one training
# loop that pretraining and fine-tuning share, with checkpoints, evaluation, logging and gradient
# accumulation; `minibert/training/pretrain.py` builds the data and the model and hands them to it):
# `model.zero_grad() → batch → model(**batch) → model.backward() → clip_grad_norm → learning-rate schedule → AdamW.step()`.

# %%
import os
import tempfile
import time

import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.data.synthetic import SYNTHETIC_ADJECTIVES, SYNTHETIC_TOPICS, SYNTHETIC_VERBS, synthetic_corpus
from minibert.classroom.lessons import check  # a your-turn's check: right or wrong, never the answer
from minibert.optim import clip_grad_norm, linear_warmup_decay
from minibert.training.plots import plot_attention, smooth
from minibert.data.dataset import PretrainingDataset
from minibert.training.inference import fill_mask
from minibert.training.pretrain import evaluate

minibert.set_backend("numpy")  # the readable references; set_backend("numba") is ~2x faster after compiling
workdir_tmp = tempfile.TemporaryDirectory(prefix="minibert-lesson07-")  # removed when the kernel stops
workdir = workdir_tmp.name

# %% [markdown]
# ## Data: corpus → vocabulary → batches

# %%
corpus = synthetic_corpus(400, seed=0)
print(corpus)
print(corpus.train[0][:3])
vocab = minibert.train_wordpiece((s for doc in corpus.train for s in doc), vocab_size=300,
                                 out_file=os.path.join(workdir, "vocab.txt"))
tok = minibert.BertTokenizer(os.path.join(workdir, "vocab.txt"))
print(f"vocabulary: {len(tok.vocab)} pieces (the corpus ran out of pairs to merge: every word is whole):",
      tok.tokenize("the yellow tractor pushes a green alien."))

T, B = 32, 32
data = PretrainingDataset(corpus.train, tok, batch_size=B, max_seq_length=T, seed=0)   # new masks every epoch
heldout = PretrainingDataset(corpus.heldout, tok, batch_size=B, max_seq_length=T, seed=1,
                             dynamic_masking=False, drop_last=False)                   # fixed masks
eval_batches = list(heldout.epoch_batches(0))[:4]
print(data)
b = data.next_batch()
print("one row:", " ".join(tok.convert_ids_to_tokens(b["input_ids"][0].tolist())).replace(" [PAD]", ""))
print("labels :", [tok.convert_ids_to_tokens(int(i)) for i in b["labels"][0] if i != -100],
      "| NSP label", b["next_sentence_label"][0], "(1 = B is random)")

# %% [markdown]
# ## The model, and fill-mask before training

# %%
cfg = minibert.BertConfig(vocab_size=len(tok.vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=256, max_position_embeddings=T)   # dropout 0.1, GELU, as BERT
model = minibert.BertForPreTraining(cfg, seed=0).train()                         # float32
print(model)
probes = ["the [MASK] cup holds the blue bowl.",       # a colour: answer "red", readable only from "cup"
          "a green [MASK] is near the red cow.",       # a noun: green farm/kitchen things
          "the red cup [MASK] the blue bowl."]         # a verb: any of eight
before = {p: fill_mask(model, tok, p)[0][1] for p in probes}
for p, top in before.items():
    print(f"{p:40s} " + ", ".join(f"{t} {q:.3f}" for t, q in top[:4]))

# %% [markdown]
# ### Your turn: predict the learning rate
#
# The training cell below uses BERT's schedule with $S = 400$ updates, $W = 40$ of warmup and a peak of
# `5e-3`. minibert's version (`linear_warmup_decay`): update $s < W$ uses $\text{peak}\cdot(s+1)/W$, update
# $s \ge W$ uses $\text{peak}\cdot(S-s)/(S-W+1)$. Write the learning rate of the first update, which
# update uses the peak, the learning rate of update 40 and of the last update (399).

# %% nbgrader={"grade": false, "grade_id": "07-your-turn-schedule", "locked": false, "schema_version": 3, "solution": true, "task": false}
# lr_first = ...
# peak_update = ...
# lr_at_40 = ...
# lr_last = ...
### BEGIN SOLUTION
lr_first = 5e-3 * 1 / 40                 # the first update already moves
peak_update = 39                         # (39 + 1) / 40 = 1
lr_at_40 = 5e-3 * (400 - 40) / 361       # just below the peak: the peak is used once
lr_last = 5e-3 * (400 - 399) / 361       # not 0: the last update still moves
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "07-check-schedule", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check("the first update's rate", lr_first, linear_warmup_decay(0, 400, 40, 5e-3),
      "updates count from s = 0: does the first one already move?")
check("the peak's update", peak_update, next(s for s in range(400) if linear_warmup_decay(s, 400, 40, 5e-3) == 5e-3),
      "which s makes (s + 1) / W equal to 1?")
check("update 40's rate", lr_at_40, linear_warmup_decay(40, 400, 40, 5e-3), "s = 40 is already in the decay")
check("the last update's rate", lr_last, linear_warmup_decay(399, 400, 40, 5e-3), "is S - s zero at s = 399?")

# %% [markdown]
# ## Train
#
# AdamW (decoupled weight decay 0.01, none on biases and LayerNorms), gradient clipping at norm 1,
# linear warmup over the first 10% of the steps then linear decay, as in BERT. Held-out evaluation
# (dropout off, fixed masks) every 50 steps.

# %%
steps, lr = 400, 5e-3
opt = minibert.AdamW(model, lr=lr, weight_decay=0.01)
history, evals = [], []
start = time.perf_counter()
for step in range(steps):
    batch = data.next_batch()
    model.zero_grad()                                      # backward() adds into grads
    out = model(**batch)                                   # forward: MLM + NSP loss
    model.backward()                                       # adds d loss / d params into model.grads
    grad_norm = clip_grad_norm(model, 1.0)
    opt.lr = linear_warmup_decay(step, steps, steps // 10, lr)
    opt.step()
    history.append((float(out.mlm_loss), float(out.nsp_loss), grad_norm))
    if (step + 1) % 50 == 0:
        evals.append((step + 1, evaluate(model, eval_batches, data.most_frequent_label())))
        e = evals[-1][1]
        print(f"step {step + 1:4d}  train MLM {np.mean([h[0] for h in history[-50:]]):.3f}  "
              f"held-out MLM {e['mlm_loss']:.3f} acc {e['mlm_accuracy']:.3f}  NSP acc {e['nsp_accuracy']:.3f}")
seconds = time.perf_counter() - start
print(f"{steps} steps in {seconds:.0f} s ({steps * B * T / seconds:,.0f} token slots/s)")

# %% [markdown]
# ## Check
#
# At the first step, before any update, the losses must be those of a uniform guess: ln V for MLM and
# ln 2 for NSP (small initial weights give near-uniform predictions). After training, the held-out MLM
# accuracy must beat always guessing the most frequent token.

# %%
mlm0, nsp0, _ = history[0]
print(f"first step: MLM {mlm0:.3f} vs ln V = {np.log(len(tok.vocab)):.3f}, NSP {nsp0:.3f} vs ln 2 = {np.log(2):.3f}  (expect within ~0.2)")
final = evals[-1][1]
print(f"held-out MLM accuracy {final['mlm_accuracy']:.3f} vs most-frequent-token baseline {final['unigram_mlm_accuracy']:.3f}")
assert final["mlm_accuracy"] > final["unigram_mlm_accuracy"] + 0.1, "the model did not learn"

# %% [markdown]
# ## See: curves, fill-mask after training, and what each kind of word costs

# %%
mlm, nsp, gn = map(np.array, zip(*history))
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
axes[0].plot(mlm, alpha=0.3, color="C0"), axes[0].plot(smooth(mlm), color="C0", label="train (smoothed)")
axes[0].plot([s for s, _ in evals], [e["mlm_loss"] for _, e in evals], "o-", color="C3", label="held-out")
axes[0].axhline(np.log(len(tok.vocab)), ls=":", color="gray", label="uniform guess, ln V")
axes[0].set_title("masked LM loss"), axes[0].set_xlabel("step"), axes[0].legend()
axes[1].plot(nsp, alpha=0.3, color="C1"), axes[1].plot(smooth(nsp), color="C1", label="train (smoothed)")
axes[1].plot([s for s, _ in evals], [e["nsp_loss"] for _, e in evals], "o-", color="C3", label="held-out")
axes[1].axhline(np.log(2), ls=":", color="gray", label="chance, ln 2")
axes[1].set_title("next sentence prediction loss"), axes[1].set_xlabel("step"), axes[1].legend()
axes[2].plot(gn, color="C2"), axes[2].axhline(1.0, ls=":", color="gray", label="clipped to 1")
axes[2].set_yscale("log"), axes[2].set_title("gradient norm before clipping"), axes[2].set_xlabel("step"), axes[2].legend()
fig.tight_layout()

# %%
for p in probes:
    after = fill_mask(model, tok, p)[0][1]
    print(f"{p}\n   before: " + ", ".join(f"{t} {q:.2f}" for t, q in before[p][:4])
          + "\n   after:  " + ", ".join(f"{t} {q:.2f}" for t, q in after[:4]))

# %% [markdown]
# Before training every guess is a near-uniform 1/V over word pieces. After a few hundred steps the
# model knows *what kind* of word goes where: the four colours share the colour slot, nouns fill the
# noun slot, verbs the verb slot, each close to 1/8, the best possible for a verb. It does not yet
# read the noun to the right to pick *the* colour ("red": a cup is always red): that takes longer
# training; try `minibert pretrain --corpus synthetic --max-steps 3000` (the tiny preset, C=128).
# Accuracy by kind of word, on the held-out batches, next to the best achievable:

# %%
kinds = {"colour": set(SYNTHETIC_ADJECTIVES), "noun": {n for ns in SYNTHETIC_TOPICS.values() for n in ns},
         "verb": set(SYNTHETIC_VERBS)}
best = {"colour": 1.0, "noun": 0.5, "verb": 1 / 8, "other": 1.0}
hits, counts = {k: 0 for k in best}, {k: 0 for k in best}
model.eval()
for batch in eval_batches:
    out = model(**batch)
    labelled = batch["labels"].reshape(-1) != -100  # (B*T,) the positions the loss reads
    labels = batch["labels"].reshape(-1)[labelled]
    for label, guess in zip(labels, out.prediction_logits.reshape(labelled.size, -1)[labelled].argmax(-1)):
        word = tok.convert_ids_to_tokens(int(label))
        kind = next((k for k, words in kinds.items() if word in words), "other")
        counts[kind] += 1
        hits[kind] += int(guess == label)
fig, ax = plt.subplots(figsize=(7, 3))
xs = np.arange(len(best))
ax.bar(xs - 0.2, [hits[k] / max(counts[k], 1) for k in best], 0.4, label="tiny BERT, this run")
ax.bar(xs + 0.2, list(best.values()), 0.4, label="best achievable", color="lightgray")
ax.set_xticks(xs, [f"{k}\n(n={counts[k]})" for k in best]), ax.set_ylim(0, 1.05), ax.legend()
ax.set_title("held-out MLM accuracy by kind of word")
fig.tight_layout()

# %% [markdown]
# Function words and punctuation ("other": *the*, *a*, *is*, *near*, *.*) are nearly solved; a
# colour is guessed at about the 1/4 of a model that knows a colour goes there but not which; nouns
# and verbs lag further. The gap to the grey bars is what longer pretraining closes.

# %% [markdown]
# ## See: the attention of the trained model
#
# `output_attentions=True` returns every layer's probabilities `(B, A, T, T)`. Compare with the
# near-uniform maps of an untrained layer (lesson 03): the heads now attend selectively.

# %%
enc = tok("the red cup holds the blue bowl.", "a green spoon is near the yellow fork.", return_tensors="np")
out = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"], output_attentions=True)
tokens = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
fig, axes = plt.subplots(cfg.num_hidden_layers, cfg.num_attention_heads, figsize=(10, 9.5))
for layer in range(cfg.num_hidden_layers):
    for head in range(cfg.num_attention_heads):
        plot_attention(out.attentions[layer][0, head], tokens, ax=axes[layer, head], title=f"layer {layer}, head {head}")
fig.tight_layout()

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** AdamW here applies no weight decay to biases and LayerNorm parameters. Why?

# %% [markdown] nbgrader={"grade": true, "grade_id": "07-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Weight decay pulls a parameter towards 0. For a LayerNorm gain the natural value is 1 and 0 switches the feature off; for biases and LayerNorm shifts there is no reason to prefer 0, and they are few, so they add little to the model's capacity to overfit. google-research/bert's optimizer excludes `LayerNorm` and `bias` from the decay, and transformers' examples do the same.
#
# </details>

# %% [markdown]
# **Question 2.** After 400 steps the model fills a colour slot with *a* colour at about 1/4, not with "red" read from "cup" on its right. What must it learn to pick the colour, and why does that come later?

# %% [markdown] nbgrader={"grade": true, "grade_id": "07-question-2", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# It must route information from one particular token to the right of the mask (the noun) into the masked position, through a head that has learned to attend there, and associate each noun with its colour. "A colour goes here" is readable from frequent local patterns (`the _ cup`) that every sentence repeats; each noun-colour pair is seen far less often, and the attention pattern and the association must be learned together, so it takes many more steps (`--max-steps 3000` learns it).
#
# </details>

# %% [markdown]
# Where to go from here: `minibert pretrain` (the full loop, with checkpoints, resuming and a held-out
# evaluation, on CPython's documentation by default), the exercises (`minibert exercises make DIR`),
# and the next lessons on fine-tuning and pretrained weights. The default job departs from this loop
# (and from BERT's recipe) in three measured ways: it starts on 16-token sequences, it pretrains
# without dropout, and its peak learning rate is 3e-3 after a warmup of a tenth of the steps (1e-3 for the mini
# preset). `docs/pretraining.md` shows why each one
# matters for a tiny model with 15 minutes of CPU: without the first, no head learns where words are.
