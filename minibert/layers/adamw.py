"""The AdamW update of one parameter, the NumPy reference that ``minibert/kernels/adamw.py`` twins.

Not a layer: an optimizer step.  It sits here because ``layers/`` holds every NumPy reference a numba
twin mirrors, file for file; the optimizer around it (moments per parameter, bias corrections, the
schedule) is ``minibert/optim.py``.  Derivation: ``docs/backward/adamw.md``.
Exercise ``adamw`` of ``minibert exercises``: the update under the ``# TODO``, checked by ``test_adamw``
over several steps of BERT's schedule against the paper's formula and the reference.
"""
import numpy as np


def adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt):
    """One AdamW update of one parameter ``p`` with gradient ``g`` and moments ``m``, ``v``, all in
    place, in ``torch.optim.AdamW``'s arithmetic.  ``step_size = lr / (1 - beta1^t)`` and
    ``bc2_sqrt = sqrt(1 - beta2^t)`` are the bias corrections of step t (the same for every parameter).
    The numba twin is ``minibert/kernels/adamw.py``."""
    # TODO: the update, in place (p, m and v are the optimizer's own arrays: write into them, p -= ...):
    #       decoupled weight decay, then the two moments, then the bias-corrected step.
    #   hint: decay first: it shrinks p by the factor lr * weight_decay of itself, and never touches g
    #         (skip it when weight_decay is 0).
    #   hint: m and v are running means of g and of g squared, updated in place (m += ..., v *= ...).
    #   hint: the step is the update rule of the docstring's t-th step with step_size and bc2_sqrt given;
    #         eps is added after v's bias correction (torch's order), not before.
    ### BEGIN SOLUTION
    if weight_decay:
        p *= 1 - lr * weight_decay
    m += (1 - beta1) * (g - m)  # == b1 m + (1 - b1) g, written as torch's lerp
    v *= beta2
    v += (1 - beta2) * g * g
    p -= step_size * m / (np.sqrt(v) / bc2_sqrt + eps)
    ### END SOLUTION


def adamw_steps(update, params, grads, lrs, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01):
    """Run ``update`` (``adamw_update`` or yours) for ``len(lrs)`` steps, as ``minibert.optim.AdamW.step``
    does: step t (from 1) has bias corrections ``step_size = lr / (1 - b1^t)`` and ``bc2_sqrt =
    sqrt(1 - b2^t)``; a parameter whose name ends in ``bias`` is not decayed.  ``params``: {name: array},
    ``grads``: one {name: gradient} per step.  Returns [(step, {name: (p, m, v)} copies)], one per step."""
    params = {n: np.array(p, dtype=np.float64) for n, p in params.items()}
    m = {n: np.zeros_like(p) for n, p in params.items()}
    v = {n: np.zeros_like(p) for n, p in params.items()}
    history = []
    for t, (lr, g) in enumerate(zip(lrs, grads), start=1):
        step_size, bc2_sqrt = lr / (1 - beta1 ** t), np.sqrt(1 - beta2 ** t)
        for n, p in params.items():
            wd = 0.0 if n.endswith("bias") else weight_decay
            update(p, np.array(g[n]), m[n], v[n], lr, beta1, beta2, eps, wd, step_size, bc2_sqrt)
        history.append((t, {n: (params[n].copy(), m[n].copy(), v[n].copy()) for n in params}))
    return history


def textbook_adamw(params, grads, lrs, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01):
    """Loshchilov & Hutter's AdamW as the paper writes it (bias-corrected m-hat and v-hat, decay scaled
    by the learning rate, as PyTorch does), an independent formula to check ``adamw_update`` against;
    same arguments and result as ``adamw_steps``."""
    p = {n: np.array(a, dtype=np.float64) for n, a in params.items()}
    m = {n: np.zeros_like(a) for n, a in p.items()}
    v = {n: np.zeros_like(a) for n, a in p.items()}
    history = []
    for t, (lr, g) in enumerate(zip(lrs, grads), start=1):
        for n in p:
            wd = 0.0 if n.endswith("bias") else weight_decay
            m[n] = beta1 * m[n] + (1 - beta1) * g[n]
            v[n] = beta2 * v[n] + (1 - beta2) * g[n] ** 2
            m_hat, v_hat = m[n] / (1 - beta1 ** t), v[n] / (1 - beta2 ** t)
            p[n] = p[n] - lr * wd * p[n] - lr * m_hat / (np.sqrt(v_hat) + eps)
        history.append((t, {n: (p[n].copy(), m[n].copy(), v[n].copy()) for n in p}))
    return history


# BERT's schedule for 6 steps, warmup over 2, peak 1e-2: minibert.optim.linear_warmup_decay(s, 6, 2, 1e-2)
# (the grader takes it from there; written out here because layers/ imports nothing above it)
SCHEDULE = [5e-3, 1e-2, 8e-3, 6e-3, 4e-3, 2e-3]


def adamw_cases(rng, lrs=SCHEDULE):
    """The exercise's case: a weight (decayed) and a bias (not), one random gradient per learning rate of
    ``lrs`` (of sizes 1e-3 to 1: Adam's step does not depend on the gradient's scale, its moments do)."""
    params = {"weight": rng.standard_normal((4, 5)), "bias": rng.standard_normal(5)}
    grads = [{n: rng.standard_normal(p.shape) * 10.0 ** rng.integers(-3, 1) for n, p in params.items()}
             for _ in lrs]
    return params, grads, list(lrs)


def test_adamw():
    """The exercise's check: six steps of ``adamw_update`` (under BERT's schedule) against the paper's
    formula, ``textbook_adamw``; the two agree to rounding, ~1e-15 relative in float64 (expect < 1e-12)."""
    from minibert.gradcheck import rel_error
    params, grads, lrs = adamw_cases(np.random.default_rng(0))
    ours, book = adamw_steps(adamw_update, params, grads, lrs), textbook_adamw(params, grads, lrs)
    wrong = []
    for (t, mine), (_, want) in zip(ours, book):
        for n in params:
            for label, a, b in zip(("p", "m", "v"), mine[n], want[n]):
                e = rel_error(a, b)
                print(f"  step {t} {n:6s} {label}  rel_error {e:.1e}  (expect < 1e-12)  {'ok' if e < 1e-12 else 'WRONG'}")
                if not e < 1e-12:
                    wrong.append(f"step {t} {n} {label}")
    assert not wrong, f"off: {', '.join(wrong)}"
    ### BEGIN HIDDEN TESTS
    p = np.ones(3)
    adamw_update(p, np.zeros(3), np.zeros(3), np.zeros(3), 0.1, 0.9, 0.999, 1e-6, 0.5, 1.0, 1.0)
    np.testing.assert_allclose(p, 0.95)  # a zero gradient still decays: p (1 - lr wd)
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_adamw()
