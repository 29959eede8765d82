"""``minibert.set_backend(module)``: BERT trained on a student's own layer functions, side by side with
the references (the capstone's machinery).  Equal functions give the same loss curve to the last bit;
a planted bug in one backward (a term of LayerNorm's dx forgotten) makes the curves part."""
import types

import numpy as np
import pytest

import minibert
from minibert import backend
from minibert.classroom import exercises as X
from minibert.config import BertConfig
from minibert.models.bert import BertForPreTraining
from minibert.optim import AdamW

STEPS = 30


def loss_curve(steps=STEPS):
    """A tiny BERT pretrained for ``steps`` AdamW steps on a fixed random MLM+NSP batch (float64,
    no dropout: the curve depends only on the layer functions)."""
    cfg = BertConfig(vocab_size=23, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=20, max_position_embeddings=8, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    model = BertForPreTraining(cfg, seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 23, size=(4, 7))
    labels = np.where(rng.random((4, 7)) < 0.3, ids, -100)
    labels[:, 1] = ids[:, 1]
    nsp = rng.integers(0, 2, size=4)
    opt = AdamW(model, lr=3e-3)
    curve = []
    for _ in range(steps):
        model.zero_grad()
        out = model.forward(ids, labels=labels, next_sentence_label=nsp)
        model.backward()
        opt.step()
        curve.append(float(out.loss))
    return np.array(curve)


def student_module(bug=False):
    """A student's layernorm.py, loaded as its own module (its functions are not the library's objects)."""
    text = X.source_text("layernorm")
    if bug:
        good = "                            - norm * (dnorm * norm).mean(axis=-1, keepdims=True))"
        assert good in text  # a forgotten term of LayerNorm's dx
        text = text.replace(good, "                            )")
    module = types.ModuleType("student_layernorm")
    exec(compile(text, "student_layernorm.py", "exec"), module.__dict__)
    return module


@pytest.fixture
def restore_backend():
    previous = backend.get_backend()
    yield
    minibert.set_backend(previous if not str(previous).startswith("custom:") else "numpy")


def test_the_students_own_layers_give_the_reference_curve_and_a_bug_parts_them(restore_backend):
    minibert.set_backend("numpy")
    reference = loss_curve()
    student = student_module()
    minibert.set_backend(student)
    assert backend.get_backend() == "custom:student_layernorm"
    assert backend.ops.layernorm_backward is student.layernorm_backward  # the student's code runs
    assert backend.ops.linear_backward is minibert.layers.linear_backward  # the rest falls back
    np.testing.assert_array_equal(loss_curve(), reference)
    minibert.set_backend(student_module(bug=True))
    buggy = loss_curve()
    assert abs(buggy[-1] - reference[-1]) > 1e-3, (buggy[-1], reference[-1])
    assert reference[-1] < reference[0]  # it learns


def test_a_module_with_no_layer_function_is_refused(restore_backend):
    with pytest.raises(ValueError, match="defines none of the layer functions"):
        minibert.set_backend(types.SimpleNamespace(foo=len))
