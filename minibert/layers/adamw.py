"""The AdamW update of one parameter, the NumPy reference that ``minibert/kernels/adamw.py`` twins.

Not a layer: an optimizer step.  It sits here because ``layers/`` holds every NumPy reference a numba
twin mirrors, file for file; the optimizer around it (moments per parameter, bias corrections, the
schedule) is ``minibert/optim.py``.  Derivation: ``docs/backward/adamw.md``.
"""
import numpy as np


def adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt):
    """One AdamW update of one parameter ``p`` with gradient ``g`` and moments ``m``, ``v``, all in
    place, in ``torch.optim.AdamW``'s arithmetic.  ``step_size = lr / (1 - beta1^t)`` and
    ``bc2_sqrt = sqrt(1 - beta2^t)`` are the bias corrections of step t (the same for every parameter).
    The numba twin is ``minibert/kernels/adamw.py``."""
    if weight_decay:
        p *= 1 - lr * weight_decay
    m += (1 - beta1) * (g - m)  # == b1 m + (1 - b1) g, written as torch's lerp
    v *= beta2
    v += (1 - beta2) * g * g
    p -= step_size * m / (np.sqrt(v) / bc2_sqrt + eps)
