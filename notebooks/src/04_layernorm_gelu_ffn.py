# %% [markdown]
# # 04 · LayerNorm, GELU (exact vs tanh) and the feed-forward network
#
# Three pieces of every encoder layer. Each: derive, the library's code, a gradient check, a plot.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minibert
from minibert.classroom.lessons import check, show  # show: the library's own source; check: right or wrong
from minibert import layers as L
from minibert.gradcheck import check_layer

minibert.set_backend("numpy")
rng = np.random.default_rng(0)

def print_errors(errors, expect=1e-7):
    for name, e in errors.items():
        print(f"  {name:10s} rel_error {e:.1e}  (expect < {expect:.0e})")

# %% [markdown]
# ## LayerNorm
#
# Per token (per row of `C` features): $\mu = \frac1C\sum_i x_i$, $\sigma^2 = \frac1C\sum_i (x_i-\mu)^2$,
# $r = 1/\sqrt{\sigma^2+\epsilon}$, $\hat x = (x - \mu)\,r$, $y = \gamma \odot \hat x + \beta$ (BERT: $\epsilon = 10^{-12}$).
#
# **Backward.** $\gamma$ and $\beta$ are shared by every token, so $\bar\gamma = \sum_{\text{rows}} \bar y \odot \hat x$
# and $\bar\beta = \sum_{\text{rows}} \bar y$. For $x$, with $g = \bar y \odot \gamma$, every $x_i$ reaches the loss
# three ways, directly, through $\mu$ and through $r$, which gives the three-term formula
#
# $$\bar x = r\Big(g - \overline{g} - \hat x\, \overline{g \odot \hat x}\Big), \qquad \overline{\,\cdot\,} = \text{mean over the row}.$$
#
# Derivation: [`docs/backward/layernorm.md`](../docs/backward/layernorm.md). The forward caches only
# `mean` and `rstd` (one number per token) and the backward recomputes $\hat x$: cheap to redo, large to keep.

# %%
show(L.layernorm_backward)

# %%
x = rng.standard_normal((2, 5, 12)) * 3 + 1.5                        # mean 1.5: exercises the mean path
gamma, beta = 1 + 0.5 * rng.standard_normal(12), rng.standard_normal(12)  # not ones and zeros: they hide bugs
errors = check_layer(lambda x, g, b: L.layernorm_forward(x, g, b, 1e-12), L.layernorm_backward,
                     [x, gamma, beta], ["dx", "dgamma", "dbeta"])
print("LayerNorm gradient check, float64:")
print_errors(errors)

# %% [markdown]
# Two properties fall out of the formula, and say what LayerNorm ignores: its output does not change
# when a constant is added to a row, or when the row is scaled. So $\bar x$ has no component along
# those directions: each row of $\bar x$ sums to 0 and is orthogonal to $\hat x$ (up to $\epsilon$,
# which makes $\|\hat x\|^2 = C\sigma^2/(\sigma^2+\epsilon)$, not exactly $C$: here $\epsilon/\sigma^2 \approx 10^{-13}$).

# %%
out, cache = L.layernorm_forward(x, gamma, beta)
dx, _, _ = L.layernorm_backward(rng.standard_normal(out.shape), cache)
norm = (x - cache[2][..., None]) * cache[3][..., None]
print(f"max |row sum of dx|  = {np.abs(dx.sum(-1)).max():.1e}  (expect ~1e-15)")
print(f"max |<dx, x_hat>|    = {np.abs((dx * norm).sum(-1)).max():.1e}  (expect ~1e-13: 0 but for eps)")

# %% [markdown]
# ## GELU, exact and tanh
#
# BERT's activation is $\text{GELU}(x) = x\,\Phi(x)$, with $\Phi$ the standard normal CDF: the input
# multiplied by the probability that a standard normal is below it. Its derivative is
# $\Phi(x) + x\,\varphi(x)$ ($\varphi$ the normal density).
# GPT-2 popularised a tanh approximation, $\frac12 x\big(1+\tanh\big(\sqrt{2/\pi}\,(x + 0.044715x^3)\big)\big)$,
# which transformers calls `"gelu_new"`; its derivative has its own formula.
# The two forms differ by up to ~5e-4: a model trained with one and run with the other is slightly
# off, and a forward of one with the backward of the other fails a gradient check.
# Derivation: [`docs/backward/gelu.md`](../docs/backward/gelu.md).

# %%
show(L.gelu_backward)

# %%
show(L.gelu_tanh_backward)

# %%
x = rng.standard_normal((2, 5, 7)) * 2.5
for name, fwd, bwd in [("exact", L.gelu_forward, L.gelu_backward), ("tanh", L.gelu_tanh_forward, L.gelu_tanh_backward)]:
    print(f"GELU {name}:")
    print_errors(check_layer(fwd, bwd, [x], ["dx"]))
mixed = check_layer(L.gelu_tanh_forward, L.gelu_backward, [x], ["dx"])["dx"]
print(f"tanh forward with the exact backward: rel_error {mixed:.1e}  (a bug: far above 1e-7)")

# %%
grid = np.linspace(-4, 4, 801)
ones = np.ones_like(grid)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
axes[0].plot(grid, L.gelu_forward(grid)[0], label="GELU exact: x Φ(x)")
axes[0].plot(grid, L.gelu_tanh_forward(grid)[0], "--", label="GELU tanh")
axes[0].plot(grid, np.maximum(grid, 0), ":", color="gray", label="ReLU")
axes[0].set_title("the activations"), axes[0].legend()
axes[1].plot(grid, L.gelu_backward(ones, grid), label="exact: Φ(x) + x φ(x)")
axes[1].plot(grid, L.gelu_tanh_backward(ones, grid), "--", label="tanh form")
axes[1].plot(grid, (grid > 0).astype(float), ":", color="gray", label="ReLU")
axes[1].set_title("their derivatives"), axes[1].legend()
axes[2].plot(grid, L.gelu_tanh_forward(grid)[0] - L.gelu_forward(grid)[0], label="tanh − exact")
axes[2].plot(grid, L.gelu_tanh_backward(ones, grid) - L.gelu_backward(ones, grid), "--", label="derivative: tanh − exact")
axes[2].set_title("the two forms differ by up to ~5e-4 (derivatives ~9e-4)"), axes[2].legend()
for ax in axes:
    ax.axhline(0, color="k", lw=0.5), ax.set_xlabel("x")
fig.tight_layout()
gap = np.abs(L.gelu_tanh_forward(grid)[0] - L.gelu_forward(grid)[0]).max()
dgap = np.abs(L.gelu_tanh_backward(ones, grid) - L.gelu_backward(ones, grid)).max()
print(f"max |difference| on [-4, 4]: {gap:.1e} (functions), {dgap:.1e} (derivatives)")

# %% [markdown]
# Unlike ReLU, GELU is smooth and slightly negative for $x < 0$ (minimum ≈ −0.17 at $x ≈ -0.75$), and
# its derivative is above 1 for every $x > 0.75$ (maximum ≈ 1.13 at $x = \sqrt 2$), approaching 1 from above.
#
# ## The feed-forward network
#
# Position-wise (the same for every token, no mixing between tokens): widen `C → F` (BERT: F = 4C),
# GELU, narrow `F → C`:  $\text{FFN}(x) = \text{GELU}(x W_1^\top + b_1) W_2^\top + b_2$.
# Its backward is the chain of the linear layer's and GELU's.

# %%
show(L.ffn_backward)

# %%
C, F = 12, 20
x = rng.standard_normal((2, 5, C))
params = [rng.standard_normal((F, C)) * 0.4, rng.standard_normal(F) * 0.2,
          rng.standard_normal((C, F)) * 0.4, rng.standard_normal(C) * 0.2]
print("FFN gradient check, float64:")
print_errors(check_layer(L.ffn_forward, L.ffn_backward, [x] + params, ["dx", "dW1", "db1", "dW2", "db2"]))

# %% [markdown]
# **See: how much gradient GELU lets through.** On LayerNorm-ed inputs (what the FFN receives in
# BERT) with BERT's initialisation, the pre-activations $h$ are small, where GELU's slope is ≈ 0.5:
# at initialisation the FFN passes about half of every gradient, never zero as a ReLU does for
# half of the units.

# %%
C, F = 128, 512
tokens = L.layernorm_forward(rng.standard_normal((4096, C)), np.ones(C), np.zeros(C))[0]
W1 = rng.standard_normal((F, C)) * 0.02                              # BERT's init: N(0, 0.02^2)
h, _ = L.linear_forward(tokens, W1, np.zeros(F))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].hist(h.reshape(-1), bins=100), axes[0].set_title("pre-activations h = x W1^T at initialisation")
axes[1].hist(L.gelu_backward(np.ones_like(h), h).reshape(-1), bins=100)
axes[1].set_title("GELU'(h): the fraction of the gradient passed")
fig.tight_layout()
print(f"std(h) = {h.std():.3f}, mean GELU'(h) = {L.gelu_backward(np.ones_like(h), h).mean():.3f}")

# %% [markdown]
# ### Your turn: change the initial scale, predict the effect
#
# Ten times BERT's initial scale, $W_1 \sim \mathcal N(0, 0.2^2)$, makes the pre-activations ten times
# wider. Predict, before running anything: the mean of GELU'(h) then (a number), and whether more units
# have a slope below 0.1 (almost no gradient passes) than at BERT's initialisation. Hint: look at
# $\text{GELU}'(x) - \tfrac12 = (\Phi(x) - \tfrac12) + x\varphi(x)$ at $-x$.

# %% nbgrader={"grade": false, "grade_id": "04-your-turn-gelu-slope", "locked": false, "schema_version": 3, "solution": true, "task": false}
# predicted_mean_slope = ...   # a number
# more_dead_units = ...        # True or False
### BEGIN SOLUTION
predicted_mean_slope = 0.5   # GELU'(x) - 1/2 is odd and h is symmetric about 0: the mean stays 1/2 at any scale
more_dead_units = True       # wider h: many more units far in the negative tail, where GELU' is about 0
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "04-check-gelu-slope", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
h_big, _ = L.linear_forward(tokens, rng.standard_normal((F, C)) * 0.2, np.zeros(F))
slope, slope_big = (L.gelu_backward(np.ones_like(a), a) for a in (h, h_big))
check("the mean slope at init 0.2", predicted_mean_slope, slope_big.mean(), "compare GELU'(x) and GELU'(-x)",
      rtol=0, atol=0.02)
check("more units with a slope below 0.1", more_dead_units, bool((slope_big < 0.1).mean() > (slope < 0.1).mean()),
      "where does a wider h put more of its units: in the flat negative tail of GELU, or not?")
print(f"init 0.02: std(h) {h.std():.2f}, mean GELU' {slope.mean():.3f}, slope < 0.1 for {(slope < 0.1).mean():.1%}")
print(f"init 0.2:  std(h) {h_big.std():.2f}, mean GELU' {slope_big.mean():.3f}, slope < 0.1 for {(slope_big < 0.1).mean():.1%}")

# %% [markdown]
# ## Questions
#
# Write your answer in the cell below each question.

# %% [markdown]
# **Question 1.** LayerNorm caches only `mean` and `rstd` and recomputes $\hat x$ in the backward. For BERT-base (B = 32, T = 512, C = 768, 25 LayerNorms in the encoder and embeddings), how much float32 memory does that save, and what does it cost?

# %% [markdown] nbgrader={"grade": true, "grade_id": "04-question-1", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Caching $\hat x$ would keep $B T C = 12.6$M numbers per LayerNorm, 50 MB in float32, about 1.26 GB for 25 of them; `mean` and `rstd` are $2BT = 32{,}768$ numbers (131 kB) each. The price is recomputing $\hat x = (x - \mu) r$ in the backward: one subtraction and one multiplication per element, cheap next to the matrix products (and $x$ is kept anyway, as the input of the layer).
#
# </details>

# %% [markdown]
# **Question 2.** A checkpoint trained with the exact GELU is run with the tanh form (`hidden_act="gelu_new"`). What changes? And what does the mixed gradient check above (tanh forward, exact backward) tell you?

# %% [markdown] nbgrader={"grade": true, "grade_id": "04-question-2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# <details><summary>Instructor's answer</summary>
#
# Each activation moves by at most about 5e-4, so the model still works, but it is no longer the function that was trained: parity with transformers at tight tolerances fails, and the error compounds a little through the layers. The mixed check's relative error is far above 1e-7: a backward that is not the derivative of the forward that ran is a real bug, however close the two forms look.
#
# </details>

# %% [markdown]
# Next: [05 · one encoder layer](05_encoder_layer.ipynb): attention, FFN, residuals and LayerNorm together.
