"""Numerical gradient checking: the proof that a hand-written backward is right.

Centered differences, ``(f(x + h) - f(x - h)) / 2h``, have error O(h^2): with ``h = 1e-5`` in float64
the truncation error is ~1e-10 and the rounding error ~1e-16 / 1e-5 = 1e-11, so a correct backward
agrees to a relative error of about 1e-8 or better, and a wrong one is off by 1e-2 or more.

We check ``sum(f(x) * dout)`` for a *random* upstream gradient ``dout``: with ``dout`` all ones, many
bugs hide (e.g. the gradient of ``sum(softmax(x))`` is exactly zero whatever the backward does).

Always check in float64: float32 has only ~7 digits, so its differences are dominated by rounding.

Each file of ``minibert/layers`` ends with its table of checks, ``gradcheck_cases(rng)``, a list of
``GradCase``; ``check_cases`` runs one (as the file's ``test_NAME()`` and tests/layers/test_layers_gradcheck.py
do), and the exercise grader (``minibert/classroom/grader.py``) runs the same table on a student's code.
"""
import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

GRAD_TOL = 1e-7   # a correct float64 gradient lands at 1e-9..1e-12, a wrong one at 1e-3 or worse
ZERO_TOL = 1e-10  # |gradient| below this is the exact zero some gradients are (attention's key bias)


def rel_error(a, b):
    """max|a - b| / max(1e-8, max(|a| + |b|)): one number for a whole array.

    Relative to the largest entry, so a tiny entry does not blow up the ratio, while any wrong entry
    of the size that matters does.  Expect < 1e-7 for a correct float64 layer gradient.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def numerical_gradient(f, x, dout=None, h=1e-5):
    """d sum(f() * dout) / dx by centered differences, perturbing ``x`` in place (it is restored).

    ``f`` takes no argument and recomputes its output from the current contents of ``x``; ``dout``
    is the upstream gradient (same shape as ``f()``, or None when ``f`` returns a scalar).
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical_gradient needs float64 arrays, got {x.dtype}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        diff = plus - minus if dout is None else np.sum((plus - minus) * dout)
        grad[i] = diff / (2 * h)
        it.iternext()
    return grad


def numerical_gradient_at(f, x, indices, h=1e-5):
    """Centered-difference gradient of the scalar ``f()`` at a few flat ``indices`` of ``x``.

    For whole models, where checking every coordinate would take too long.
    """
    flat = x.reshape(-1)  # a view: writing to it perturbs x
    out = np.empty(len(indices))
    for n, i in enumerate(indices):
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        out[n] = (plus - minus) / (2 * h)
    return out


def _analytic_gradients(forward, backward, inputs, seed):
    """Run ``forward`` then ``backward`` with a random upstream gradient ``dout`` (seeded):
    ``(dout, grads as a tuple, positions of the float inputs)``."""
    out, cache = forward(*inputs)
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    grads = backward(dout, cache)
    float_pos = [i for i, x in enumerate(inputs) if isinstance(x, np.ndarray) and x.dtype.kind == "f"]
    return dout, grads if isinstance(grads, tuple) else (grads,), float_pos


def check_layer(forward, backward, inputs, names=None, seed=0, h=1e-5, verbose=False):
    """Gradient-check a layer pair on every float input; returns {name: rel_error}.

    ``forward(*inputs) -> (out, cache)`` and ``backward(dout, cache) -> grads`` with one gradient
    per entry of ``names`` (default: every float input, in order).  Integer inputs (ids, labels) and
    ``None`` are passed through untouched.
    """
    inputs = list(inputs)
    dout, grads, float_pos = _analytic_gradients(forward, backward, inputs, seed)
    names = names or [f"input{i}" for i in float_pos]
    errors = {}
    for name, pos, g in zip(names, float_pos, grads):
        num = numerical_gradient(lambda: forward(*inputs)[0], inputs[pos], dout, h)
        errors[name] = rel_error(g, num)
        if verbose:
            print(report_line(name, g, num))
    return errors


def report_line(name, exact, approx):
    """One line of the backprop-ninja table: ``name | exact | approx | maxdiff``."""
    exact_ok = np.allclose(exact, approx, rtol=0, atol=0)
    close = np.allclose(exact, approx, rtol=1e-5, atol=1e-8)
    maxdiff = float(np.max(np.abs(np.asarray(exact) - np.asarray(approx)))) if np.size(exact) else 0.0
    return f"{name:24s} | exact: {str(exact_ok):5s} | approx: {str(close):5s} | maxdiff: {maxdiff:.2e}"


def perturb_parameters(model, seed=1):
    """Give every parameter of ``model`` a non-trivial value before a gradient check; returns the model.

    At BERT's initialisation (weights ~0.02, LayerNorm ones/zeros, biases zero) two things blunt a
    check: ones and zeros hide bugs (a gain of 1 makes a missing ``* w`` invisible), and the gradients
    of deep parameters are ~1e-5, where the ~1e-11 rounding of a centered difference is already a
    relative error of 1e-6.  So: LayerNorm gains ``1 + 0.3 N(0,1)``, biases ``0.2 N(0,1)``, weights
    ``0.15 N(0,1)``, wide enough that GELU and tanh leave their linear regime.
    """
    rng = np.random.default_rng(seed)
    for name, p, _ in model.named_parameters():
        if "LayerNorm.weight" in name:
            p[...] = 1 + 0.3 * rng.standard_normal(p.shape)
        elif name.endswith("bias"):
            p[...] = 0.2 * rng.standard_normal(p.shape)
        else:
            p[...] = 0.15 * rng.standard_normal(p.shape)
    return model


def check_gradients(forward, backward, inputs, names, zero=(), tol=GRAD_TOL, seed=0):
    """Gradient-check ``forward``/``backward`` in float64 on every float input (as ``check_layer``),
    print each relative error next to the range it should fall in, and raise AssertionError naming
    the gradients that are off; returns {name: rel_error}.

    ``zero``: gradients that are exactly 0 for every input (attention's key bias).  Their relative
    error would compare two rounding noises, so they are checked to be below ``ZERO_TOL`` instead.
    """
    inputs = list(inputs)
    dout, grads, float_pos = _analytic_gradients(forward, backward, inputs, seed)
    assert len(grads) == len(names), (f"the backward returned {len(grads)} gradient(s), expected "
                                      f"{len(names)}: {', '.join(names)}")
    errors, wrong = {}, []
    for name, pos, g in zip(names, float_pos, grads):
        if name in zero:
            big = float(np.max(np.abs(g))) if np.size(g) else 0.0
            ok = big < ZERO_TOL
            print(f"  {name:12s} max|{name}| {big:.1e}  (exactly 0 for every input: expect < {ZERO_TOL:.0e})  "
                  f"{'ok' if ok else 'WRONG'}")
            if not ok:
                wrong.append(f"{name} (max|{name}| {big:.1e}, should be 0)")
            continue
        num = numerical_gradient(lambda: forward(*inputs)[0], inputs[pos], dout)
        e = errors[name] = rel_error(g, num)
        ok = e < tol
        print(f"  {name:12s} rel_error {e:.1e}  (expect < {tol:.0e}: 1e-12..1e-8 when right)  "
              f"{'ok' if ok else 'WRONG'}")
        if not ok:
            wrong.append(f"{name} ({e:.1e})")
    assert not wrong, f"gradients off: {', '.join(wrong)}; expected every rel_error < {tol:.0e}"
    return errors


# ------------------------------------------------------------------------------------------------
# The table of gradient checks at the bottom of each layer file
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GradCase:
    """One gradient check of a layer.  Each file of ``minibert/layers`` ends with
    ``gradcheck_cases(rng)``, a list of these, which three readers run: the file's own ``test_NAME()``,
    ``tests/layers/test_layers_gradcheck.py``, and the exercise grader (which calls the student's functions
    of the same names on the same inputs).

    The check calls ``out, cache = forward(**inputs, **args)``, then ``backward(dout, cache)`` with a
    random ``dout``; the backward returns one gradient per entry of ``inputs``, in order, named
    ``"d" + name``.  ``forward`` and ``backward`` are the layer's functions themselves (not lambdas:
    the grader finds the student's by name); what is not differentiated goes into ``args``.  A
    ``numpy.random.Generator`` among ``args`` is copied before every call, so that every call of the
    forward draws the same dropout mask, as a gradient check needs.
    """
    name: str            # what the case covers, printed above its lines
    forward: Callable    # out, cache = forward(**inputs, **args)
    backward: Callable   # grads = backward(dout, cache): one per input
    inputs: dict         # argument name -> float64 array: the inputs the gradients are taken of
    args: dict = field(default_factory=dict)  # the other arguments by name: masks, ids, labels, p, rng, heads
    zero: tuple = ()     # gradients exactly 0 for every input: checked |d| < ZERO_TOL, not by rel_error

    @property
    def grad_names(self):
        """``["dx", "dw", ...]``: the backward's outputs, in order."""
        return ["d" + n for n in self.inputs]

    def bind(self, forward=None):
        """``forward`` (default: the case's own) as a function of the differentiated inputs alone, in
        the order of ``inputs``, with ``args`` filled in: what ``check_layer`` and the grader call."""
        forward = forward or self.forward
        names = list(self.inputs)

        def bound(*arrays):
            fresh = {k: copy.deepcopy(v) if isinstance(v, np.random.Generator) else v
                     for k, v in self.args.items()}
            return forward(**dict(zip(names, arrays)), **fresh)
        return bound


def check_cases(cases, tol=GRAD_TOL, seed=0):
    """Run ``check_gradients`` on every ``GradCase`` of a table, printing each case's name above its
    lines; then raise AssertionError naming every wrong gradient with its case."""
    wrong = []
    for case in cases:
        print(case.name)
        try:
            check_gradients(case.bind(), case.backward, list(case.inputs.values()), case.grad_names,
                            zero=case.zero, tol=tol, seed=seed)
        except AssertionError as e:
            wrong.append(f"{case.name}: {e}")
    assert not wrong, "\n".join(wrong)
