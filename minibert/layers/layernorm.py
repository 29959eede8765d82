"""Layer normalisation over the last axis (BERT: ``eps = 1e-12``).

    mean = x.mean(-1);  rstd = 1 / sqrt(var(x) + eps);  norm = (x - mean) * rstd;  out = norm * w + b

We cache the small per-row statistics ``mean`` and ``rstd`` (B, T) and recompute the large ``norm``
(B, T, C) in the backward, as llm.c does.  Derivation: ``docs/backward/layernorm.md``.
"""
import numpy as np


def layernorm_forward(x, w, b, eps=1e-12):
    """(..., C), (C,), (C,) -> (..., C).  ``cache = (x, w, mean (...,), rstd (...,))``."""
    mean = x.mean(axis=-1)  # (...,)
    xc = x - mean[..., None]  # (..., C)
    var = (xc * xc).mean(axis=-1)  # (...,) biased variance, as in BERT and PyTorch
    rstd = 1.0 / np.sqrt(var + eps)  # (...,)
    out = xc * rstd[..., None] * w + b  # (..., C)
    return out, (x, w, mean, rstd)


def layernorm_backward(dout, cache):
    """(..., C) -> dx (..., C), dw (C,), db (C,)"""
    x, w, mean, rstd = cache
    C = x.shape[-1]
    norm = (x - mean[..., None]) * rstd[..., None]  # (..., C) recomputed, not cached
    # forward: out = norm * w + b
    db = dout.reshape(-1, C).sum(axis=0)
    dw = (dout * norm).reshape(-1, C).sum(axis=0)
    dnorm = dout * w  # (..., C)
    # forward: norm = (x - mean) * rstd, where mean and rstd both depend on every x in the row.
    # The three terms: the direct path, the path through mean, the path through rstd.
    dx = rstd[..., None] * (dnorm
                            - dnorm.mean(axis=-1, keepdims=True)
                            - norm * (dnorm * norm).mean(axis=-1, keepdims=True))
    return dx, dw, db
