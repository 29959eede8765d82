# %% [markdown]
# # 01b · Training a WordPiece vocabulary, one merge at a time
#
# Lesson 01 *used* a vocabulary: WordPiece tokenizes a word by greedy longest match against a fixed list
# of pieces. Here we *learn* that list from a corpus, step by step, and compare the two ways of choosing
# what to merge:
#
# * **frequency**, `count(a, b)`: merge the adjacent pair of pieces seen most often. This is what HF
#   tokenizers' `WordPieceTrainer` does (its BPE trainer with a `##` prefix), and what
#   `minibert.train_wordpiece` does;
# * **likelihood**, `count(a, b) / (count(a) · count(b))`: the score of Google's original trainer as the
#   HF course describes it (Google never published that trainer; BERT's `vocab.txt` came from it). It
#   prefers pairs whose parts are rare on their own, i.e. parts that occur mostly *together*.
#
# **Derive.** Start with every word spelled in characters, the first as itself and the rest with `##`
# ("hugs" → `h ##u ##g ##s`): every training word can be written, so nothing is `[UNK]`. Then repeat:
# count every adjacent pair of pieces over the corpus (a word seen $n$ times counts $n$ times), pick the
# best pair by the score, glue it everywhere (`h` + `##u` → `hu`, `##u` + `##g` → `##ug`), add the new
# piece to the vocabulary. Stop at the vocabulary size you asked for. The merge *order* is thrown away:
# the tokenizer needs only the list.

# %%
import codecs
import this  # noqa: F401  (the Zen of Python, our small real corpus: importing it prints it)
from collections import Counter

import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import check, show
from minibert.data import wordpiece
from minibert.data.tokenizer import SPECIAL_TOKENS, BasicTokenizer, WordpieceTokenizer

# %% [markdown]
# ## Implement: the library's three steps
#
# `train_wordpiece` (in `minibert/data/wordpiece.py`) is three functions. **1.** Count the words, after
# the same `BasicTokenizer` the tokenizer will use later:

# %%
show(wordpiece.count_words)

# %%
toy = ["hug " * 10 + "pug " * 5 + "pun " * 12 + "bun " * 4 + "hugs " * 5]   # the HF course's example
word_counts = wordpiece.count_words(toy, BasicTokenizer())
print(word_counts)

# %% [markdown]
# **2.** The alphabet: every character seen, in its two forms.

# %%
show(wordpiece.initial_alphabet)

# %%
chars = wordpiece.initial_alphabet(word_counts)
alphabet = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
print(len(alphabet), "pieces before any merge:", alphabet)

# %% [markdown]
# **3.** The merge loop. It is written for speed (a heap of pair counts, updated only for the words a
# merge touches), so it is long; the idea is in its first lines and the docstring:

# %%
show(wordpiece.merge_loop, "def merge_loop", "No full recount")

# %% [markdown]
# ## Step through it: a readable loop that recounts every time
#
# To *see* each step, here is the slow, obviously correct version: recount every pair (and every single
# piece, for the likelihood score) after each merge, print the best few candidates, merge, repeat.
# It takes the score as a function, so the same loop runs both trainers.

# %%
def frequency(pair_n, a_n, b_n):
    return pair_n


def likelihood(pair_n, a_n, b_n):
    return pair_n / (a_n * b_n)


def split(word):
    return [word[0]] + ["##" + c for c in word[1:]]


def glue(a, b):
    return a + b[2:]                                    # "hu" + "##g" -> "hug": b always starts with ##


def counts(words):
    """Piece counts and adjacent-pair counts over the corpus; words: {tuple of pieces: count}."""
    pieces, pairs = Counter(), Counter()
    for w, n in words.items():
        for p in w:
            pieces[p] += n
        for pair in zip(w, w[1:]):
            pairs[pair] += n
    return pieces, pairs


def train_stepwise(word_counts, num_merges, score, show_top=3, verbose=True):
    """Merge ``num_merges`` times by ``score``; ties broken by the pieces' text, as merge_loop does."""
    words = {tuple(split(w)): n for w, n in sorted(word_counts.items())}
    merges = []
    for step in range(num_merges):
        pieces, pairs = counts(words)
        ranked = sorted(pairs, key=lambda ab: (-score(pairs[ab], pieces[ab[0]], pieces[ab[1]]), ab))
        if not ranked:
            break
        if verbose:
            print(f"merge {step + 1}: " + ",  ".join(
                f"{a} {b}: count {pairs[a, b]}, score {score(pairs[a, b], pieces[a], pieces[b]):.4g}"
                for a, b in ranked[:show_top]))
        a, b = ranked[0]
        merges.append(glue(a, b))
        new_words = {}
        for w, n in words.items():                      # replace every (a, b), left to right
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(glue(a, b))
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = n
        words = new_words
        if verbose:
            print(f"   -> new piece {merges[-1]!r};  the corpus is now: " +
                  ", ".join(f"{' '.join(w)} ({n})" for w, n in words.items()))
    return merges


by_frequency = train_stepwise(word_counts, 4, frequency)

# %% [markdown]
# The first merge is `##u ##g` (20 times: 10 in "hug", 5 in "pug", 5 in "hugs"), then `##u ##n` (16),
# then `h ##ug` (15), exactly the docstring's example.
#
# ## Check: the readable loop and the library agree
#
# `merge_loop` updates counts incrementally instead of recounting; it must make the same merges in the
# same order. On the toy corpus and on a real text (the Zen of Python, `this.s`, which is ROT13'd):

# %%
zen = codecs.decode(this.s, "rot13").splitlines()
for name, texts, n in (("toy", toy, 4), ("Zen of Python", zen, 60)):
    wc = wordpiece.count_words(texts, BasicTokenizer())
    ours = train_stepwise(wc, n, frequency, verbose=False)
    base = list(SPECIAL_TOKENS) + wordpiece.initial_alphabet(wc)
    base += ["##" + c for c in wordpiece.initial_alphabet(wc)]
    library = wordpiece.merge_loop({w: c for w, c in sorted(wc.items())}, list(base), len(base) + n,
                                   min_frequency=1)[len(base):]
    print(f"{name}: the first merges {library[:8]} ... the same {n} merges in the same order:", ours == library)
    assert ours == library

# %% [markdown]
# (`min_frequency=1` here because the readable loop has no such cut-off; `train_wordpiece`'s default is
# 2. Where two different pairs glue to the same text, `"##a" + "##bc"` and `"##ab" + "##c"`, the library
# adds the piece once; it did not happen in these corpora, as the equality shows.)
#
# ## The other score
#
# ### Your turn: predict the likelihood trainer's first merge
#
# With `score = count(a, b) / (count(a) * count(b))`, which pair of the toy corpus is merged first?
# The counts you need: `##g` occurs 20 times (10 + 5 + 5), `##s` 5 times, `##u` 36, `##n` 16, `h` 15,
# `p` 17, `b` 4. Write the new piece it creates (a string such as `"##ug"`).

# %% nbgrader={"grade": false, "grade_id": "01b-your-turn-likelihood", "locked": false, "schema_version": 3, "solution": true, "task": false}
# first_likelihood_merge = "..."
### BEGIN SOLUTION
first_likelihood_merge = "##gs"    # 5 / (20 * 5) = 0.05 beats ##u ##g: 20 / (36 * 20) = 0.028
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "01b-check-likelihood", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
by_likelihood = train_stepwise(word_counts, 4, likelihood)
check("the first likelihood merge", first_likelihood_merge, by_likelihood[0],
      "compute count(a, b) / (count(a) count(b)) for ##g ##s, ##u ##g, ##u ##n, b ##u ... and take the largest")
print("the rare pair whose parts occur only together wins")

# %% [markdown]
# The two trainers disagree from the first merge on:

# %%
print("frequency  (HF WordPieceTrainer, minibert):", by_frequency)
print("likelihood (Google's, as the HF course describes it):", by_likelihood)

# %% [markdown]
# In the run made for this lesson, frequency built the common stems first (`##ug`, `##un`, `hug`, `pun`);
# likelihood first glued the pieces that never appear apart (`##g ##s`, only in "hugs"). At merge 2
# all six pairs tie at 1/36 (every pair holds `##u`, seen 36 times, and its other part occurs only in
# that pair), and the order of the text breaks the tie: `##ug`. Its other merges serve the 5
# occurrences of "hugs": three of its four merges (`##gs`, `##ugs`, `hugs`) build one word seen 5
# times. On a real corpus that is the docstring's warning: a
# pair of two characters seen twice each, only together, scores $2/(2 \cdot 2) = 0.5$, far above a
# frequent pair like `##in` + `##g`, so likelihood's first merges are rare oddities. On the Zen of Python:

# %%
zen_counts = wordpiece.count_words(zen, BasicTokenizer())
for name, score in (("frequency", frequency), ("likelihood", likelihood)):
    print(f"{name:10s}", train_stepwise(zen_counts, 12, score, verbose=False))

# %% [markdown]
# ## See: what the merges buy
#
# Each merge shortens the corpus. We tokenize the Zen's words with the vocabulary after $k$ merges of
# each trainer (greedy longest match, `WordpieceTokenizer`, the same for both) and plot the average
# number of pieces per word.

# %%
base = list(SPECIAL_TOKENS) + wordpiece.initial_alphabet(zen_counts)
base += ["##" + c for c in wordpiece.initial_alphabet(zen_counts)]
ks = [0, 10, 25, 50, 100, 150, 200, 300]
curves = {}
for name, score in (("frequency", frequency), ("likelihood", likelihood)):
    merges = train_stepwise(zen_counts, ks[-1], score, verbose=False)
    curves[name] = []
    for k in ks:
        wp = WordpieceTokenizer({p: i for i, p in enumerate(base + merges[:k])})
        total = sum(n * len(wp.tokenize(w)) for w, n in zen_counts.items())
        curves[name].append(total / sum(zen_counts.values()))
    print(f"{name:10s} pieces per word after {ks} merges:", [round(c, 2) for c in curves[name]])
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, ys in curves.items():
    ax.plot(ks, ys, "o-", label=name)
ax.axhline(1, ls=":", color="gray", label="every word whole")
ax.set_xlabel("merges"), ax.set_ylabel("pieces per word (Zen of Python)"), ax.legend()
ax.set_title("how fast each trainer shortens the corpus")
fig.tight_layout()

# %% [markdown]
# In that run, frequency's first twelve merges were `th ##er be ##pl ##ou is ##ter tha ##en ##es ##tter
# better` (the words the Zen repeats), likelihood's `ex ##bv obv exp of ##mp sp ##mb amb ug ambi ambig`
# (the parts of "obvious" and "ambiguity", rare words). Starting from 3.91 pieces per word, 50 merges
# brought frequency to 2.35 and likelihood to 3.31; 200 merges to 1.25 and 2.01; after 300 both are at
# about one piece per word (1.00 and 1.04). Frequency shortens the corpus faster by construction: each of
# its merges removes the largest possible number of pieces (the count of the pair). Likelihood spends its
# early merges on rare words it makes whole, which barely move the average, but it keeps pieces that
# mean something together. BERT's vocabulary has 30,522 pieces learned from billions of words, where the
# difference is in *which* 30,000 pieces survive.
#
# **Questions** (answers for the instructor below).
#
# 1. Why does the tokenizer not need the merge order, when a BPE tokenizer (GPT-2) does?
# 2. `merge_loop` recounts only the words that contain the merged pair. Why is that exact for the
#    frequency score but not enough for the likelihood score?

# %% [markdown] nbgrader={"grade": true, "grade_id": "01b-answers", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# *Instructor's answers.* 1. WordPiece tokenizes by greedy longest match against the list, which only
# needs to know which pieces exist; BPE tokenizes by replaying the merges in their learned order, so the
# order is part of its model. 2. A merge of (a, b) changes the pair counts only inside the words that
# held (a, b); but it also lowers `count(a)` and `count(b)`, which enter the likelihood score of
# *every* pair containing a or b, in words the merge never touched.
