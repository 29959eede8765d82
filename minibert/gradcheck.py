"""Numerical gradient checking: the proof that a hand-written backward is right.

Centered differences, ``(f(x + h) - f(x - h)) / 2h``, have error O(h^2): with ``h = 1e-5`` in float64
the truncation error is ~1e-10 and the rounding error ~1e-16 / 1e-5 = 1e-11, so a correct backward
agrees to a relative error of about 1e-8 or better, and a wrong one is off by 1e-2 or more.

We check ``sum(f(x) * dout)`` for a *random* upstream gradient ``dout``: with ``dout`` all ones, many
bugs hide (e.g. the gradient of ``sum(softmax(x))`` is exactly zero whatever the backward does).

Always check in float64: float32 has only ~7 digits, so its differences are dominated by rounding.
"""
import numpy as np


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


def check_layer(forward, backward, inputs, names=None, seed=0, h=1e-5, verbose=False):
    """Gradient-check a layer pair on every float input; returns {name: rel_error}.

    ``forward(*inputs) -> (out, cache)`` and ``backward(dout, cache) -> grads`` with one gradient
    per entry of ``names`` (default: every float input, in order).  Integer inputs (ids, labels) and
    ``None`` are passed through untouched.
    """
    rng = np.random.default_rng(seed)
    inputs = list(inputs)
    float_pos = [i for i, x in enumerate(inputs) if isinstance(x, np.ndarray) and x.dtype.kind == "f"]
    names = names or [f"input{i}" for i in float_pos]
    out, cache = forward(*inputs)
    dout = rng.standard_normal(np.shape(out))
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    errors = {}
    for name, pos, g in zip(names, float_pos, grads):
        x = inputs[pos]
        num = numerical_gradient(lambda: forward(*inputs)[0], x, dout, h)
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
