"""Plots where a picture beats a number: training curves, attention maps."""
import json

import numpy as np


def _pyplot():
    import matplotlib
    if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline",):
        matplotlib.use("Agg")  # files only unless a notebook asked for inline figures
    import matplotlib.pyplot as plt
    return plt


def read_log(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def smooth(values, k=20):
    values = np.asarray(values, dtype=float)
    if len(values) < k:
        return values
    kernel = np.ones(k) / k
    head = np.array([values[:i + 1].mean() for i in range(k - 1)])
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_curves(log_path, eval_history, out_path, unigram=None):
    """Training loss (MLM, NSP) and held-out accuracy over steps, into ``out_path`` (PNG)."""
    plt = _pyplot()
    rows = read_log(log_path)
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot(steps, [r["mlm_loss"] for r in rows], alpha=0.25, color="C0")
    ax.plot(steps, smooth([r["mlm_loss"] for r in rows]), color="C0", label="train MLM loss")
    if eval_history:
        ax.plot([e["step"] for e in eval_history], [e["mlm_loss"] for e in eval_history], "o-", color="C3",
                label="held-out MLM loss")
    ax.set_xlabel("step"), ax.set_title("masked LM loss")
    ax = axes[1]
    ax.plot(steps, [r["nsp_loss"] for r in rows], alpha=0.25, color="C1")
    ax.plot(steps, smooth([r["nsp_loss"] for r in rows]), color="C1", label="train NSP loss")
    if eval_history:
        ax.plot([e["step"] for e in eval_history], [e["nsp_loss"] for e in eval_history], "o-", color="C3",
                label="held-out NSP loss")
    ax.axhline(np.log(2), ls=":", color="gray", label="chance (ln 2)")
    ax.set_xlabel("step"), ax.set_title("next sentence prediction loss")
    ax = axes[2]
    if eval_history:
        es = [e["step"] for e in eval_history]
        ax.plot(es, [e["mlm_accuracy"] for e in eval_history], "o-", label="held-out MLM accuracy")
        ax.plot(es, [e["nsp_accuracy"] for e in eval_history], "s-", label="held-out NSP accuracy")
    if unigram is not None:
        ax.axhline(unigram, ls=":", color="gray", label="most-frequent-token baseline")
    ax.set_ylim(0, 1), ax.set_xlabel("step"), ax.set_title("held-out accuracy")
    lengths = [r.get("seq_len") for r in rows]
    switch = next((r["step"] for r, a, b in zip(rows[1:], lengths, lengths[1:]) if a and b and b > a), None)
    if switch is not None:  # the end of a sequence-length warmup
        for i, ax in enumerate(axes):
            ax.axvline(switch, ls="--", color="gray", lw=1,
                       label=f"{lengths[0]} -> {lengths[-1]} tokens per sequence" if i == 2 else None)
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def plot_attention(probs, tokens, ax=None, title=None):
    """Heatmap of one head's attention probabilities (T, T): row = query token, column = key."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(0.4 * len(tokens) + 2, 0.4 * len(tokens) + 1.5))
    ax.imshow(probs, cmap="viridis", vmin=0, vmax=max(1e-9, float(np.max(probs))))
    ax.set_xticks(range(len(tokens)), tokens, rotation=90)
    ax.set_yticks(range(len(tokens)), tokens)
    if title:
        ax.set_title(title)
    return ax
