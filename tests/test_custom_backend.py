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


# ---- the capstone: your BERT, your backward ------------------------------------------------------------

def encoder_layer_module(bug=None):
    """A student's encoder_layer.py (the reference answers), loaded as its own module; ``bug``: (line, bug)."""
    text = X.source_text("encoder_layer")
    if bug:
        assert text.count(bug[0]) == 1, bug[0]
        text = text.replace(bug[0], bug[1])
    module = types.ModuleType("student_encoder_layer")
    exec(compile(text, "student_encoder_layer.py", "exec"), module.__dict__)
    return module


CAPSTONE_STEPS = 20  # the short form of the capstone's few hundred steps


def test_the_model_runs_a_students_encoder_layer_and_the_named_backends_run_the_librarys(restore_backend):
    from minibert.layers import encoder_layer as E
    for name in ("numpy", "numba"):
        minibert.set_backend(name)
        assert not hasattr(backend.ops, "encoder_layer_backward")  # the model runs layers/encoder_layer.py's
    student = encoder_layer_module()
    minibert.set_backend(student)
    assert backend.ops.encoder_layer_backward is student.encoder_layer_backward
    calls = []
    original = student.encoder_layer_backward
    student.encoder_layer_backward = lambda dout, cache: calls.append(1) or original(dout, cache)
    minibert.set_backend(student)
    loss_curve(steps=1)
    assert len(calls) == 2  # once per layer
    assert student.encoder_layer_backward is not E.encoder_layer_backward


def test_capstone_the_reference_answers_train_to_the_reference_curve_and_a_bug_parts_them(restore_backend, tmp_path):
    """CI's short form of the capstone: tens of steps of the tiny BERT (dropout on, MLM + NSP data) on the
    student's encoder layer next to the reference.  The reference answers give the same curve to the last
    bit (the same operations in the same order); a forgotten residual parts the curves from the first
    update on (a gap of ~1e-2, six orders above COINCIDE_TOL)."""
    from minibert.classroom import capstone
    before = backend.get_backend()
    run = capstone.train_side_by_side(encoder_layer_module(), steps=CAPSTONE_STEPS, plot=tmp_path / "curves.png")
    assert backend.get_backend() == before  # the caller's backend is put back
    assert run.coincide and run.max_gap == 0.0 and run.first_parting() is None, run
    assert run.reference[-1] < run.reference[0] - 0.3  # it learns
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert "the curves coincide" in repr(run)
    buggy = capstone.train_side_by_side(encoder_layer_module(
        ("    dx = dx + dsum1  # the residual: x also went straight into the sum", "    dx = dx")),
        steps=CAPSTONE_STEPS)
    np.testing.assert_array_equal(buggy.reference, run.reference)
    assert not buggy.coincide and buggy.max_gap > 1e-4 and buggy.first_parting() <= 2, buggy
    assert "the curves part at step" in repr(buggy)


def test_capstone_trains_on_a_directory_of_exercise_files(restore_backend, tmp_path):
    from minibert.classroom import capstone
    (tmp_path / "encoder_layer.py").write_text(X.source_text("encoder_layer"))
    (tmp_path / "layernorm.py").write_text(X.source_text("layernorm"))
    run = capstone.train_side_by_side(tmp_path, steps=3)
    assert run.coincide and run.backend_name == f"custom:{tmp_path.name}"
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        capstone.train_side_by_side(tmp_path, steps=0)
    with pytest.raises(FileNotFoundError, match="no Python file"):
        capstone.train_side_by_side(tmp_path / "nothing_here", steps=3)


def test_using_runs_a_block_on_another_backend_and_puts_back_the_very_same_kernels(restore_backend):
    """``backend.using``: the block sees the other backend; after it (also after an error) the table is
    the one before, a student's module included."""
    student = types.ModuleType("student_layernorm")
    student.layernorm_forward = minibert.layers.layernorm_forward
    minibert.set_backend(student)
    before = dict(vars(backend.ops))
    with backend.using("numpy"):
        assert backend.get_backend() == "numpy"
    assert backend.get_backend() == "custom:student_layernorm" and vars(backend.ops) == before
    with pytest.raises(KeyError):
        with backend.using("numba"):
            assert backend.get_backend() == "numba"
            raise KeyError("inside")
    assert backend.get_backend() == "custom:student_layernorm" and vars(backend.ops) == before
