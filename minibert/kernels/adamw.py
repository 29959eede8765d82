"""numba twin of ``minibert.layers.adamw.adamw_update``: one AdamW step of one parameter, in place.

The reference makes five passes over p, g, m, v (and allocates temporaries); the twin makes one.
Every scalar is cast to the parameter's dtype first and the arithmetic is done in the reference's
order, so in float32 as in float64 the result is bit-for-bit the reference's (and torch's).
"""
import numpy as np
from numba import prange

from ._vecmath import kernel


@kernel(fastmath=False)  # no reordering: bit-for-bit the reference
def _adamw(p, g, m, v, decay, one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps):
    for i in prange(p.size):
        pi = p[i] * decay  # p <- p (1 - lr wd)   (decay = 1 for biases and LayerNorm)
        mi = m[i] + one_minus_b1 * (g[i] - m[i])  # m <- b1 m + (1 - b1) g, as torch's lerp
        vi = v[i] * b2 + one_minus_b2 * g[i] * g[i]  # v <- b2 v + (1 - b2) g^2
        m[i] = mi
        v[i] = vi
        p[i] = pi - step_size * mi / (np.sqrt(vi) / bc2_sqrt + eps)


def adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt):
    """numba twin of ``minibert.layers.adamw.adamw_update`` (same arguments; p, m, v updated in place)."""
    if not (p.flags.c_contiguous and g.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
        from ..layers.adamw import adamw_update as reference
        return reference(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt)
    t = p.dtype.type
    decay = t(1 - lr * weight_decay) if weight_decay else t(1)
    _adamw(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), decay, t(1 - beta1), t(beta2),
           t(1 - beta2), t(step_size), t(bc2_sqrt), t(eps))
