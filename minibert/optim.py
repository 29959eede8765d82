"""AdamW (as ``torch.optim.AdamW``), the BERT learning-rate schedule, and gradient clipping.

The optimizer is separate from the model: a backward pass only computes gradients; ``step()`` is the
only place parameters change.
"""
import math

import numpy as np

from . import backend
from .layers.adamw import adamw_update  # noqa: F401  (the reference update AdamW's backend op defaults to)


def no_weight_decay(name):
    """BERT does not decay biases and LayerNorm parameters."""
    return name.endswith("bias") or "LayerNorm" in name


class AdamW:
    """Adam with decoupled weight decay, the update of ``torch.optim.AdamW`` (same formula and
    order of operations; the two agree to rounding, ~1e-16 relative per step in float64):

        p <- p - lr * wd * p                          (skipped for biases and LayerNorm)
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    ``opt.lr`` may be changed between steps (the schedule does).  ``trainable(name) -> bool`` (default:
    every parameter) picks the parameters ``step()`` updates; the others are left exactly as they are
    (no update, no weight decay): fine-tuning with a frozen encoder passes
    ``lambda n: not n.startswith("bert.")``.
    """

    def __init__(self, model, lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, trainable=None):
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if not eps > 0 or not weight_decay >= 0:
            raise ValueError(f"eps must be > 0 and weight_decay >= 0, got eps={eps}, weight_decay={weight_decay}")
        self.model = model
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.trainable = trainable
        self.t = 0
        self.m = {n: np.zeros_like(p) for n, p, _ in model.named_parameters()}
        self.v = {n: np.zeros_like(p) for n, p, _ in model.named_parameters()}

    def __repr__(self):
        return (f"AdamW(lr={self.lr:.3g}, betas={self.betas}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}, step={self.t})")

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1 ** self.t)
        bc2_sqrt = math.sqrt(1 - b2 ** self.t)
        update = backend.ops.adamw_update  # the reference (layers/adamw.py) or its numba twin
        for name, p, g in self.model.named_parameters():
            if self.trainable is not None and not self.trainable(name):
                continue  # frozen: not even weight decay touches it
            wd = 0.0 if no_weight_decay(name) else self.weight_decay
            update(p, g, self.m[name], self.v[name], self.lr, b1, b2, self.eps, wd, step_size, bc2_sqrt)

    def state_dict(self):
        """Arrays and numbers only (saved with the checkpoint)."""
        return {"t": self.t, "lr": self.lr, "m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state):
        for key in ("m", "v"):
            missing = set(getattr(self, key)) - set(state[key])
            if missing:
                raise ValueError(f"optimizer state is missing {key} for {sorted(missing)}")
        for key in ("m", "v"):
            for n, arr in getattr(self, key).items():
                arr[...] = state[key][n]
        self.t, self.lr = int(state["t"]), float(state["lr"])


def linear_warmup_decay(step, max_steps, warmup_steps, peak_lr):
    """BERT's schedule: linear warmup to ``peak_lr``, then linear decay towards 0 at ``max_steps``.

    ``step`` counts updates from 0.  Warmup: update ``s < W`` uses ``peak * (s + 1) / W``, so the
    first update already moves (transformers' schedule starts at exactly 0) and update ``W - 1`` uses
    the peak.  Decay: update ``s >= W`` uses ``peak * (max_steps - s) / (max_steps - W + 1)``, so the
    peak is used once and the last update (``max_steps - 1``) still has ``peak / (max_steps - W + 1)``.
    """
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    return peak_lr * max(0.0, (max_steps - step) / (max_steps - warmup_steps + 1))


def clip_grad_norm(model, max_norm):
    """Scale all gradients so their global L2 norm is at most ``max_norm``; returns the norm before
    clipping (as ``torch.nn.utils.clip_grad_norm_``)."""
    grads = [g for _, _, g in model.named_parameters()]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= coef
    return total
