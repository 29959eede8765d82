"""``minibert.classroom.lessons.show``: a student sees no exercise's answer, an instructor sees the code.

The layer files are the exercises' sources (their answers sit between ``### BEGIN SOLUTION`` and
``### END SOLUTION``), and the lessons show them; in student mode ``show`` must hide every answer line
and keep the TODO, in instructor mode (CI's) show the source as it is."""
import importlib
import inspect

import numpy as np
import pytest

from minibert.classroom import lessons
from minibert.classroom.exercises import EXERCISES, parse_regions
from minibert.layers import linear

SOLUTION_LINES = [l.strip() for l in inspect.getsource(linear.linear_backward).splitlines()
                  if l.strip().startswith(("dx =", "dw =", "db =", "dout2 ="))]


def _functions_with_an_answer():
    """Every function of every exercise source that holds a solution region."""
    out = []
    for ex in EXERCISES.values():
        module = importlib.import_module(ex.module)
        for name, fn in vars(module).items():
            if inspect.isfunction(fn) and fn.__module__ == ex.module:
                if any(r.kind == "solution" for r in parse_regions(inspect.getsource(fn))):
                    out.append(pytest.param(ex.name, fn, id=f"{ex.name}.{name}"))
    return out


def test_the_answer_of_linear_backward_is_what_the_student_view_must_hide():
    assert len(SOLUTION_LINES) == 4  # dx, dout2, dw, db: the test below would pass vacuously on none


def test_student_show_of_linear_backward_holds_no_solution_line_but_the_todo_and_its_hints():
    text = lessons.show(linear.linear_backward, student=True).data
    assert not [l for l in SOLUTION_LINES if l in text], text
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert "# TODO: the three gradients dx, dw, db." in text and "#   hint:" in text
    assert "raise NotImplementedError(" in text
    assert "exercise `linear`" in text and "minibert exercises check linear" in text


def test_instructor_show_of_linear_backward_is_the_source_as_it_is():
    text = lessons.show(linear.linear_backward, student=False).data
    assert text == inspect.getsource(linear.linear_backward).rstrip("\n")
    assert all(l in text for l in SOLUTION_LINES)


def test_the_module_switch_decides_when_show_is_not_told(monkeypatch):
    monkeypatch.setattr(lessons, "STUDENT", True)
    assert "dx = dout @ w" not in lessons.show(linear.linear_backward).data
    monkeypatch.setattr(lessons, "STUDENT", False)
    assert "dx = dout @ w" in lessons.show(linear.linear_backward).data


@pytest.mark.parametrize("value, student", [(None, False), ("", False), ("0", False), ("no", False),
                                            ("1", True), ("true", True), ("YES", True)])
def test_MINIBERT_STUDENT_sets_the_mode(value, student):
    assert lessons._student_from_env(value) is student


def test_a_MINIBERT_STUDENT_that_is_not_a_yes_or_a_no_is_refused_by_name():
    with pytest.raises(ValueError, match="MINIBERT_STUDENT must be one of .* got 'maybe'"):
        lessons._student_from_env("maybe")


@pytest.mark.parametrize("exercise, fn", _functions_with_an_answer())
def test_student_show_hides_every_answer_of_every_exercise(exercise, fn):
    full = inspect.getsource(fn).splitlines()
    answer = set()
    for r in parse_regions("\n".join(full)):
        if r.kind == "solution":
            answer |= {l.strip() for l in full[r.begin + 1:r.end] if l.strip() and not l.strip().startswith("#")}
    assert answer, f"{fn.__qualname__}: a solution region without code"
    shown = {l.strip() for l in lessons.source(fn, student=True).splitlines()}
    # an answer line may also appear outside its region (e.g. a `return` the caller keeps): only lines
    # that appear inside a region and nowhere else count as the answer
    outside = {l.strip() for i, l in enumerate(full)
               if not any(r.begin <= i <= r.end for r in parse_regions("\n".join(full)))}
    leaked = (answer - outside) & shown
    assert not leaked, f"{fn.__qualname__} shows its answer to a student: {sorted(leaked)}"
    assert f"exercise `{exercise}`" in lessons.source(fn, student=True)


def test_student_show_cuts_a_snippet_after_hiding_so_a_region_is_never_cut_in_half():
    text = lessons.source(linear.linear_backward, "# forward: out", "return dx", student=True)
    assert text.startswith("    # forward: out[n, o] = sum_i x[n, i] w[o, i] + b[o]") and "return dx, dw, db" in text
    assert "dx = dout @ w" not in text


def test_show_names_the_missing_line_when_a_snippet_cannot_be_found():
    with pytest.raises(ValueError, match="no line containing 'nowhere'.*linear_backward"):
        lessons.source(linear.linear_backward, "nowhere", "return", student=False)


def test_a_function_without_an_exercise_is_shown_as_it_is_in_both_modes():
    from minibert.models import BertModel
    assert lessons.source(BertModel.backward, student=True) == lessons.source(BertModel.backward, student=False)


# ---- lessons.check: a your-turn's check says right or wrong, never the expected value -----------------

@pytest.mark.parametrize("yours, expected, says", [
    (5, 3, "too large"), (2.0, 3.0, "too small"), (-3.0, 3.0, "the wrong sign"),
    ("##ug", "##gs", "not the right one"),
    (["un", "##aff"], ["una", "##ff"], "your piece 0 ('un') is wrong"),
    (["una"], ["una", "##ff"], "too few pieces"),
    (np.zeros((2, 3)), np.zeros((2, 4)), "wrong shape (2, 3): axis 1 is wrong"),
    (np.zeros((2, 3, 1)), np.zeros((2, 3)), "3 axes, too many"),
    (np.arange(9.).reshape(3, 3), np.arange(9.).reshape(3, 3).T, "the transpose of the right answer"),
    (-np.arange(1., 5.), np.arange(1., 5.), "every one has the wrong sign"),
    (np.array([1., 2., 9.]), np.array([1., 2., 3.]), "1 of 3 entries wrong (first at index (2,)), all too large"),
    (np.array([[True, False]]), np.array([[True, True]]), "1 of 2 entries wrong (first at index (0, 1))"),
])
def test_check_says_where_it_is_wrong_without_the_expected_value(yours, expected, says):
    with pytest.raises(AssertionError) as e:
        lessons.check("x", yours, expected, "a hint")
    message = str(e.value)
    assert says in message and message.endswith("Hint: a hint")
    shown = {repr(expected), str(expected), str(np.asarray(expected))}
    assert not any(s in message for s in shown if len(s) > 1), message


def test_check_says_right_within_its_tolerance(capsys):
    lessons.check("lr", 5e-3 / 40, 1.25e-4)
    lessons.check("loss", 1.09, 1.0986, rtol=0, atol=0.05)
    lessons.check("shape", (2, 5, 7), (2, 5, 7))
    lessons.check("mask", np.eye(3, dtype=bool), np.eye(3) == 1)
    assert capsys.readouterr().out.splitlines() == ["lr: right", "loss: right", "shape: right", "mask: right"]
    with pytest.raises(AssertionError, match="loss: too large"):
        lessons.check("loss", 1.2, 1.0986, rtol=0, atol=0.05)
