# %% [markdown]
# # 10 · When you outgrow the laptop: the same recipe on PyTorch, in one process or many
#
# minibert trains BERT on one CPU with every backward pass written by hand. To train on more data or a
# bigger model you need an engine built for scale: PyTorch (autograd, fast kernels, GPUs) and
# `torch.distributed` (many processes, each with a share of every batch). `minibert pretrain --engine
# torch` moves the *whole* recipe there: the same corpus, vocabulary, batches, initial weights,
# schedule, clipping, AdamW settings, evaluation and output directory; only the model (transformers'
# `BertForPreTraining`) and the optimizer's arithmetic (`torch.optim.AdamW`) change. This lesson shows
# why the numbers agree, and what data-parallel training must get right.
#
# ## Derive: what changes
#
# * **The backward pass.** minibert's `backward()` applies the chain rule layer by layer, as derived in
#   `docs/backward/`. PyTorch records the forward as a graph and autograd walks it backwards. Same
#   function, same derivatives: the gradients agree to rounding (float64: ~1e-14).
# * **Data parallelism.** N processes each hold a full copy of the model, take a *shard* of every batch,
#   compute gradients on it, and average the gradients (an *all-reduce*) before the same AdamW step.
#   Every copy stays identical. The catch is the loss: BERT's MLM loss is a mean over the $P$ masked
#   positions of the *whole* batch,
#
# $$L_{\text{MLM}} = \frac{1}{P}\sum_{i \in \text{masked}} \text{CE}_i = \sum_r \frac{P_r}{P}\,\Big(\frac{1}{P_r}\sum_{i \in \text{shard } r} \text{CE}_i\Big),$$
#
# so shard $r$'s mean enters with weight $P_r / P$, not $1/N$. Shards of a batch hold different numbers of
# masked positions, so the plain average of the shards' means is a different loss with a different
# gradient. The NSP loss, a mean over the $B$ pairs, weights shard $r$ by $B_r / B$.

# %%
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one BLAS thread is faster
import tempfile

import numpy as np
import torch

import minibert
from minibert.gradcheck import rel_error
from minibert.training import loop, torch_engine
from minibert.training.pretrain import PretrainConfig, build_vocab, load_corpus, pretraining_data

torch.set_num_threads(1)
tmp_dir = tempfile.TemporaryDirectory(prefix="minibert-lesson10-")  # removed when the kernel stops
tmp = tmp_dir.name
cfg = PretrainConfig(out=tmp, corpus="synthetic", batch_size=8, max_seq_length=32, vocab_size=300,
                     short_seq_fraction=0, warmup_steps=3, max_steps=10, verbose=False)
docs, _ = load_corpus(cfg.corpus, cfg.seed, verbose=False)
tok = build_vocab(docs, cfg.vocab_size, os.path.join(tmp, "vocab.txt"), verbose=False)
batch = pretraining_data(cfg, docs, tok).batch(0)
print({k: v.shape for k, v in batch.items()})

# %% [markdown]
# ## Implement: minibert's weights in transformers
#
# `torch_engine.hf_model` builds transformers' `BertForPreTraining` and copies minibert's parameters
# into it: the names, shapes and `(out, in)` layouts are the same, so it is a dictionary copy. Then one
# forward and backward on each side, in float64.

# %%
model = minibert.BertForPreTraining(cfg.model_config(len(tok.vocab)), seed=0, dtype=np.float64)
hf = torch_engine.hf_model(model, torch.float64)
out = model(**batch)
model.backward()                                     # our chain rule, layer by layer
hf_out = hf(**{k: torch.from_numpy(v) for k, v in batch.items()})
hf_out.loss.backward()                               # autograd
theirs = {n: p.grad.numpy() for n, p in hf.named_parameters()}
errors = {n: rel_error(g, theirs[n]) for n, g in model.grad_state_dict().items()
          if not n.endswith("attention.self.key.bias")}  # true gradient 0: both hold rounding noise
print(f"loss: minibert {out.loss:.12f}  transformers {hf_out.loss.item():.12f}")
print(f"worst gradient rel_error over {len(errors)} parameters: {max(errors.values()):.1e} (expect < 1e-8)")
assert abs(out.loss - hf_out.loss.item()) < 1e-10 and max(errors.values()) < 1e-8

# %% [markdown]
# ## Check: two half-batches, with minibert's own gradients
#
# Before any process is started: split the batch in two halves, take the gradient of each half's own
# loss, and combine them two ways, the plain average and the count-weighted sum. Only one of them is
# the whole batch's gradient.

# %%
halves = loop.split_batch(batch, 2)
counts = [model.loss_counts(**h) for h in halves]
total = model.loss_counts(**batch)
print("masked positions per half:", [c["mlm"] for c in counts], " pairs per half:", [c["nsp"] for c in counts])


def gradient(b):
    model.zero_grad()
    model(**b)
    model.backward()
    return {n: g.copy() for n, g in model.grad_state_dict().items()}


whole, parts = gradient(batch), [gradient(h) for h in halves]
naive = {n: (parts[0][n] + parts[1][n]) / 2 for n in whole}
weighted = {n: sum(g[n] * (c["mlm"] / total["mlm"]) for g, c in zip(parts, counts)) for n in whole}
# ^ the MLM term only: the NSP term splits 4 / 4 pairs, so its weights are 1/2 either way; the word
# embeddings (the tied decoder) get both, the MLM transform gets the MLM loss alone
name = "cls.predictions.transform.dense.weight"
print(f"{name}: plain average of the halves: rel_error {rel_error(naive[name], whole[name]):.1e}")
print(f"{name}: count-weighted sum:          rel_error {rel_error(weighted[name], whole[name]):.1e} (expect < 1e-12)")
assert rel_error(weighted[name], whole[name]) < 1e-12 < rel_error(naive[name], whole[name])

# %% [markdown]
# **Your turn.** The two halves hold $P_0$ and $P_1$ masked positions. Write the weight of each half's
# *mean* MLM loss in the whole batch's MLM loss, as two numbers, using `counts` and `total`.

# %% nbgrader={"grade": false, "grade_id": "10-your-turn-weights", "locked": false, "schema_version": 3, "solution": true, "task": false}
# mlm_weights = [..., ...]
### BEGIN SOLUTION
mlm_weights = [c["mlm"] / total["mlm"] for c in counts]
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "10-check-weights", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
means = []
for h in halves:
    means.append(model(**h).mlm_loss)
print("the halves' mean MLM losses:", np.round(means, 4), " the whole batch's:", round(float(model(**batch).mlm_loss), 4))
assert abs(sum(w * m for w, m in zip(mlm_weights, means)) - model(**batch).mlm_loss) < 1e-10, \
    "weight each half's mean by its share of the masked positions: P_r / P"
print("right: P_r / P. Note that the weights sum to 1, but are not 1/2 each")

# %% [markdown]
# ## See: the torch engine, step by step beside minibert's
#
# `torch_engine.TorchTrainer` is what `--engine torch` runs: transformers' model with minibert's initial
# weights, `torch.optim.AdamW` with minibert's settings (no decay on biases and LayerNorm, betas
# (0.9, 0.999), eps 1e-6), minibert's schedule and clipping, and the loss weighted by the whole batch's
# counts. Ten steps on each engine, on the same batches, in float32 (training's precision):

# %%
m32 = minibert.BertForPreTraining(cfg.model_config(len(tok.vocab)), seed=0).train()
trainer = torch_engine.TorchTrainer(m32, cfg)        # copies m32's initial weights
opt = minibert.AdamW(m32, lr=cfg.lr, weight_decay=cfg.weight_decay)
data = pretraining_data(cfg, docs, tok)
print(f"{'step':>4s} {'minibert':>10s} {'torch':>10s} {'rel. diff':>10s}")
for step in range(cfg.max_steps):
    b = data.batch(step)
    ours, theirs_step = loop.training_step(m32, opt, b, step, cfg), trainer.step(b, step)
    print(f"{step + 1:4d} {ours.loss:10.6f} {theirs_step.loss:10.6f} {abs(ours.loss - theirs_step.loss) / ours.loss:10.1e}")
    assert abs(ours.loss - theirs_step.loss) < 2e-6 * ours.loss  # float32: a few units of the last place

# %% [markdown]
# ## Many processes
#
# `minibert pretrain --engine torch --nproc 2` starts two processes with torch's own launcher
# (`python -m torch.distributed.run --standalone --nproc-per-node 2`). Each builds the same batches
# (the data pipeline is seeded), trains on its half of every batch under `DistributedDataParallel`
# (gloo on CPUs, NCCL on GPUs) with the weighting above, and rank 0 writes the outputs.
# `tests/training/test_torch_engine.py` runs it in CI and checks that two processes give the losses and weights
# of one within float32 rounding; `docs/scaling.md` gives the throughput of both engines and of
# `--nproc 2` measured side by side.
#
# ## The path to bigger models
#
# The presets are Google's small BERTs (Turc et al. 2019). The same job moves up by changing the
# sizes; the parameter count is dominated by $L \cdot 12C^2$ (attention 4C², FFN 8C² with F = 4C) plus the
# $V \cdot C$ embeddings:

# %%
def bert_parameters(L, C, V=30522, T=512):
    """BertModel's parameters with F = 4C: embeddings, L layers, pooler."""
    F = 4 * C
    layer = 4 * (C * C + C) + 2 * C + (C * F + F) + (F * C + C) + 2 * C  # attention, LN, FFN, LN
    return V * C + T * C + 2 * C + 2 * C + L * layer + C * C + C


small = minibert.BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=512, max_position_embeddings=512)
assert bert_parameters(2, 128) == minibert.BertModel(small).num_parameters()  # the formula, checked once
for name, (L, C) in {"tiny (minibert)": (2, 128), "mini (minibert)": (4, 256), "BERT-Small": (4, 512),
                     "BERT-Medium": (8, 512), "BERT-Base": (12, 768)}.items():
    print(f"{name:16s} L={L:2d} C={C:4d}  {bert_parameters(L, C) / 1e6:6.1f} M parameters (V = 30,522)")

# %% [markdown]
# BERT-Base (110 M parameters) was pretrained on 3.3 billion words for a million steps of 256 sequences,
# 90% of the steps on sequences of 128 tokens and the last 10% on 512 (attention's cost grows with T², so
# the long sequences come only at the end, to learn the positions past 128), on 16 TPU chips for four days. On the torch engine the recipe is the same command with
# a larger `--preset`, a corpus file (`--corpus FILE`), `--device cuda` and `--nproc` = the number of GPUs.
#
# **Questions** (answers for the instructor below).
#
# 1. DDP *averages* the gradients of the N processes. What must each process multiply its loss by so that
#    the result is the whole batch's gradient, and why?
# 2. Why does every process build the same batches instead of each reading different data?
# 3. With dropout on, would `--nproc 2` still give exactly the losses of `--nproc 1`? Why?

# %% [markdown] nbgrader={"grade": true, "grade_id": "10-answers", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answers</summary>
#
# 1. By N, after dividing each loss term by the *whole batch's* count: the parts then add up to the
#    batch's loss, and DDP's average (sum / N) of N times the parts is their sum.
# 2. So that the shards of one global batch are exactly the rows the single-process run trains on at
#    that step: the result is then the single-process result, which is what the test checks. (At scale each
#    process would read its own part of the data; the sum is the same as long as the global batch is.)
# 3. No: each process draws its own dropout masks, so the random numbers differ from one process's. The
#    expected gradient is the same, but not the numbers; the equality tests run with dropout 0.
#
# </details>
