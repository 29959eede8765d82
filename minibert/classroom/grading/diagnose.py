"""What a wrong array's likely mistake is, in a sentence a student understands: never the expected value.

``diagnose(got, want, upstream)`` compares the student's array with the reference's and recognises the
mistakes that leave a signature: every entry scaled by one constant (a missing ``1/sqrt(D)``, a mean for
a sum), the opposite sign, a transpose, an array of zeros, a term missing or added twice (the difference
is the upstream gradient: a residual path; or it is constant along the last axis: the mean/sum term of a
normalisation), right everywhere but a few positions (padding, ignored labels, masked keys).  It says
nothing when it recognises nothing: a guess would mislead.
"""
import numpy as np

_CLOSE = 1e-6  # how close a transformed answer must come to count as "that is the mistake"


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(1e-300, np.max(np.abs(a)) + np.max(np.abs(b))))


def diagnose(got, want, upstream=None):
    """A sentence naming the likely mistake of ``got`` (the student's array) against ``want`` (the
    reference), or "".  ``upstream``: the upstream gradient the backward received, if of ``want``'s shape.
    Both arrays float64; ``got`` of any shape (a wrong shape is said elsewhere)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if not np.isfinite(got).all():
        return "it holds NaN or inf: look for a division by zero, or exp/log of a huge value"
    if got.shape != want.shape:
        if got.ndim >= 2 and got.shape == want.swapaxes(-1, -2).shape and _rel(got.swapaxes(-1, -2), want) < _CLOSE:
            return "it is the right array transposed (its last two axes swapped)"
        return ""
    if want.size == 0 or not np.any(want):
        return ""
    if not np.any(got):
        return "it is all zeros; the right array is not"
    scale = float(np.vdot(got, want) / np.vdot(want, want))
    if _rel(got, scale * want) < _CLOSE:
        if abs(scale + 1) < 1e-6:
            return "it has the wrong sign: every entry is the right one negated"
        return (f"every entry is off by the same factor (about {scale:.4g}): a constant is missing or applied "
                "twice (a scale like 1/sqrt(D), a 1/N of a mean, a factor 2 of a square)")
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] and _rel(got.swapaxes(-1, -2), want) < _CLOSE:
        return "it is the right array transposed (its last two axes swapped)"
    diff = got - want
    if upstream is not None and np.shape(upstream) == want.shape and np.any(upstream):
        up = np.asarray(upstream, dtype=np.float64)
        for sign, what in ((1.0, "counted twice"), (-1.0, "missing")):
            if _rel(diff, sign * up) < _CLOSE:
                return (f"it differs from the right array by exactly the upstream gradient: a path that passes "
                        f"the gradient straight through (a residual, x + ...) is {what}")
    if want.ndim >= 1 and want.shape[-1] > 1 and _rel(diff, np.broadcast_to(diff.mean(axis=-1, keepdims=True), diff.shape)) < _CLOSE:
        return ("it differs from the right array by a value that is the same along the last axis: a term of the "
                "row's mean or sum is missing (as in the backward of a normalisation or a softmax)")
    off = ~np.isclose(got, want, rtol=1e-7, atol=1e-12 * max(1.0, float(np.abs(want).max())))
    if 0 < off.sum() <= max(1, off.size // 4):
        lead = np.argwhere(off)
        rows = {tuple(i[:-1]) for i in lead} if want.ndim > 1 else set()
        where = f"{len(rows)} of {int(np.prod(want.shape[:-1]))} rows" if rows else f"{int(off.sum())} of {off.size} entries"
        return (f"it is right except at {where}: look at what is special there (padding, ignored labels, "
                "masked keys, repeated ids)")
    return ""
