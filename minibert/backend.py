"""Which implementation of the hot kernels the model calls: the NumPy references or numba twins.

    minibert.set_backend("numpy")   # the readable references in minibert/layers
    minibert.set_backend("numba")   # jitted twins in minibert/kernels (same signatures and results)

The default is ``$MINIBERT_BACKEND`` if set, else numba (a core dependency).  The model looks kernels
up in ``backend.ops`` at call time, so switching takes effect on the next forward.

The public API: ``set_backend(name)``, ``get_backend()``, ``using(name)`` (a ``with`` block on another
backend), ``set_debug(on)``, and ``ops``, the table the model reads.  What the numba kernels need of the
process (OpenMP's threads, a child forked after them) is ``minibert.kernels``' business; this module only
switches a forked child to the references when the kernels say they cannot run there.
"""
import contextlib
import functools
import os
import sys
import types

import numpy as np

from . import layers as _reference

# compositions of kernels, not kernels: the "numpy" and "numba" tables leave them out, and the model
# then runs minibert.layers' own (whose inner kernels come from this table); a module given to
# set_backend may supply its own (the capstone: a student's encoder layer)
COMPOSITES = ("encoder_layer_forward", "encoder_layer_backward")
_OP_NAMES = [n for n in dir(_reference) if n.endswith(("_forward", "_backward", "_update")) and n not in COMPOSITES]
ops = types.SimpleNamespace()
_current = None
_debug = False
scope = ""  # which part of the model is running (set by the model; used in debug messages)


def _numba_module():
    from . import kernels  # noqa: imported lazily: compiling is only paid for when asked for
    return kernels


def _numba_ops():
    return _numba_module().OPS


def set_backend(name):
    """Switch every model to the ``"numpy"`` or ``"numba"`` kernels, or to your own layer functions.

    ``name`` may be a module (or any object) holding layer functions named as minibert's
    (``layernorm_backward``, ``linear_forward`` ...): the model then runs on the ones it defines and on
    the NumPy references for every other, so a student can train BERT on their own backward passes::

        import my_layers                   # defines, say, layernorm_forward and layernorm_backward
        minibert.set_backend(my_layers)    # the model calls my_layers' pair, the references elsewhere
        minibert.set_backend("numpy")      # back to the references

    Its name is then ``"custom:<module name>"`` (``get_backend()``).  A module may also define the
    encoder layer's pair, ``encoder_layer_forward``/``encoder_layer_backward`` (``COMPOSITES``: the
    capstone exercise); without one, the model runs ``minibert/layers/encoder_layer.py``'s on this
    backend's kernels."""
    global _current
    if not isinstance(name, str):
        own = {n: getattr(name, n) for n in _OP_NAMES + list(COMPOSITES) if callable(getattr(name, n, None))}
        if not own:
            raise ValueError(f"set_backend: {name!r} defines none of the layer functions "
                             f"({', '.join(_OP_NAMES + list(COMPOSITES))})")
        table = {n: getattr(_reference, n) for n in _OP_NAMES}
        table.update(own)
        _install(table, f"custom:{getattr(name, '__name__', type(name).__name__)}")
        return
    if name not in ("numpy", "numba"):
        raise ValueError(f"backend must be 'numpy' or 'numba' or a module of layer functions, got {name!r}")
    if name == "numba" and _forked_from_openmp:
        raise RuntimeError(_numba_module().FORKED_MESSAGE)
    table = {n: getattr(_reference, n) for n in _OP_NAMES}
    if name == "numba":
        table.update(_numba_ops())
    _install(table, name)


_custom_table = None
_forked_from_openmp = False


def _after_fork_in_child():
    """A child forked after numba's OpenMP threads ran cannot run the numba kernels
    (``minibert.kernels.after_fork_in_child`` tells): it runs the NumPy references from then on, with a
    warning, and ``set_backend("numba")`` says why it cannot.  A child started with ``spawn`` has no
    such limit."""
    global _forked_from_openmp
    kernels = sys.modules.get(__package__ + ".kernels")
    if kernels is None or not kernels.after_fork_in_child():
        return  # the kernels were never loaded, or their threads never ran
    _forked_from_openmp = True
    if _current == "numba":
        set_backend("numpy")
        import warnings
        warnings.warn("minibert: " + kernels.FORKED_MESSAGE, RuntimeWarning, stacklevel=2)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _install(table, name):
    global _current, _custom_table
    _custom_table = dict(table) if name.startswith("custom:") else None
    if _debug:
        table = {n: _checked(n, fn) for n, fn in table.items()}
    ops.__dict__.clear()
    ops.__dict__.update(table)
    _current = name


def set_debug(on=True):
    """Debug mode: every kernel checks its outputs, and the first one that produces a NaN or Inf
    raises FloatingPointError naming the kernel and the model part (e.g. ``encoder.layer.1
    backward: layernorm_backward``).  Costs a pass over every output; off by default."""
    global _debug
    _debug = bool(on)
    if _custom_table is not None:
        _install(_custom_table, _current)
    else:
        set_backend(_current)


def _finite(a):
    return not (isinstance(a, np.ndarray) and a.dtype.kind == "f") or bool(np.isfinite(a).all())


def _checked(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        outs = result if isinstance(result, tuple) else (result,)
        produced = outs[:1] if name.endswith("_forward") else outs  # a forward's second item is its cache
        if not all(_finite(a) for a in produced):
            inputs_ok = all(_finite(a) for a in args)
            raise FloatingPointError(
                f"{scope or 'model'}: {name} produced a non-finite value "
                + ("from finite inputs" if inputs_ok else "(its inputs were already non-finite)"))
        return result
    return wrapper


def get_backend():
    """The name of the active backend."""
    return _current


@contextlib.contextmanager
def using(name):
    """``with minibert.backend.using("numpy"): ...``: run the block on another backend (a name or a
    module of layer functions, as ``set_backend``), then put back the one that was active, the very
    same table of kernels (a student's module, the debug wrappers), also when the block raises."""
    saved_ops, saved = dict(vars(ops)), (_current, _custom_table)
    set_backend(name)
    try:
        yield ops
    finally:
        _restore(saved_ops, saved)


def _restore(saved_ops, saved):
    global _current, _custom_table
    ops.__dict__.clear()
    ops.__dict__.update(saved_ops)
    _current, _custom_table = saved


set_backend(os.environ.get("MINIBERT_BACKEND") or "numba")
