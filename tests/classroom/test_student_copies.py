"""What a student opens holds no answer: the lesson copies of ``minibert lessons DIR`` and the released
assignments of ``minibert exercises course`` are checked against every line of every answer.

The answers (``lessons.answer_lines``): every line of every solution region of the library's exercise
sources (layers, the backprop ninja, the masking) and of the lessons' own solution and hidden-test
regions, normalised (stripped, trailing comment dropped, ``L.``/``K.`` qualifiers dropped) and kept
when not trivial syntax (``else:``, ``]``).  The release is made with nbgrader's own preprocessors
(``ClearSolutions`` then ``ClearHiddenTests``, in ``generate_assignment``'s order), so what is checked
is what nbgrader hands out.

Seen failing before the fix: on the release of the day the issue was filed, 14 answer lines (the
``attention_ninja`` release quoting the ``attention`` assignment's backward from the derivation page,
``adamw``'s hint ``p *= 1 - lr * weight_decay``, ``linear``'s TODO ``out = x @ w.T + b``, ...).
"""
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from minibert.classroom import exercises as X  # noqa: E402
from minibert.classroom import lessons  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]  # tests/<folder>/ -> the repository
ANSWERS = lessons.answer_lines()


def _cell_leaks(nb):
    return [(i, line, where) for i, cell in enumerate(nb.cells) for line, where in lessons.leaks(cell.source, ANSWERS)]


def test_the_answers_hold_the_lines_a_student_must_not_be_handed():
    # the collection itself: a library solution, a lesson's your-turn, a lesson's hidden test
    for line in ['dk = dscores.transpose(0, 1, 3, 2) @ q', 'p *= 1 - lr * weight_decay', 'out = x @ w.T + b',
                 'logprobs = z - logsumexp', 'dkh = dS.transpose(0, 1, 3, 2) @ qh',
                 'assert np.isclose(ratio_bert, flows[0.02][0][1] / flows[0.02][5][1])']:
        assert line in ANSWERS, line
    assert "else:" not in ANSWERS and "]" not in ANSWERS


def test_the_checker_finds_the_answers_in_the_instructor_copies():
    # the committed notebooks are the instructor's copies (what `./run lessons` used to open): the check
    # must see their answers, or it could not fail on a student copy either
    found = {p.stem for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
             if _cell_leaks(nbformat.read(str(p), as_version=4))}
    assert {"03_attention", "05_encoder_layer", "07d_pre_ln"} <= found


def test_the_leak_check_sees_through_a_qualifier_and_a_comment():
    assert lessons.leaks("    dk = L.dscores.transpose(0, 1, 3, 2) @ q", ANSWERS) == []  # not a call
    assert lessons.leaks("dx = L.layernorm_backward(dh, cache)[0]", {"dx = layernorm_backward(dh, cache)[0]": "x"})
    assert lessons.leaks("out = x @ w.T + b   # (B, T, C)", ANSWERS)


@pytest.fixture(scope="module")
def student_lessons(tmp_path_factory):
    out = tmp_path_factory.mktemp("lessons")
    return lessons.write_lessons(out)


def test_every_lesson_has_a_student_copy(student_lessons):
    assert sorted(p.name for p in student_lessons) == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_no_student_lesson_holds_a_line_of_any_answer(student_lessons):
    for path in student_lessons:
        assert _cell_leaks(nbformat.read(str(path), as_version=4)) == [], path.name


def test_every_your_turn_and_question_is_emptied_and_every_hidden_test_gone(student_lessons):
    for path in student_lessons:
        nb = nbformat.read(str(path), as_version=4)
        assert nb.cells[0].source == lessons.STUDENT_SETUP  # show() hides the exercises' code
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            assert "BEGIN SOLUTION" not in cell.source and "HIDDEN TESTS" not in cell.source, path.name
            if meta.get("solution") and cell.cell_type == "markdown":
                assert cell.source == lessons.ANSWER_STUB, (path.name, meta["grade_id"])
            elif meta.get("solution"):
                assert "raise NotImplementedError()" in cell.source, (path.name, meta["grade_id"])
            if "Instructor's answer" in cell.source or "Instructor's answers" in cell.source:
                pytest.fail(f"{path.name}: an instructor's answer survives: {cell.source[:80]!r}")


def test_the_student_copies_are_what_nbgrader_itself_releases():
    """Our copy (nbformat only, for the light install) empties the cells as nbgrader's ClearSolutions
    and ClearHiddenTests do."""
    pytest.importorskip("nbgrader")
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        theirs, _ = ClearSolutions().preprocess(nb, {})
        theirs, _ = ClearHiddenTests().preprocess(theirs, {})
        ours = lessons.student_notebook(nbformat.read(str(path), as_version=4))
        keep = [lessons.INSTRUCTOR_ONLY not in c.metadata.get("tags", ()) for c in theirs.cells]
        assert [c.source.strip() for c, k in zip(ours.cells[1:], keep) if k] == \
            [c.source.strip() for c, k in zip(theirs.cells, keep) if k], path.name
        assert all(c.source == lessons.INSTRUCTOR_ONLY_NOTE for c, k in zip(ours.cells[1:], keep) if not k)


def test_a_cell_that_shows_a_your_turns_answer_is_in_the_instructors_copy_only():
    # lesson 07d: the library's pre-LN layer is the answer of its your-turn (write the pre-LN forward)
    nb = nbformat.read(str(ROOT / "notebooks" / "07d_pre_ln.ipynb"), as_version=4)
    shown = [c.source for c in nb.cells if lessons.INSTRUCTOR_ONLY in c.metadata.get("tags", ())]
    assert any("show(pre_ln_encoder_layer_forward" in s for s in shown)
    copy = lessons.student_notebook(nb)
    assert not any("show(pre_ln_encoder_layer" in c.source for c in copy.cells)


def test_a_student_copy_runs_in_student_mode_and_no_output_holds_an_answer(tmp_path):
    """Lesson 03's student copy, executed: `show` prints the exercises' TODOs (outputs are checked
    against every answer line too), the your-turn stops at its stub, the check fails without printing
    the expected value."""
    nbclient = pytest.importorskip("nbclient")
    import os
    [path] = lessons.write_lessons(tmp_path, names=["03_attention"])
    nb = nbformat.read(str(path), as_version=4)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="module://matplotlib_inline.backend_inline")
    nbclient.NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + "".join(str(v) for v in out.get("data", {}).values())
                         + "\n".join(out.get("traceback", [])))
    outputs = "\n".join(texts)
    assert "TODO (sdpa_backward)" in outputs  # show() ran in student mode
    assert lessons.leaks(outputs, ANSWERS) == []
    assert "NotImplementedError" in outputs



def test_write_lessons_refuses_to_overwrite_a_students_work(tmp_path):
    lessons.write_lessons(tmp_path, names=["00_map"])
    with pytest.raises(FileExistsError, match="00_map.ipynb already exist.*--force"):
        lessons.write_lessons(tmp_path, names=["00_map"])
    lessons.write_lessons(tmp_path, names=["00_map"], force=True)
    with pytest.raises(ValueError, match="unknown lesson.*'99_nothing'"):
        lessons.write_lessons(tmp_path, names=["99_nothing"])


def test_write_lessons_refuses_a_copy_that_would_leak(tmp_path):
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("dx = dout @ w  # given code quoting an answer")])
    nbformat.write(nb, str(nb_dir / "99_leaky.ipynb"))
    with pytest.raises(ValueError, match="99_leaky.ipynb would hold answer line.*'dx = dout @ w'"):
        lessons.write_lessons(tmp_path / "out", notebooks_dir=nb_dir)


# ---- the course release ----------------------------------------------------------------------------

def _release(name):
    """The student release of assignment ``name`` as nbgrader's generate_assignment makes it."""
    pytest.importorskip("nbgrader")
    from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, ClearSolutions
    from minibert.classroom.course import notebook
    nb = notebook(name, 1)
    for pre in (ClearSolutions(), ClearHiddenTests(), ClearMarkScheme()):
        nb, _ = pre.preprocess(nb, {})
    return nb


@pytest.mark.parametrize("name", list(X.EXERCISES))
def test_no_release_holds_a_line_of_any_exercises_answer(name):
    assert _cell_leaks(_release(name)) == []


@pytest.mark.parametrize("name", list(X.EXERCISES))
def test_no_hint_of_the_student_copies_is_an_answer_line(name):
    # the `.py` path too: `minibert exercises make` keeps the TODO and its hints above each region
    text = X.student_version(X.source_text(name))
    assert lessons.hint_leaks(text, ANSWERS) == []
    assert lessons.leaks(text, ANSWERS) == []
    release = "\n".join(c.source for c in _release(name).cells)
    assert lessons.hint_leaks(release, ANSWERS) == []


def test_the_hint_check_finds_an_answer_in_a_comment():
    assert lessons.hint_leaks("    #   hint: decay first, p *= 1 - lr * weight_decay (only when ...)", ANSWERS) == \
        [("p *= 1 - lr * weight_decay", ANSWERS["p *= 1 - lr * weight_decay"])]
    assert lessons.hint_leaks("# TODO: out = x @ w.T + b, for any number of leading dims", ANSWERS)


# ---- the command line and ./run ------------------------------------------------------------------------

def test_minibert_lessons_writes_the_copies_and_refuses_to_overwrite(tmp_path):
    import subprocess
    import sys
    run = lambda *a: subprocess.run([sys.executable, "-m", "minibert", "lessons", *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=ROOT)
    proc = run(str(tmp_path / "mine"), "00_map", "03_attention")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 student lesson(s)" in proc.stdout and f"jupyter lab {tmp_path / 'mine'}" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["00_map.ipynb", "03_attention.ipynb"]
    proc = run(str(tmp_path / "mine"), "00_map")
    assert proc.returncode == 2 and "already exist" in proc.stderr and "--force" in proc.stderr


def _fake_run(tmp_path):
    """A copy of ./run whose .venv's python, minibert and jupyter only say how they were called."""
    import shutil
    import stat
    repo = tmp_path / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "run", repo / "run")
    for tool in ("python", "minibert", "jupyter"):
        script = repo / ".venv" / "bin" / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{repo}/calls"\n'
                          + ('mkdir -p "$2"\n' if tool == "minibert" else ""))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return repo


def test_run_lessons_opens_the_student_copies_and_the_instructor_copies_only_when_asked(tmp_path):
    import os
    import subprocess
    repo = _fake_run(tmp_path)
    subprocess.run(["bash", "run", "lessons", "--no-browser"], cwd=repo, check=True)
    calls = (repo / "calls").read_text().splitlines()
    assert "minibert lessons my_lessons" in calls
    root = " --allow-root" if os.getuid() == 0 else ""
    assert calls[-1] == f"jupyter lab my_lessons/{root} --no-browser"
    # a second start does not rewrite the copies (they hold the student's work)
    subprocess.run(["bash", "run", "lessons"], cwd=repo, check=True)
    assert (repo / "calls").read_text().count("minibert lessons") == 1
    subprocess.run(["bash", "run", "lessons", "--instructor"], cwd=repo, check=True)
    assert (repo / "calls").read_text().splitlines()[-1] == f"jupyter lab notebooks/{root}"


@pytest.mark.parametrize("name", list(X.EXERCISES))
def test_a_release_asks_for_the_derivation_and_does_not_point_at_the_worked_one(name):
    from minibert.classroom.derivations import PROBLEMS
    nb = _release(name)
    text = "\n".join(c.source for c in nb.cells)
    assert "docs/backward/" not in text
    written = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == f"{name}_derivation"]
    assert len(written) == 1 and written[0].cell_type == "markdown" and written[0].source == "YOUR ANSWER HERE"
    meta = written[0].metadata["nbgrader"]
    assert meta["grade"] and meta["solution"] and not meta["locked"] and meta["points"] == PROBLEMS[name].points
    assert "## Derive first" in text and "Computational graph" in text and "**Shapes.**" in text


def test_the_instructors_copy_holds_the_rubric_and_the_course_dir_the_feedback(tmp_path):
    from minibert.classroom.course import notebook, write_course
    cell = next(c for c in notebook("attention").cells if c.metadata["nbgrader"]["grade_id"] == "attention_derivation")
    assert "Instructor's rubric (6 points" in cell.source
    write_course(tmp_path, names=["attention_ninja", "attention"])
    ninja = (tmp_path / "derivations" / "attention_ninja.md").read_text()
    assert "Masked multi-head self-attention" in ninja  # docs/backward/attention.md, the worked derivation
    assert lessons.leaks(ninja, {a: w for a, w in ANSWERS.items() if "layers/attention.py" in w}) == []
    assert not (tmp_path / "source" / "attention" / "attention.md").exists()
