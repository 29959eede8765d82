# %% [markdown]
# # 01 · Tokenization and input representation
#
# BERT never sees characters or words: it sees ids into a fixed vocabulary of *word pieces*.
# Getting there takes two stages, exactly as in google-research/bert's `tokenization.py`:
#
# 1. **BasicTokenizer**: clean the text and cut it into words and punctuation marks
#    (lower-case, strip accents, put spaces around every CJK ideograph);
# 2. **WordPiece**: cut each word into the longest pieces found in the vocabulary, left to right;
#    a piece that continues a word carries a `##` prefix.
#
# Then the model inputs: `[CLS] A [SEP] B [SEP]`, a *segment id* per token (0 for A, 1 for B) and an
# *attention mask* (1 for real tokens, 0 for padding). See [`docs/concepts.md`](../docs/concepts.md) §7.

# %%
import os
import tempfile
import time
from collections import Counter

import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import check, show  # show: the library's own source; check: right or wrong
from minibert.data.cpython_docs import load_default_corpus
from minibert.data.tokenizer import BasicTokenizer, BertTokenizer, WordpieceTokenizer

workdir_tmp = tempfile.TemporaryDirectory(prefix="minibert-lesson01-")  # removed when the kernel stops
workdir = workdir_tmp.name

# %% [markdown]
# ## Stage 1: BasicTokenizer
#
# No vocabulary is needed yet. Steps a–e of its docstring: drop control characters and unify
# whitespace; space out CJK ideographs (Chinese has no spaces, so each character becomes a word);
# NFC-normalise; split on whitespace, lower-case and strip accents; split off every punctuation mark.

# %%
show(BasicTokenizer.tokenize)

# %%
basic = BasicTokenizer()
for text in ["Héllo, wörld! It's 3.5km\u00a0away.", "BERT模型的核心思想是预训练", "ロボット and 한국어 are not split"]:
    print(f"{text!r:40} -> {basic.tokenize(text)}")

# %% [markdown]
# Chinese ideographs each became a word; Japanese kana and Korean hangul did not (they are written
# with spaces between words, so BERT treats them like letters). Note `ロボット` → `ロホット`: stripping
# accents removes every combining mark after Unicode decomposition, and the kana's voicing mark is one.
# Uncased BERT does exactly this (the test suite compares with transformers character by character).
#
# ## Stage 2: WordPiece, greedy longest match
#
# From the start of a word, take the longest prefix that is in the vocabulary; from where it ended,
# the longest `##`-piece; and so on. If at some point nothing matches, the *whole word* becomes `[UNK]`.

# %%
show(WordpieceTokenizer.tokenize)

# %%
toy = {"un": 0, "una": 1, "##ffa": 2, "##ble": 3, "##able": 4, "aff": 5, "##f": 6}
wp = WordpieceTokenizer(toy)
for word in ["unaffable", "affable", "unable", "zebra"]:
    print(f"{word:10} -> {wp.tokenize(word)}")

# %% [markdown]
# ### Your turn: tokenize by hand
#
# With the same toy vocabulary (`un`, `una`, `##ffa`, `##ble`, `##able`, `aff`, `##f`), write what the
# greedy longest match gives for the words `unaff` and `affx`, as lists of pieces. Predict first: the
# next cell runs the tokenizer.

# %% nbgrader={"grade": false, "grade_id": "01-your-turn-wordpiece", "locked": false, "schema_version": 3, "solution": true, "task": false}
# my_unaff = [...]
# my_affx = [...]
### BEGIN SOLUTION
my_unaff = ["una", "##f", "##f"]   # "una" is the longest prefix; then no "##ff", so "##f" twice
my_affx = ["[UNK]"]                # "aff", then nothing covers "x": the whole word is unknown
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "01-check-wordpiece", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check("unaff", my_unaff, wp.tokenize("unaff"), "longest prefix first, then the longest ##-piece from where it ended")
check("affx", my_affx, wp.tokenize("affx"), "what happens to a word when one part has no piece at all?")

# %% [markdown]
# "unaffable" starts with `una`, the longest prefix in the vocabulary, not `un`: the search takes the
# longest piece first and never backtracks. "zebra" has no cover at all and becomes a single `[UNK]`
# (BERT never emits half a word plus `[UNK]`).
#
# ## Learning a vocabulary
#
# BERT's 30k pieces were learned from its corpus by Google's own WordPiece trainer, which was never
# published (by the HF course's description it merges the pair with the highest *likelihood* score,
# `count(a, b) / (count(a) * count(b))`). `minibert.train_wordpiece` does what HF tokenizers'
# `WordPieceTrainer` does instead: start from single characters and repeatedly merge the most
# *frequent* adjacent pair (`minibert/data/wordpiece.py` says why). Either way the tokenizer is the
# same greedy longest match; only the list of pieces differs. We learn
# 2,000 pieces from CPython's documentation (the default corpus, built from the Python installation,
# no download) plus a few Chinese sentences from the seed article, so that its characters are in the
# vocabulary too.

# %%
corpus = load_default_corpus()
print(corpus)
chinese = [
    "传统的NLP模型通常采用单向语言模型,即从左到右或从右到左来处理文本序列,这种方式无法很好地捕捉上下文的双向关系。",
    "BERT使用了Transformer的编码器部分,它是一种基于自注意力机制的神经网络结构,能够有效地捕捉长距离依赖关系。",
    "BERT模型的出现为NLP领域带来了革命性的进步,其核心思想是通过预训练的方式学习通用的语言表示。",
    "在BERT中,输入序列首先被映射为token embeddings、segment embeddings和position embeddings的总和。",
]
english = [s for doc in corpus.train for s in doc]
t = time.perf_counter()
vocab = minibert.train_wordpiece(english + chinese, vocab_size=2000, out_file=os.path.join(workdir, "vocab.txt"))
print(f"learned {len(vocab)} pieces from {len(english):,} sentences in {time.perf_counter() - t:.1f} s")
n_chars = sum(1 for p in vocab[5:] if len(p) == 1)
print(f"5 specials, {n_chars} characters (each also as ##char), then merges; the first merges:", vocab[5 + 2 * n_chars:5 + 2 * n_chars + 12])
print("the last merges:", vocab[-10:])

# %%
tok = BertTokenizer(os.path.join(workdir, "vocab.txt"))
for text in ["The tokenizer splits unaffable words into pieces.",
             "BERT模型的核心思想是预训练",
             "一只猫"]:
    pieces = tok.tokenize(text)
    print(f"{text!r:55} -> {pieces}")
print("ids:", tok.convert_tokens_to_ids(tok.tokenize("BERT模型的核心思想是预训练")))

# %% [markdown]
# Every Chinese character of the test sentence is a token of its own. In "一只猫" (a cat), "只" and
# "猫" never occurred in the training text, so each is `[UNK]`: since every ideograph is a word of its
# own, an unknown character costs one `[UNK]`, not the whole sentence. A character seen once is
# enough to be in the vocabulary: the alphabet always is; merges need a pair seen twice.
#
# ## Model inputs: `[CLS] A [SEP] B [SEP]`, segments, padding
#
# A pair of segments is packed into one sequence. `[CLS]` comes first (its final hidden state feeds
# the NSP classifier), each segment ends with `[SEP]`; `token_type_ids` say which segment a token
# belongs to (the segment embeddings of lesson 02); a batch is padded with `[PAD]` to its longest row,
# and `attention_mask` is 0 there so that no token attends to padding (lesson 03).

# %%
enc = tok("The cat sat.", "It purred.")
rows = [("token", tok.convert_ids_to_tokens(enc["input_ids"])), ("id", enc["input_ids"]),
        ("segment", enc["token_type_ids"]), ("mask", enc["attention_mask"])]
for label, row in rows:
    print(f"{label:8}" + "".join(f"{str(v):>8}" for v in row))

# %%
batch = tok(["The cat sat.", "Exceptions are raised when an error is detected."],
            ["It purred.", "They can be handled."], padding=True, return_tensors="np")
for key, value in batch.items():
    print(key, value.shape)
print(batch["attention_mask"])

# %% [markdown]
# ## Check: the same tokens and ids as transformers' BertTokenizer
#
# Tokenization is discrete, so the expected number of mismatches is exactly 0. We encode 300 held-out
# sentence pairs with our tokenizer and with transformers' pure-Python BERT tokenizer on the same
# `vocab.txt` (the test suite does the same on the real 30k vocabulary).

# %%
try:
    try:  # transformers 5.x renamed the Python tokenizer; in 4.x it is BertTokenizer
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as HFTokenizer
    except ImportError:
        from transformers import BertTokenizer as HFTokenizer
    hf = HFTokenizer(os.path.join(workdir, "vocab.txt"))
    held = [s for doc in corpus.heldout for s in doc][:301] + chinese
    pairs = list(zip(held[:-1], held[1:]))
    mismatches = sum(tok(a, b)["input_ids"] != hf(a, b)["input_ids"] for a, b in pairs)
    print(f"{len(pairs)} pairs: {mismatches} mismatching encodings  (expect exactly 0)")
except ImportError:
    print("transformers is not installed (pip install -e '.[test]'): parity check skipped")

# %% [markdown]
# ## See: how many pieces per word, and the input arrays of a batch

# %%
words = [w for s in [s for doc in corpus.heldout for s in doc][:2000] for w in basic.tokenize(s)]
per_word = Counter(len(tok.wordpiece_tokenizer.tokenize(w)) for w in words)
unk = sum(tok.wordpiece_tokenizer.tokenize(w) == ["[UNK]"] for w in words)
fig, axes = plt.subplots(1, 2, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1, 2.2]})
ks = sorted(per_word)
axes[0].bar(ks, [per_word[k] / len(words) for k in ks])
axes[0].set_xlabel("pieces per word"), axes[0].set_ylabel("fraction of held-out words")
axes[0].set_title(f"V = {len(tok.vocab)}: {per_word[1] / len(words):.0%} of words are one piece, {unk} [UNK]")
grid = np.concatenate([batch["token_type_ids"], batch["attention_mask"]])  # (2B, T)
axes[1].imshow(grid, cmap="Pastel1_r", aspect="auto")
tokens = [tok.convert_ids_to_tokens(row) for row in batch["input_ids"].tolist()]
for r in range(grid.shape[0]):
    for c in range(grid.shape[1]):
        axes[1].text(c, r, tokens[r % 2][c] if r < 2 else grid[r, c], ha="center", va="center", fontsize=7)
axes[1].set_yticks(range(4), ["segment, row 0", "segment, row 1", "mask, row 0", "mask, row 1"])
axes[1].set_xticks([]), axes[1].set_title("token_type_ids (top) and attention_mask (bottom) of the batch")
fig.tight_layout()

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** A word can be covered halfway and then not at all (`affx`). Why does BERT make the whole word one `[UNK]` rather than `aff` followed by `[UNK]`?

# %% [markdown] nbgrader={"grade": true, "grade_id": "01-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# google-research/bert's WordPiece treats a word as a unit: if any part of it has no piece, the whole word is `[UNK]`. A half-word plus `[UNK]` would give the model a misleading piece (`aff` says nothing reliable about `affx`) and one unknown symbol that stands for different kinds of tails. Since the vocabulary holds every character seen in training (as `c` and `##c`), this only happens to words with a character never seen.
#
# </details>

# %% [markdown]
# **Question 2.** Why does a learned vocabulary hold each character twice, as `c` and as `##c`?

# %% [markdown] nbgrader={"grade": true, "grade_id": "01-question-2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# A piece at the start of a word and the same letters inside a word are different symbols (`##` marks a continuation). To cover every word made of known characters, each character must exist in both forms: `c` to start a word, `##c` to continue one. With both, the greedy match can always fall back to single characters, so no word of seen characters becomes `[UNK]`.
#
# </details>

# %% [markdown]
# Next: [02 · embeddings](02_embeddings.ipynb): these ids, segments and positions become vectors.
