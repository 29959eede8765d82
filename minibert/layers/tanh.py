"""tanh, used by BERT's pooler.  Cache the output: ``d tanh(x)/dx = 1 - tanh(x)^2``.

Derivation (and the pooler around it): ``docs/backward/tanh_pooler.md``.
"""
import numpy as np


def tanh_forward(x):
    """(...) -> (...), ``cache = out``"""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    out = cache
    # forward: out = tanh(x)
    return dout * (1.0 - out * out)


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_tanh`` runs them,
    and so does ``tests/layers/test_layers_gradcheck.py``."""
    from minibert.gradcheck import GradCase
    return [GradCase("x (2, 5, 7) with std 2: into both flat tails", tanh_forward, tanh_backward,
                     inputs=dict(x=rng.standard_normal((2, 5, 7)) * 2))]


def test_tanh():
    """Checked against centered differences in float64."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))


if __name__ == "__main__":
    test_tanh()
