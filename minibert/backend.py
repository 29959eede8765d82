"""Which implementation of the hot kernels the model calls: the NumPy references or numba twins.

    minibert.set_backend("numpy")   # the readable references in minibert/layers
    minibert.set_backend("numba")   # jitted twins in minibert/kernels (same signatures and results)

The default is ``$MINIBERT_BACKEND`` if set, else numba when it imports, else numpy.  The model looks
kernels up in ``backend.ops`` at call time, so switching takes effect on the next forward.
"""
import os
import types

from . import layers as _reference

_OP_NAMES = [n for n in dir(_reference) if n.endswith(("_forward", "_backward"))]
ops = types.SimpleNamespace()
_current = None


def _numba_ops():
    from . import kernels  # noqa: imported lazily: compiling is only paid for when asked for
    return kernels.OPS


def set_backend(name):
    """Switch every model to the ``"numpy"`` or ``"numba"`` kernels."""
    global _current
    if name not in ("numpy", "numba"):
        raise ValueError(f"backend must be 'numpy' or 'numba', got {name!r}")
    table = {n: getattr(_reference, n) for n in _OP_NAMES}
    if name == "numba":
        table.update(_numba_ops())
    ops.__dict__.clear()
    ops.__dict__.update(table)
    _current = name


def get_backend():
    """The name of the active backend."""
    return _current


def _set_default():
    env = os.environ.get("MINIBERT_BACKEND")
    if env:
        return set_backend(env)
    try:
        set_backend("numba")
    except ImportError:  # numba is not installed: the NumPy references are complete on their own
        set_backend("numpy")


_set_default()
