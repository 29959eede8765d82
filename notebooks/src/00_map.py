# %% [markdown]
# # 00 · The map: what BERT is, and how these lessons work
#
# **BERT** (Devlin et al., 2018) is a stack of Transformer *encoder* layers that reads a whole
# sentence at once, left and right context together, and is *pre-trained* on unlabelled text with two
# self-supervised tasks before being *fine-tuned* on a task:
#
# * **masked language model (MLM)**: hide ~15% of the word pieces and predict them from both sides;
# * **next sentence prediction (NSP)**: given `[CLS] A [SEP] B [SEP]`, was B the sentence after A?
#
# The project's seed article, 《BERT原理与代码实例讲解》 ("BERT: principles and code examples"), presents
# these ideas: the Transformer encoder, bidirectionality, pre-training then fine-tuning, MLM, NSP, the
# input as token + segment + position embeddings, attention and the feed-forward network.
# [`docs/concepts.md`](../docs/concepts.md) maps each of them to the code that implements it here,
# and lists where the article departs from the paper (positions are *learned* embeddings, the FFN
# uses GELU, fine-tuning updates *all* parameters, ...).
#
# minibert writes all of BERT in NumPy: every layer is a pair `out, cache = X_forward(...)` /
# `grads = X_backward(dout, cache)`, every backward is written by hand and proven by a float64
# gradient check, and the whole model is numerically transformers' `BertForPreTraining`.

# %% [markdown]
# ## How each lesson goes
#
# 1. **derive**: the maths, briefly (the full derivation of every backward is in
#    [`docs/backward/`](../docs/index.md));
# 2. **implement**: the library's own code, shown with `inspect.getsource`: what you read is what runs;
# 3. **check**: a gradient check or a parity test, printing the error next to the range it should fall in;
# 4. **see**: a plot;
# 5. **your turn**: at least one cell where you write a line, predict a value or change a setting,
#    checked by the cell after it (it says right or wrong, and where it is wrong a hint in words, never
#    the expected value), and a few questions at the end. `./run lessons` opens your copies
#    (`minibert lessons my_lessons`): every your-turn and answer cell is empty, and a layer whose
#    backward is an exercise shows its TODO instead of the answer (`notebooks/README.md` says how).
#
# | lesson | topic |
# |---|---|
# | 00 | this map |
# | 01 | tokenization and input representation: BasicTokenizer, WordPiece, `[CLS] A [SEP] B [SEP]`, segments, padding |
# | 01b | training a WordPiece vocabulary merge by merge: frequency against likelihood |
# | 02 | embeddings: word + segment + position, LayerNorm, the scatter-add backward |
# | 03 | scaled dot-product and multi-head attention on a real sentence, the backward piece by piece |
# | 04 | LayerNorm, GELU (exact vs tanh) and the feed-forward network |
# | 05 | one encoder layer: residuals, post-LN, how gradients flow through the stack |
# | 06 | the MLM and NSP heads and their losses: only masked positions, tied weights |
# | 07 | pretraining a tiny BERT: curves, fill-mask before and after, attention maps |
# | 07b | AdamW and the warmup/decay schedule, derived and plotted, and what each does to a real run |
# | 07c | why bidirectional: the causal mask, and the same model trained both ways |
# | 07d | post-LN (BERT) against pre-LN: gradient norms per layer, training at two learning rates |
# | 08 | fine-tuning: the three heads against transformers, pretrained against random start |
# | 08b | applications: token tagging, span QA, sentence pairs, each next to a baseline |
# | 09 | a real pretrained BERT (all-MiniLM-L6-v2) in minibert: the same hidden states as transformers |
# | 10 | scaling out: the same recipe on PyTorch, data-parallel training, bigger models |
# | 11 | one sentence through every operation, forward then backward, with its numbers |
#
# Then write the backward passes yourself: `minibert exercises make my_exercises` writes the eleven
# exercises (`minibert exercises list`: linear, softmax, LayerNorm, GELU, cross-entropy, embedding, a
# "backprop ninja" pass through attention, attention, AdamW, BERT's masking, and the capstone, a whole
# encoder layer's backward with BERT pretrained on it), and `minibert exercises check --dir my_exercises`
# grades them. In a course, the same exercises come as nbgrader assignments that ask for the derivation
# first (`docs/instructors_guide.md`).

# %% [markdown]
# ## The repository
#
# | where | what |
# |---|---|
# | `minibert/layers/` | one file per layer, `X_forward` / `X_backward` side by side, NumPy: the references |
# | `minibert/models/bert.py` | `BertModel`, `BertForPreTraining`: the layers assembled, with `params`/`grads` dicts |
# | `minibert/gradcheck.py` | centered-difference gradient checks, `rel_error` |
# | `minibert/data/tokenizer.py`, `wordpiece.py` | BERT's tokenizer, and WordPiece vocabulary training |
# | `minibert/data/corpus.py`, `cpython_docs.py`, `synthetic.py` | what a corpus is, and the two that ship |
# | `minibert/data/pretraining.py`, `dataset.py` | MLM/NSP training instances, and their mini-batches |
# | `minibert/optim.py`, `training/pretrain.py` | AdamW, the schedule, the training loop (`minibert pretrain`) |
# | `minibert/kernels/` | numba twins of the hot layers, tested against the references |
# | `minibert/classroom/exercises.py`, `attention_ninja.py` | the classroom exercises (the marked regions of `layers/`, plus a backprop-ninja pass) and their grader |
# | `docs/` | concepts, architecture, and the derivation of every backward |
#
# The data flow of one training step ([`docs/architecture.md`](../docs/architecture.md)):
# text → WordPiece ids → `[CLS] A [SEP] B [SEP]` with 15% masked → embeddings → L encoder layers →
# MLM head (masked positions only) and NSP head (pooled `[CLS]`) → cross-entropy → backward → AdamW.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import check  # a your-turn's check: right or wrong, never the answer
from minibert.gradcheck import numerical_gradient_at, rel_error

minibert.set_backend("numpy")  # the lessons run the readable NumPy references
print("minibert", minibert.__version__, "backend:", minibert.get_backend())

# %% [markdown]
# ## A tiny BERT, end to end
#
# A configuration with small, all-different sizes (so that a transposed axis cannot pass by
# accident), a batch of two sequences (the second padded), and one forward and backward pass.
# Shapes: `B` batch, `T` sequence, `C` hidden, `A` heads, `F` FFN size, `V` vocabulary, `P` masked positions.

# %%
cfg = minibert.BertConfig(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                          intermediate_size=80, max_position_embeddings=40,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
model = minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)
print(model)

rng = np.random.default_rng(0)
B, T = 2, 9
input_ids = rng.integers(5, cfg.vocab_size, size=(B, T))
token_type_ids = np.array([[0] * 5 + [1] * 4, [0] * 4 + [1] * 3 + [0] * 2])
attention_mask = np.array([[1] * 9, [1] * 7 + [0] * 2])
input_ids[1, 7:] = 0                                   # [PAD]
labels = np.full((B, T), -100)                         # -100: "not predicted"
labels[0, [2, 6]] = input_ids[0, [2, 6]]
labels[1, 3] = input_ids[1, 3]
next_sentence_label = np.array([0, 1])
out = model(input_ids, token_type_ids, attention_mask, labels=labels, next_sentence_label=next_sentence_label)
print(out)
print(f"MLM loss {out.mlm_loss:.4f}  (about ln V = {np.log(cfg.vocab_size):.4f} at initialisation)")
print(f"NSP loss {out.nsp_loss:.4f}  (about ln 2 = {np.log(2):.4f})")

# %%
for name, p, g in model.named_parameters()[:6]:
    print(f"{name:48s} {str(p.shape):12s}")
print("...", len(model.named_parameters()), "parameter arrays, transformers' names and layouts")

# %% [markdown]
# ### Your turn: count the embedding parameters
#
# The embeddings hold three tables, word `(V, C)`, position `(max_T, C)` and segment `(2, C)`, and a
# LayerNorm (a gain and a bias of `C` numbers each). Write how many numbers they hold in this tiny model,
# as an expression of `cfg`'s fields (`cfg.vocab_size`, `cfg.max_position_embeddings`,
# `cfg.type_vocab_size`, `cfg.hidden_size`). The next cell counts the model's own arrays.

# %% nbgrader={"grade": false, "grade_id": "00-your-turn-embedding-count", "locked": false, "schema_version": 3, "solution": true, "task": false}
# n_embeddings = ...
### BEGIN SOLUTION
n_embeddings = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * cfg.hidden_size \
    + 2 * cfg.hidden_size
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "00-check-embedding-count", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
actual = sum(p.size for name, p, g in model.named_parameters() if name.startswith("bert.embeddings."))
check("the embedding parameters", n_embeddings, actual,
      "three tables of C columns each (how many rows has each?), and LayerNorm's gain and bias")

# %% [markdown]
# ## Check: the hand-written backward against finite differences
#
# `model.backward()` adds the gradient of `out.loss` into `model.grads` (same keys as `model.params`;
# they start at zero, and `model.zero_grad()` clears them, as PyTorch's `.grad`).
# We compare a few coordinates of every parameter with centered differences
# `(L(θ+h) − L(θ−h)) / 2h`, in float64. The attention key biases are left out: their gradient is
# exactly zero (softmax ignores a shift shared by a whole row of scores; see
# [`docs/backward/attention.md`](../docs/backward/attention.md)).

# %%
model.backward()
loss = lambda: float(model(input_ids, token_type_ids, attention_mask, labels=labels,
                           next_sentence_label=next_sentence_label).loss)
exact, approx = [], []
for name, p, g in model.named_parameters():
    if name.endswith("key.bias"):
        continue
    idx = rng.choice(p.size, size=min(4, p.size), replace=False)
    exact.append(g.reshape(-1)[idx])
    approx.append(numerical_gradient_at(loss, p, idx))
exact, approx = np.concatenate(exact), np.concatenate(approx)
print(f"{len(exact)} coordinates: rel_error {rel_error(exact, approx):.1e}  (expect < 1e-7; a wrong backward gives > 1e-3)")

# %% [markdown]
# ## See: where the parameters are
#
# BERT-base has 110M parameters; our tiny model a few tens of thousands. The formula below counts
# them from the configuration; it must agree with the model we built (check), and then tells us
# where BERT-base's parameters sit: about a fifth in the word embeddings alone (30,522 x 768).

# %%
def parameter_counts(c):
    C, F, V, L = c.hidden_size, c.intermediate_size, c.vocab_size, c.num_hidden_layers
    return {
        "embeddings": (V + c.max_position_embeddings + c.type_vocab_size) * C + 2 * C,
        "attention (L layers)": L * (4 * (C * C + C) + 2 * C),
        "FFN (L layers)": L * (C * F + F + F * C + C + 2 * C),
        "pooler": C * C + C,
        "MLM head (decoder tied)": C * C + C + 2 * C + V,
        "NSP head": 2 * C + 2,
    }

assert sum(parameter_counts(cfg).values()) == model.num_parameters()
base = minibert.BertConfig()  # the defaults are BERT-base: L=12, C=768, A=12, F=3072, V=30522
counts = parameter_counts(base)
print(f"tiny: {model.num_parameters():,} parameters; BERT-base: {sum(counts.values()):,} "
      "(transformers' BertForPreTraining: 110,106,428)")

fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(counts), [v / 1e6 for v in counts.values()], color="C0")
ax.set_xlabel("millions of parameters"), ax.set_title("BERT-base, by component")
ax.invert_yaxis()
fig.tight_layout()

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** At initialisation the MLM loss is about $\ln V$ and the NSP loss about $\ln 2$. Why? What would you suspect if the first MLM loss were 2 ln V?

# %% [markdown] nbgrader={"grade": true, "grade_id": "00-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# The weights start at $\mathcal N(0, 0.02^2)$, so every logit is close to 0 and the softmax is close to uniform, $1/V$ for every word; the cross-entropy of a uniform guess is $-\ln(1/V) = \ln V$ (and $\ln 2$ for the two NSP classes). A first loss far from it means the predictions are not near uniform: a wrong initialisation (weights too large), logits summed instead of averaged over positions, or a loss that counts positions it should ignore.
#
# </details>

# %% [markdown]
# **Question 2.** The gradient check compares with centered differences $(L(\theta+h) - L(\theta-h))/2h$, $h = 10^{-5}$, in float64. Estimate the error of that difference in float64 and in float32, and say why the check must run in float64.

# %% [markdown] nbgrader={"grade": true, "grade_id": "00-question-2", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Two errors add up. Truncation: the centered difference is exact up to $O(h^2) \approx 10^{-10}$ (relative). Rounding: each loss carries a relative error $\varepsilon$, which the division by $2h$ amplifies to about $\varepsilon |L| / h$: in float64 ($\varepsilon \approx 10^{-16}$) about $10^{-11}$, in float32 ($\varepsilon \approx 6 \cdot 10^{-8}$) about $10^{-2}$. In float32 the reference is itself wrong at the percent level, so it cannot tell a right gradient from one that is a little wrong; in float64 a correct backward agrees to ~1e-10 and a wrong one stands out by many orders of magnitude.
#
# </details>

# %% [markdown]
# Next: [01 · tokenization](01_tokenization.ipynb).
