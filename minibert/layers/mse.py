"""Mean squared error, the loss of a regression head (``BertForSequenceClassification`` with one label).

    loss = mean over N of (pred - target)^2

Backward: ``dpred = dloss * 2 (pred - target) / N`` (the target is data, it gets no gradient).
The cache is the difference ``pred - target``, (N,).
"""
import numpy as np


def mse_forward(pred, target):
    """(N,), (N,) -> scalar loss, ``cache = diff`` (N,)."""
    diff = pred - target  # (N,)
    return pred.dtype.type(np.mean(diff * diff)), diff


def mse_backward(dloss, cache):
    """scalar -> dpred (N,)"""
    diff = cache
    # forward: loss = sum(diff^2) / N
    return (diff * (2.0 * dloss / diff.size)).astype(diff.dtype, copy=False)


def gradcheck_cases(rng):
    """The gradient checks of this layer, float64 inputs drawn from ``rng``: ``test_mse`` runs them,
    and so does ``tests/layers/test_layers_gradcheck.py``."""
    from minibert.gradcheck import GradCase
    return [GradCase("pred (7,), the target fixed", mse_forward, mse_backward,
                     inputs=dict(pred=rng.standard_normal(7)), args=dict(target=rng.standard_normal(7)))]


def test_mse():
    """Checked against centered differences in float64."""
    from minibert.gradcheck import check_cases
    check_cases(gradcheck_cases(np.random.default_rng(0)))


if __name__ == "__main__":
    test_mse()
