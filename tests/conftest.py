"""Shared test helpers: small configs, non-trivial parameters, batches with padding and labels,
and the transformers oracle; and the rule that a test leaves no temporary directory of minibert behind."""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import minibert
from minibert.gradcheck import perturb_parameters  # noqa: F401  (tests import it from here)


@pytest.fixture(params=["numpy", "numba"])
def each_backend(request):
    """Run a test under both kernel backends (numba is a core dependency: never skipped), then restore
    the previous one."""
    previous = minibert.get_backend()
    minibert.set_backend(request.param)
    yield request.param
    minibert.set_backend(previous)


def small_config(**overrides):
    """Odd, all-different sizes: V=97, C=48, L=3, A=3 (D=16), F=80, T<=40."""
    kw = dict(vocab_size=97, hidden_size=48, num_hidden_layers=3, num_attention_heads=3,
              intermediate_size=80, max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu",
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12,
              initializer_range=0.02)
    kw.update(overrides)
    return minibert.BertConfig(**kw)


def padded_two_sequence_batch(rng, T, V):
    """The trace's and the step-through's batch: two sequences of ``T`` ids drawn from ``rng`` (``[CLS]`` = 2
    first), the second padded from position 5, two segments in the first, three labelled positions (one at
    5, a real token of the first sequence), and both NSP labels."""
    ids = rng.integers(5, V, size=(2, T))
    ids[:, 0] = 2                      # [CLS]
    mask = np.ones((2, T), dtype=np.int64)
    mask[1, 5:] = 0                    # the second sequence is padded: keys 5, 6 are masked
    ids[1, 5:] = 0
    types = np.zeros((2, T), dtype=np.int64)
    types[0, 4:] = 1
    labels = np.full((2, T), -100)
    labels[0, 2], labels[1, 3], labels[0, 5] = 7, 9, 11
    return dict(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels,
                next_sentence_label=np.array([0, 1]))


def make_batch(config, B=3, T=9, seed=0, label_every=3):
    """A batch with padding (rows shorter than T), two segments, sparse MLM labels and NSP labels."""
    rng = np.random.default_rng(seed)
    V = config.vocab_size
    ids = rng.integers(5, V, size=(B, T))
    lengths = [T] + [max(3, T - 2 - 2 * b) for b in range(1, B)]
    mask = np.zeros((B, T), dtype=np.int64)
    segs = np.zeros((B, T), dtype=np.int64)
    labels = np.full((B, T), -100, dtype=np.int64)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = 0  # [PAD]
        segs[b, n // 2:n] = 1
        for t in range(1 + b % label_every, n, label_every):
            labels[b, t] = rng.integers(0, V)
    nsp = rng.integers(0, 2, size=B)
    return dict(input_ids=ids, token_type_ids=segs, attention_mask=mask, labels=labels, next_sentence_label=nsp)


def hf_pretraining_model(model):
    """transformers' BertForPreTraining (eager attention, float64) holding a copy of our weights."""
    torch = pytest.importorskip("torch")  # the oracle is a declared test dependency; see setup.py
    import transformers
    c = model.config
    hf_config = transformers.BertConfig(**{k: v for k, v in c.to_dict().items()})
    hf_config._attn_implementation = "eager"
    hf = transformers.BertForPreTraining(hf_config).double()
    hf.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in model.state_dict().items()},
                       strict=True)
    hf.train(model.training)
    return hf


def assert_grads_match(ours, theirs, tol=1e-8, exactly_zero=()):
    """Every gradient within ``tol`` relative (rel_error).  The attention key biases are the one
    exception: softmax ignores a shift shared by a whole row of scores, and q.(k_j + bk) shifts every
    score of row q by the same q.bk, so their true gradient is exactly 0 and both sides hold rounding
    noise (~1e-16); a ratio of two noises is meaningless, so they are checked to be 0 absolutely.
    ``exactly_zero`` names more parameters of that kind (e.g. the QA head's bias)."""
    from minibert.gradcheck import rel_error
    assert set(ours) == set(theirs), set(ours) ^ set(theirs)
    errors = {}
    for n in theirs:
        a, b = np.asarray(ours[n]), np.asarray(theirs[n])
        if n.endswith("attention.self.key.bias") or n in exactly_zero:
            assert np.abs(a).max() < 1e-12 and np.abs(b).max() < 1e-12, n
        else:
            errors[n] = rel_error(a, b)
    worst = max(errors, key=errors.get)
    print(f"worst gradient rel_error vs transformers: {errors[worst]:.1e} ({worst})")
    assert errors[worst] < tol, f"{worst}: rel_error {errors[worst]:.2e} (expected < {tol})"
    return errors


def check_sampled_gradients(cfg, dropout):
    """The whole-model gradient check (float64): a perturbed ``BertForPreTraining(cfg)``, 4 sampled
    coordinates of each parameter by centered differences against ``backward()``.  Tolerance 1e-6 per
    parameter (a correct backward gives ~1e-9, a wrong one ~1e-2); the attention key biases' gradient
    is exactly 0 (softmax's shift invariance) and is checked to be 0.  With dropout on, the dropout
    stream is re-seeded before every forward, so both gradients see the same masks.  Returns the names
    of the parameters checked, in order."""
    from minibert.gradcheck import numerical_gradient_at, rel_error
    model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64))
    model.train(dropout > 0)
    batch = make_batch(cfg, B=2, T=7, seed=1)

    def loss():
        model.bert.dropout_rng = np.random.default_rng(123)
        return float(model(**batch).loss)

    loss()
    model.backward()
    rng = np.random.default_rng(0)
    names = []
    for name, p, g in model.named_parameters():
        idx = rng.choice(p.size, size=min(4, p.size), replace=False)
        exact = g.reshape(-1)[idx]
        approx = numerical_gradient_at(loss, p, idx)
        if name.endswith("attention.self.key.bias"):  # exactly 0 by the softmax shift invariance
            assert np.abs(exact).max() < 1e-12 and np.abs(approx).max() < 1e-8, name
        else:
            assert rel_error(exact, approx) < 1e-6, f"{name}: {exact} vs {approx}"
        names.append(name)
    assert len(names) == len(model.grad_state_dict())
    return names


# -- temporary directories ------------------------------------------------------------------------------
# A lesson, a trace or a test that makes a temporary directory removes it (one test run, one book build and
# one notebook run once left 39 minibert-* directories in /tmp).  The session gets a temporary directory of
# its own (TMPDIR, so the processes the tests start -- notebook kernels, the CLI -- use it too, and other
# runs on the same machine cannot disturb the check); after every test, no new minibert-* entry may remain.

# Each pytest process makes its own (an xdist worker's inside the controller's); the names are short because
# Chromium's socket path, made inside it, must stay under ~100 characters.
SESSION_TMP = Path(tempfile.mkdtemp(prefix="mbt-"))
os.environ["TMPDIR"] = str(SESSION_TMP)
tempfile.tempdir = str(SESSION_TMP)


def minibert_temp_entries(directory=None):
    """The names in ``directory`` (default: the temporary directory) that minibert's code makes."""
    directory = Path(directory or tempfile.gettempdir())
    return {p.name for p in directory.iterdir() if p.name.startswith("minibert-")}


@pytest.fixture(autouse=True)
def leaves_no_temporary_directory():
    before = minibert_temp_entries()
    yield
    left = sorted(minibert_temp_entries() - before)
    for name in left:  # removed, so one leak fails one test rather than every test after it
        shutil.rmtree(SESSION_TMP / name, ignore_errors=True)
    assert not left, (f"the test left {left} in the temporary directory: whatever makes a temporary directory "
                      "(a lesson, a trace, the library) must remove it")


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_TMP, ignore_errors=True)
