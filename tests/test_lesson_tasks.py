"""Every lesson asks something of the student, in cells nbgrader can grade.

Conventions (notebooks/README.md, "What a lesson asks of the student"):

* a **your-turn** cell: a code cell with nbgrader metadata ``solution: true`` and grade id
  ``NN-your-turn-...``, holding the reference answer between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` (CI runs it filled in); the cell right after it is its **check**: a locked
  autograded code cell (``grade: true``, points) that fails on a wrong answer;
* a **question**: a Markdown cell, then a Markdown answer cell with ``solution: true, grade: true``,
  points and the instructor's answer, which nbgrader's student release replaces by "YOUR ANSWER HERE".

The metadata is checked with nbgrader's own validator, and the student release is made with nbgrader's
own ``nbgrader generate_assignment``: no answer may survive it."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

nbgrader = pytest.importorskip("nbgrader")
from nbgrader.nbgraderformat import MetadataValidator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SOURCES = sorted((NB_DIR / "src").glob("*.py"))


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NB_DIR / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _builder()


def _grader(cell):
    return cell.metadata.get("nbgrader", {})


def task_problems(nb, lesson):
    """What is wrong with the student tasks of notebook ``nb`` (an empty list if nothing)."""
    problems = []
    try:
        MetadataValidator().validate_nb(nb)  # nbgrader's own: schema 3, grade ids, points, markdown rules
    except Exception as e:  # nbgrader raises its ValidationError
        problems.append(f"nbgrader rejects the metadata: {e}")
    cells = nb.cells
    turns = 0
    for i, cell in enumerate(cells):
        g = _grader(cell)
        src = cell.source
        has_region = "BEGIN SOLUTION" in src or "END SOLUTION" in src
        if has_region and not g.get("solution"):
            problems.append(f"cell {i}: a solution region in a cell nbgrader does not know as a solution cell")
        if "Instructor's answer" in src and not g.get("solution"):
            problems.append(f"cell {i}: an instructor's answer in a cell nbgrader would hand to students")
        if not g:
            continue
        gid = g.get("grade_id", "")
        if not gid.startswith(f"{lesson.split('_')[0]}-"):
            problems.append(f"cell {i}: grade id {gid!r} does not start with the lesson's number")
        if cell.cell_type == "code" and g.get("solution"):
            if "-your-turn-" not in gid:
                problems.append(f"cell {i}: a code solution cell's grade id must read NN-your-turn-...: {gid!r}")
            if not (src.count("### BEGIN SOLUTION") == src.count("### END SOLUTION") >= 1):
                problems.append(f"cell {i} ({gid}): no '### BEGIN SOLUTION' / '### END SOLUTION' region")
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            ng = _grader(nxt) if nxt is not None else {}
            if nxt is None or nxt.cell_type != "code" or not ng.get("grade") or not ng.get("locked") \
                    or not ng.get("points") or ng.get("solution"):
                problems.append(f"cell {i} ({gid}): the next cell is not a locked, autograded check with points")
            elif not any(w in nxt.source for w in ("assert", "check(", "check_by_hand(")):
                # lessons.check and toy.check_by_hand raise when wrong
                problems.append(f"cell {i + 1} ({ng.get('grade_id')}): a check that asserts nothing cannot fail")
            else:
                turns += 1
        if cell.cell_type == "markdown" and g.get("solution"):
            prev = cells[i - 1] if i else None
            if prev is None or prev.cell_type != "markdown" or _grader(prev) or "Question" not in prev.source:
                problems.append(f"cell {i} ({gid}): an answer cell must follow its question (a plain Markdown cell)")
            if not g.get("grade") or not g.get("points"):
                problems.append(f"cell {i} ({gid}): an answer cell must be graded, with points")
    if turns == 0:
        problems.append("no your-turn cell followed by its check")
    return problems


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_lesson_has_a_your_turn_cell_checked_by_the_next_and_valid_nbgrader_metadata(source):
    assert task_problems(BUILD.build(source), source.stem) == []


def _lesson(name):
    return BUILD.build(NB_DIR / "src" / f"{name}.py")


def test_the_task_checker_finds_a_missing_check_missing_metadata_a_duplicate_id_and_an_unmarked_answer():
    """The checker above is not vacuous: four ways to break lesson 04, each found."""
    nb = _lesson("04_layernorm_gelu_ffn")
    i = next(i for i, c in enumerate(nb.cells) if "-your-turn-" in _grader(c).get("grade_id", ""))
    no_check = nbformat.from_dict(json.loads(json.dumps(nb)))
    del no_check.cells[i + 1]
    assert any("next cell is not" in p for p in task_problems(no_check, "04_layernorm_gelu_ffn"))
    no_meta = nbformat.from_dict(json.loads(json.dumps(nb)))
    del no_meta.cells[i].metadata["nbgrader"]
    assert any("solution region in a cell" in p for p in task_problems(no_meta, "04_layernorm_gelu_ffn"))
    assert any("no your-turn cell" in p for p in task_problems(no_meta, "04_layernorm_gelu_ffn"))
    duplicate = nbformat.from_dict(json.loads(json.dumps(nb)))
    duplicate.cells[i + 1].metadata["nbgrader"]["grade_id"] = duplicate.cells[i].metadata["nbgrader"]["grade_id"]
    assert any("Duplicate grade id" in p for p in task_problems(duplicate, "04_layernorm_gelu_ffn"))
    j = next(j for j, c in enumerate(nb.cells) if c.cell_type == "markdown" and _grader(c).get("solution"))
    answer_unmarked = nbformat.from_dict(json.loads(json.dumps(nb)))
    del answer_unmarked.cells[j].metadata["nbgrader"]
    assert any("instructor's answer in a cell" in p for p in task_problems(answer_unmarked, "04_layernorm_gelu_ffn"))


def test_the_builder_keeps_the_nbgrader_metadata_of_a_percent_source(tmp_path):
    src = tmp_path / "42_demo.py"
    meta = {"grade": False, "grade_id": "42-your-turn-x", "locked": False, "schema_version": 3,
            "solution": True, "task": False}
    src.write_text("# %% [markdown]\n# # Title\n\n"
                   f"# %% nbgrader={json.dumps(meta)}\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n",
                   encoding="utf-8")
    nb = BUILD.build(src)
    assert nb.cells[1].metadata == {"nbgrader": meta}


def test_nbgraders_student_release_of_the_lessons_keeps_no_answer(tmp_path):
    """``nbgrader generate_assignment`` on every lesson: each your-turn answer becomes nbgrader's stub,
    each instructor's answer "YOUR ANSWER HERE", each hidden test disappears; the checks stay."""
    course = tmp_path / "course"
    source = course / "source" / "lessons"
    source.mkdir(parents=True)
    notebooks = sorted(NB_DIR.glob("*.ipynb"))
    for nb in notebooks:
        shutil.copy(nb, source / nb.name)
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "minibert-lessons"\n')
    run = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "generate_assignment", "lessons",
                          "--no-db", "--force"], cwd=course, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    for nb_path in notebooks:
        instructor = nbformat.read(nb_path, as_version=4)
        student = nbformat.read(course / "release" / "lessons" / nb_path.name, as_version=4)
        assert len(student.cells) == len(instructor.cells)
        for ours, theirs in zip(instructor.cells, student.cells):
            g = _grader(ours)
            if g.get("solution") and ours.cell_type == "code":
                answer = ours.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
                answer_lines = [l.strip() for l in answer.splitlines() if l.strip()]
                assert "raise NotImplementedError()" in theirs.source, theirs.source
                leaked = [l for l in answer_lines if l in theirs.source]
                assert not leaked, f"{nb_path.name} {g['grade_id']}: the release shows {leaked}"
            elif g.get("solution"):
                assert theirs.source == "YOUR ANSWER HERE", f"{nb_path.name} {g['grade_id']}: {theirs.source[:80]}"
            elif "### BEGIN HIDDEN TESTS" in ours.source:
                hidden = ours.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
                assert all(l.strip() not in theirs.source for l in hidden.splitlines() if l.strip())
                assert "assert" in theirs.source  # the visible checks stay
            else:
                assert theirs.source == ours.source
