# %% [markdown]
# # 07b · The optimiser: AdamW and the warmup/decay schedule
#
# Lesson 07 trained with `AdamW` and `linear_warmup_decay` and did not look inside. Here we do: the two
# moments, the bias correction, the decoupled weight decay, the schedule, each derived, shown in the
# library's code, checked, and plotted; then what they do to a real (tiny) training run. The full
# derivation, with PyTorch's and google-research/bert's conventions side by side, is
# [`docs/backward/adamw.md`](../docs/backward/adamw.md).
#
# **Derive.** For one parameter array $\theta$ with gradient $g_t$ at step $t = 1, 2, \dots$:
#
# $$
# m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad m_0 = v_0 = 0,
# $$
#
# running averages of the gradient and of its square (elementwise). Unrolled,
# $m_t = (1-\beta_1)\sum_{k \le t} \beta_1^{t-k} g_k$; for a constant gradient that is $(1-\beta_1^t)\,g$, too
# small at first because of the zero start. **Bias correction** divides it out:
# $\hat m_t = m_t / (1-\beta_1^t)$, $\hat v_t = v_t / (1-\beta_2^t)$. The **Adam step** is
# $\theta \leftarrow \theta - \eta\, \hat m_t / (\sqrt{\hat v_t} + \varepsilon)$: per coordinate, the gradient
# divided by its own typical size, so every weight moves by about $\eta$ whatever the scale of its
# gradient. **Decoupled weight decay** (AdamW) shrinks the weights directly, $\theta \leftarrow \theta(1 - \eta\lambda)$,
# instead of adding $\lambda\theta$ to the gradient (where it would be divided by $\sqrt{\hat v}$ too, so
# weights with large gradients would hardly be decayed). BERT decays neither biases nor LayerNorm
# parameters.

# %%
import os
import random
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np

import minibert
from minibert.classroom.lessons import check, show
from minibert.data.synthetic import synthetic_corpus
from minibert.data.pretraining import create_masked_lm_predictions, vocab_words_for_replacement
from minibert.layers.adamw import adamw_update
from minibert.optim import AdamW, clip_grad_norm, linear_warmup_decay, no_weight_decay
from minibert.training.plots import smooth

minibert.set_backend("numpy")
workdir_tmp = tempfile.TemporaryDirectory(prefix="minibert-lesson07b-")  # removed when the kernel stops
workdir = workdir_tmp.name

# %% [markdown]
# ## Implement
#
# The update of one parameter (`minibert/layers/adamw.py`), in PyTorch's arithmetic: the bias
# corrections arrive folded into `step_size = lr / (1 - b1^t)` and `bc2_sqrt = sqrt(1 - b2^t)`.

# %%
show(adamw_update, "if weight_decay", "p -= step_size")

# %% [markdown]
# The optimiser around it (`minibert/optim.py`) computes those two numbers once per step and skips the
# decay for biases and LayerNorms:

# %%
show(AdamW.step)

# %%
show(no_weight_decay)

# %% [markdown]
# ## See: bias correction
#
# A constant gradient $g = 1$, $\beta_1 = 0.9$, $\beta_2 = 0.999$. Without the correction, $m_t$ starts at
# $0.1$ and $\sqrt{v_t}$ at $\sqrt{0.001} = 0.032$: their ratio, the step, starts at $3.2\,\eta$, *rises* to
# $6.6\,\eta$ near step 12 ($m_t$ catches up in tens of steps, $v_t$ in thousands), is still $4\,\eta$ at
# step 60 and takes thousands of steps to settle at $\eta$. With it, the step is $\eta$ from
# the first update.

# %%
b1, b2, eps = 0.9, 0.999, 1e-6
t = np.arange(1, 5001)
m = 1 - b1 ** t                     # m_t for g = 1
v = 1 - b2 ** t                     # v_t for g = 1
fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
axes[0].plot(t[:60], m[:60], label="$m_t$"), axes[0].plot(t[:60], v[:60], label="$v_t$")
axes[0].axhline(1, ls=":", color="gray", label="the true mean of $g$ and $g^2$")
axes[0].set_title("moments of a constant gradient g = 1"), axes[0].set_xlabel("step t"), axes[0].legend()
axes[1].plot(t, m / (np.sqrt(v) + eps), label="uncorrected  $m_t / (\\sqrt{v_t} + \\epsilon)$")
axes[1].plot(t, (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), label="corrected  $\\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)$")
axes[1].set_xscale("log"), axes[1].set_title("step size, in units of the learning rate"), axes[1].set_xlabel("step t")
axes[1].legend()
fig.tight_layout()
print(f"uncorrected step at t=1: {m[0] / (np.sqrt(v[0]) + eps):.3f} lr, t=12: {m[11] / (np.sqrt(v[11]) + eps):.3f} lr, "
      f"t=60: {m[59] / (np.sqrt(v[59]) + eps):.3f} lr, t=1000: {m[999] / (np.sqrt(v[999]) + eps):.3f} lr")

# %% [markdown]
# ### Your turn: the first step
#
# A fresh `AdamW(lr=1e-3, weight_decay=0)` takes its first step on three weights, all 0, whose gradients
# are `1e-4`, `1.0` and `-1e3`. Predict the three weights after the step (to within 2%).

# %% nbgrader={"grade": false, "grade_id": "07b-your-turn-first-step", "locked": false, "schema_version": 3, "solution": true, "task": false}
# after_first_step = np.array([..., ..., ...])
### BEGIN SOLUTION
after_first_step = np.array([-1e-3, -1e-3, 1e-3])   # m^ = g, sqrt(v^) = |g|: each moves by lr against its sign
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "07b-check-first-step", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
p, g = np.zeros(3), np.array([1e-4, 1.0, -1e3])
mom, var = np.zeros(3), np.zeros(3)
adamw_update(p, g, mom, var, lr=1e-3, beta1=b1, beta2=b2, eps=eps, weight_decay=0.0,
             step_size=1e-3 / (1 - b1), bc2_sqrt=np.sqrt(1 - b2))
check("the weights after the first step", after_first_step, p,
      "after bias correction, what are m^_1 and sqrt(v^_1) in terms of g?", rtol=0.02, atol=0)
print("the first step moves every weight by lr (minus a hair from eps for the smallest gradient), "
      "whatever the size of its gradient")

# %% [markdown]
# ## Check
#
# `tests/models/test_parity_transformers.py::test_adamw_tracks_torch_adamw_for_ten_steps_with_a_changing_lr`
# runs minibert's AdamW and `torch.optim.AdamW` side by side for ten steps on a BERT in float64 (decay and
# no-decay groups split by `no_weight_decay`) and finds every parameter within `1e-8`. Here, a smaller
# check that needs no torch: ten steps of `adamw_update` on random gradients against the textbook
# formulas written out (moments, $\hat m$, $\hat v$, the step, the decay first).

# %%
rng = np.random.default_rng(0)
p_lib = rng.standard_normal(6)
p_ref, m_ref, v_ref = p_lib.copy(), np.zeros(6), np.zeros(6)
m_lib, v_lib = np.zeros(6), np.zeros(6)
lr, wd = 1e-2, 0.1
for step in range(1, 11):
    g = rng.standard_normal(6)
    adamw_update(p_lib, g, m_lib, v_lib, lr, b1, b2, eps, wd, lr / (1 - b1 ** step), np.sqrt(1 - b2 ** step))
    p_ref = p_ref * (1 - lr * wd)                                   # decoupled decay, before the moments
    m_ref = b1 * m_ref + (1 - b1) * g
    v_ref = b2 * v_ref + (1 - b2) * g ** 2
    p_ref = p_ref - lr * (m_ref / (1 - b1 ** step)) / (np.sqrt(v_ref / (1 - b2 ** step)) + eps)
err = np.abs(p_lib - p_ref).max() / np.abs(p_ref).max()
print(f"relative difference after 10 steps: {err:.1e}  (expect < 1e-14: the same formula in another order)")
assert err < 1e-14

# %% [markdown]
# ## See: decoupled decay versus L2
#
# Two weights, both 1.0, with gradients of very different sizes ($10^{-3}$ and $10$) that average to zero
# (they alternate in sign), so only the decay moves them on average. AdamW (decoupled, $\lambda = 0.1$)
# against Adam with the same $\lambda$ added to the gradient as L2, 500 steps at `lr=1e-2`:

# %%
def run(decoupled, steps=500, lr=1e-2, lam=0.1):
    p, m, v = np.ones(2), np.zeros(2), np.zeros(2)
    scale = np.array([1e-3, 10.0])
    for step in range(1, steps + 1):
        g = scale * (1 if step % 2 else -1)
        if not decoupled:
            g = g + lam * p                                           # L2: the decay goes through the gradient
        adamw_update(p, g, m, v, lr, b1, b2, eps, lam if decoupled else 0.0, lr / (1 - b1 ** step),
                     np.sqrt(1 - b2 ** step))
    return p


adamw_w, l2_w = run(True), run(False)
print(f"AdamW (decoupled):  small-gradient weight {adamw_w[0]:.3f}, large-gradient weight {adamw_w[1]:.3f}")
print(f"Adam + L2:          small-gradient weight {l2_w[0]:.3f}, large-gradient weight {l2_w[1]:.3f}")

# %% [markdown]
# In that run AdamW left both weights at 0.596: the same factor, about $(1 - \eta\lambda)^{500} =
# 0.999^{500} = 0.61$ (the alternating gradients cancel, up to a wobble of about $\eta$). Adam + L2 left
# the small-gradient weight at 0.000 and the large-gradient one at 0.935.
# With L2, the decay term is divided by $\sqrt{\hat v}$ like the rest of the gradient: the weight with tiny
# gradients is pulled to 0 at full Adam speed, the one with large gradients is hardly decayed at all.
# That asymmetry is what Loshchilov and Hutter removed.
#
# ## The schedule
#
# Linear warmup over $W$ updates, then linear decay to (almost) 0 at $S$ (`linear_warmup_decay`; the
# docstring and `docs/backward/adamw.md` compare it with transformers' and google-research/bert's):

# %%
show(linear_warmup_decay)

# %%
S, W, peak = 200, 20, 1e-2
lrs = [linear_warmup_decay(s, S, W, peak) for s in range(S)]
print(f"first update {lrs[0]:.1e}, peak {max(lrs):.1e} at update {lrs.index(max(lrs))} (only there), "
      f"update {W} {lrs[W]:.2e}, last update {lrs[-1]:.1e}")
assert lrs.count(peak) == 1 and lrs.index(peak) == W - 1 and lrs[-1] > 0

# %% [markdown]
# ## What it does to a real training curve
#
# The tiny masked LM of lesson 07c (one-topic synthetic language, one sentence per row, 15% masked, a
# 1-layer BERT with C=32), trained for $S = 200$ steps at a peak of `1e-2` four ways, everything else
# equal (same initial weights, same batches and masks):
#
# * **warmup + decay** (BERT's recipe, $W = 20$);
# * **constant** learning rate, no warmup, no decay;
# * **warmup + decay, no bias correction** (google-research/bert's own optimizer has none);
# * **no warmup**, decay only ($W = 1$: full rate from the first update).

# %%
corpus = synthetic_corpus(400, seed=0, num_topics=1)
minibert.train_wordpiece((s for doc in corpus.train for s in doc), vocab_size=300,
                         out_file=os.path.join(workdir, "vocab.txt"))
tok = minibert.BertTokenizer(os.path.join(workdir, "vocab.txt"))
sentences = [s for doc in corpus.train for s in doc]
T, replacements = 12, vocab_words_for_replacement(tok.vocab)


def masked_batch(batch_sentences, rng):
    ids = np.zeros((len(batch_sentences), T), np.int64)
    labels = np.full((len(batch_sentences), T), -100, np.int64)
    for r, s in enumerate(batch_sentences):
        tokens = ["[CLS]"] + tok.tokenize(s) + ["[SEP]"]
        out, positions, words = create_masked_lm_predictions(tokens, 0.15, 20, replacements, rng)
        ids[r, :len(out)] = tok.convert_tokens_to_ids(out)
        labels[r, positions] = tok.convert_tokens_to_ids(words)
    return dict(input_ids=ids, attention_mask=(ids != 0).astype(np.int64), labels=labels)


class AdamWithoutBiasCorrection(AdamW):
    """google-research/bert's AdamWeightDecayOptimizer: the same update with step_size = lr and no
    correction of v (its early steps are larger: 3.2x at step 1, 6.6x near step 12, 4x at step 60; the plot
    above)."""

    def step(self):
        self.t += 1
        for name, p, g in self.model.named_parameters():
            wd = 0.0 if no_weight_decay(name) else self.weight_decay
            adamw_update(p, g, self.m[name], self.v[name], self.lr, *self.betas, self.eps, wd, self.lr, 1.0)


def train(schedule, optimizer=AdamW, steps=S, batch_size=32):
    cfg = minibert.BertConfig(vocab_size=len(tok.vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=128, max_position_embeddings=T, hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
    model = minibert.BertForPreTraining(cfg, seed=0).train()
    opt = optimizer(model, lr=peak, weight_decay=0.01)
    rng, order = random.Random(0), np.random.default_rng(0)
    losses = []
    for step in range(steps):
        batch = masked_batch([sentences[i] for i in order.integers(0, len(sentences), batch_size)], rng)
        model.zero_grad()
        out = model(**batch)
        model.backward()
        clip_grad_norm(model, 1.0)
        opt.lr = schedule(step)
        opt.step()
        losses.append(float(out.mlm_loss))
    return np.array(losses)


variants = {
    "warmup + decay": (lambda s: linear_warmup_decay(s, S, W, peak), AdamW),
    "constant lr": (lambda s: peak, AdamW),
    "warmup + decay, no bias correction": (lambda s: linear_warmup_decay(s, S, W, peak), AdamWithoutBiasCorrection),
    "no warmup, decay": (lambda s: linear_warmup_decay(s, S, 1, peak), AdamW),
}
curves = {}
for name, (schedule, optimizer) in variants.items():
    start = time.perf_counter()
    curves[name] = train(schedule, optimizer)
    c = curves[name]
    print(f"{name:36s} {time.perf_counter() - start:3.0f} s   MLM loss: steps 1-10 {c[:10].mean():.3f}, "
          f"41-60 {c[40:60].mean():.3f}, 181-200 {c[-20:].mean():.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 3.8))
for name, (schedule, _) in variants.items():
    axes[0].plot([schedule(s) for s in range(S)], label=name)
    axes[1].plot(smooth(curves[name]), label=name)
axes[0].set_title("learning rate"), axes[0].set_xlabel("step"), axes[0].legend(fontsize=8)
axes[1].axhline(np.log(len(tok.vocab)), ls=":", color="gray", label="uniform guess, ln V")
axes[1].set_title("train MLM loss (smoothed)"), axes[1].set_xlabel("step"), axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# In the run made for this lesson (NumPy backend, one OpenBLAS thread, 8 to 10 s per run on a shared
# 2-core machine; the whole notebook used 18 s of CPU), the mean train MLM loss was:
#
# | variant | steps 1–10 | steps 41–60 | steps 181–200 |
# |---|---|---|---|
# | warmup + decay | 4.424 | 1.239 | 0.949 |
# | constant lr | 3.542 | 1.209 | 0.997 |
# | warmup + decay, no bias correction | 3.682 | **2.075** | 1.018 |
# | no warmup, decay | 3.551 | 1.241 | 0.948 |
#
# What it shows, and what it does not. Warmup *costs* at the start (4.42 against 3.54 over the first ten
# steps: those updates are small on purpose), and on a 1-layer model this small it buys nothing
# measurable: without warmup the run ends at the same loss (0.948 against 0.949). Warmup is insurance for
# deep post-LN models and large learning rates (`docs/pretraining.md` records a tiny-preset run that learned no
# position at all at `3e-3`), not a speed-up. The decay helps a little at the end (0.949 against 0.997
# at a constant rate). Removing the bias correction hurts most in the middle of the run (2.075 against
# 1.239 at steps 41–60): its early steps are several times the intended size (3.2x at step 1, 6.6x near
# step 12, still 4x at step 60: the plot of the bias correction above), a shock that this model took many
# steps to recover from. These are single runs of one seed;
# change `seed=0` in `train` or `peak` and watch which differences survive.
#
# **Questions** (answers for the instructor below).
#
# 1. Why does warmup matter more for Adam than for plain SGD?
# 2. With `lr=1e-3` and `weight_decay=0.01`, by what factor does AdamW shrink a weight per step, and
#    after 10,000 steps if its gradient were zero?
# 3. Why are LayerNorm gains not decayed?

# %% [markdown] nbgrader={"grade": true, "grade_id": "07b-answers", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# *Instructor's answers.* 1. Adam's step is about $\eta$ per weight whatever the gradient, and in the
# first steps $\hat v$ is estimated from one or two gradients, so the direction is noisy while every
# weight still moves by the full rate; warmup keeps those early, badly-estimated steps small (and
# post-LN Transformers are known to need it, Xiong et al. 2020). SGD's step is proportional to the
# gradient, which is small for most weights. 2. $1 - 10^{-5}$ per step; $(1 - 10^{-5})^{10^4} \approx
# e^{-0.1} = 0.905$. 3. A gain multiplies the whole normalised signal; decaying it towards 0 shrinks the
# layer's output rather than regularising a direction, which no one wants (and BERT does not).
