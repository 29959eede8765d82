# %% [markdown]
# # 08b · The applications: tagging, span QA, sentence pairs, and a frozen encoder
#
# Lesson 08 put one head on the encoder, a classifier on the pooled `[CLS]`. BERT's paper shows four
# kinds of task (Devlin et al., 2018, figure 4): one label per sequence, one label per *pair* of
# sequences, one label per *token*, and a *span* of the input as the answer. minibert has a built-in
# task of each kind, made from the bundled corpus (CPython's own documentation, no download), each with
# a rule you can check by reading the sentence (`minibert/training/applications.py`):
#
# | task | head | input → output | trivial baselines |
# |---|---|---|---|
# | `stdlib-code-tags` | `BertForTokenClassification` | each word piece: `code` (between double quotes) or `prose` | always `prose`; each piece's most frequent training tag |
# | `stdlib-quoted-qa` | `BertForQuestionAnswering` | `[CLS] word [SEP] sentence [SEP]` → the quoted span holding the word | the first context token; the first quoted span |
# | `stdlib-same-doc` | `BertForSequenceClassification` on a pair | `[CLS] A [SEP] B [SEP]` → same module/topic? | majority (0.5); a word-overlap threshold |
#
# Every split is by document: the test sentences come from modules and topics never trained on.
# `minibert finetune --task NAME [--freeze-encoder]` runs any of them; this lesson runs them small.

# %%
import os
import tempfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

import minibert
from minibert.classroom.lessons import show
from minibert.data.cpython_docs import load_default_corpus
from minibert.training import applications as ap
from minibert.training import finetune as ft
from minibert.training.pretrain import build_vocab

minibert.set_backend("numpy")
workdir_tmp = tempfile.TemporaryDirectory(prefix="minibert-lesson08b-")  # removed when the kernel stops
workdir = workdir_tmp.name
corpus = load_default_corpus()
tasks = {name: ap.load_application_task(name, corpus) for name in ap.APPLICATION_TASKS}
for task in tasks.values():
    print(task)

# %% [markdown]
# A small vocabulary (600 pieces, trained on the quoted sentences in a second) and a *random* 1-layer
# BERT, 48 wide: a lesson cannot wait for pretraining, so every run below starts from random weights.
# Keep that in mind when reading the figures.

# %%
quoted = [[s for s in doc if '"' in s] for doc in corpus.train]
tok = build_vocab([d for d in quoted if d], 600, os.path.join(workdir, "vocab.txt"), verbose=False)
model_dir = os.path.join(workdir, "start")
tok.save_vocabulary(model_dir)
config = minibert.BertConfig(vocab_size=len(tok.vocab), hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=96, max_position_embeddings=48)
minibert.BertForPreTraining(config, seed=0).save_pretrained(os.path.join(model_dir, "model"), tok)

# %% [markdown]
# ## Token tagging: is this piece code?
#
# CPython's documentation quotes code: `the "assert" statement`. Each piece between two quote marks is
# `code`; the quote marks themselves are not labelled (-100), nor are `[CLS]` and `[SEP]`:

# %%
pieces, tags, _ = ap.tag_words(tok, 'The simple form, "assert expression", is equivalent to')
print(list(zip(pieces, tags)))

# %% [markdown]
# The same word is code in one sentence and prose in the next, so looking the piece up is not enough:
# the model has to find the quotes around it (count them to its left: attention can). The baselines,
# on the test side, and a short run (30 test documents, 300 steps of 16 sentences):

# %%
def small(task, docs=30, pairs=300):
    import copy
    t = copy.copy(task)
    t.test_docs = task.test_docs[:docs]
    if hasattr(task, "test_pairs"):
        t.test_pairs, t.train_pairs = task.test_pairs[:pairs], task.train_pairs[:2000]
    return t

def run(name, steps=300, **kw):
    cfg = ft.FinetuneConfig(task=name, model=model_dir, out=os.path.join(workdir, name + str(kw)), max_steps=steps,
                            batch_size=16, max_seq_length=48, lr=5e-3, warmup_steps=6, eval_every=steps,
                            verbose=False, backend="numpy", **kw)
    return ft.finetune(cfg, small(tasks[name]))

tagging = run("stdlib-code-tags")
for b, v in tagging["baselines"].items():
    print(f"baseline {b:12s} code F1 {v['f1']:.3f}  token accuracy {v['token_accuracy']:.3f}")
print(f"fine-tuned ({tagging['steps']} steps) code F1 {tagging['eval']['f1']:.3f}  token accuracy "
      f"{tagging['eval']['token_accuracy']:.3f}  ({tagging['seconds']:.1f} s)")

# %% [markdown]
# ## Span QA and answer decoding
#
# The QA head gives each position a start score and an end score. The answer is the pair
# (start, end) with the largest `start_logit + end_logit` such that start ≤ end, the span is at most
# `max_answer_length` tokens, and both lie in the context (not the question, not `[CLS]`):

# %%
show(ap.best_spans)

# %% [markdown]
# **Your turn.** On these hand-made logits (positions 0-2 are `[CLS] q [SEP]`, 3-6 the context,
# 7 the final `[SEP]`), which span does `best_spans` pick with `max_answer_length=30`? Which with 1?
# Write both as `(start, end)` tuples.

# %% nbgrader={"grade": false, "grade_id": "08b-your-turn-decode", "locked": false, "schema_version": 3, "solution": true, "task": false}
start_logits = np.array([9., 8., 0., 1., 0., 5., 0., 0.])
end_logits = np.array([9., 8., 0., 4., 0., 0., 2., 0.])
### BEGIN SOLUTION
answer_long = (5, 6)    # start 5 (5) + end 6 (2) = 7: the best end (3) lies before the best start
answer_short = (3, 3)   # one token: 1 + 4 = 5 at position 3 beats 5 + 0 at position 5
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "08b-check-decode", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
context = np.array([0, 0, 0, 1, 1, 1, 1, 0], bool)
for cap, mine in ((30, answer_long), (1, answer_short)):
    s, e, score = ap.best_spans(start_logits, end_logits, context, cap)
    assert tuple(mine) == (s, e), f"max_answer_length={cap}: best_spans picks ({s}, {e}) with score {score}"
print("right: the best span, not the best start and the best end on their own")

# %% [markdown]
# The task: the question is one word that occurs in exactly one quoted span of the sentence; the answer
# is that whole span. Scored as SQuAD is: exact match and token F1 of the decoded span.

# %%
qa = run("stdlib-quoted-qa")
for b, v in qa["baselines"].items():
    print(f"baseline {b:18s} exact match {v['exact_match']:.3f}  F1 {v['f1']:.3f}")
print(f"fine-tuned ({qa['steps']} steps) exact match {qa['eval']['exact_match']:.3f}  F1 {qa['eval']['f1']:.3f}")

# %% [markdown]
# ## Sentence pairs: from the same module?
#
# `[CLS] A [SEP] B [SEP]`, with `token_type_ids` 0 for A and 1 for B; half the pairs share a document.

# %%
pair = run("stdlib-same-doc")
for b, v in pair["baselines"].items():
    print(f"baseline {b:12s} accuracy {v['accuracy']:.3f}")
print(f"fine-tuned ({pair['steps']} steps) accuracy {pair['eval']['accuracy']:.3f}")

# %% [markdown]
# ## Frozen encoder against full fine-tuning
#
# `freeze_encoder=True` trains the head alone: AdamW leaves every `bert.*` weight as loaded, and the
# encoder's backward is not even run. On the tagging task:

# %%
frozen = run("stdlib-code-tags", freeze_encoder=True)
for label, m in (("full fine-tuning", tagging), ("frozen encoder", frozen)):
    print(f"{label:17s} trains {m['trainable_parameters']:>7,} parameters: code F1 {m['eval']['f1']:.3f}, "
          f"token accuracy {m['eval']['token_accuracy']:.3f}, {m['seconds']:.1f} s")

# %% [markdown]
# ## What the run showed
#
# Figures from one run of this notebook (random 1-layer start, NumPy backend, 2-core CPU; yours should
# match to the printed digits, the seeds are fixed):
#
# * **tagging**: code F1 **0.432** after 300 steps, against 0.000 for always-`prose` and **0.263** for the
#   piece lookup (token accuracy 0.897, as high as always-`prose`, 0.897: accuracy hides the minority
#   class, which is why the headline is F1).
# * **span QA**: exact match **0.224**, F1 **0.362**: far above the first context token (0.000) but
#   *below* the first quoted span (0.418), a baseline that knows the quoting convention. 300 steps from
#   random weights learned to find a quoted span, not yet to match the question word to it.
# * **pairs**: accuracy **0.500**, chance; the word-overlap threshold gets 0.577. Deciding "same module?"
#   from scratch needs what pretraining would have taught; 300 steps from random weights learned nothing.
# * **frozen vs full** (tagging): 98 trainable parameters, code F1 **0.048**, against 50,354 and 0.432
#   for full fine-tuning (2.1 s vs 3.5 s). A *random* encoder's features do not say where the quotes
#   are; with a pretrained encoder the frozen head starts from features that may (run it with
#   `minibert finetune --model runs/pretrain --task stdlib-code-tags --freeze-encoder`).
#
# **Questions** (answers for the instructor below).
#
# 1. Why does the tagging task leave the quote marks unlabelled (-100) rather than calling them `code`?
# 2. Why must decoding forbid `end < start` instead of taking the arg-max of each logit row on its own?
# 3. Why is the frozen encoder's step cheaper than the full one, and by less than you might expect?

# %% [markdown] nbgrader={"grade": true, "grade_id": "08b-answers", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# *Instructor's answers.* 1. A quote mark is neither code nor prose; labelling it would make the task
# partly "find the `"` token", which a lookup solves, and inflate every score. 2. The two arg-maxes are
# chosen independently and can land in the wrong order (or in the question), which is no span at all;
# the joint maximum over legal pairs is the most likely *span* under the model's independent start/end
# distributions. 3. It skips the encoder's backward (about two thirds of a step's work) but still runs
# the forward and the evaluation, which the frozen run pays in full.
