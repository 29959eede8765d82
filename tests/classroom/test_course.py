"""The nbgrader course, through nbgrader itself: ``minibert exercises course DIR``, then nbgrader's own
commands, as docs/instructors_guide.md gives them.

The course is built and graded once for the module (it is the slow part: one kernel per notebook):

* ``nbgrader generate_assignment`` for every assignment: the release holds no line of any solution;
* ``nbgrader autograde`` on three students: ``answers`` (the source notebooks, i.e. the library's own
  code) must get full points, ``untouched`` (the release as handed out) zero on every graded cell, and
  ``buggy`` (one planted bug per assignment) loses exactly the cells of the arrays the bug breaks;
* ``nbgrader generate_feedback`` names the wrong array; ``nbgrader export`` writes the grades CSV.
"""
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader")

from minibert.classroom import exercises as X  # noqa: E402
from minibert.classroom import grader as G  # noqa: E402
from minibert.classroom.course import solution_lines  # noqa: E402
from minibert.classroom.derivations import PROBLEMS  # noqa: E402

NAMES = list(X.EXERCISES)

# one planted bug per assignment: (the library's line, the bug, the graded items that must lose points)
BUGS = {
    "linear": ("    dw = dout2.T @ x.reshape(-1, I)", "    dw = x.reshape(-1, I).T @ dout2", {"dw"}),
    "softmax": ("    dx = p * (dp - (dp * p).sum(axis=-1, keepdims=True))",
                "    dx = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * (1 - p)", {"dx"}),
    "layernorm": ("    db = dout.reshape(-1, C).sum(axis=0)", "    db = dout.reshape(-1, C).mean(axis=0)", {"db"}),
    "gelu": ("    dx = dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)",
             "    dx = dout * (0.5 * (1.0 + erf(x * _SQRT_HALF)) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x))",
             {"dx"}),
    "cross_entropy": ("    dlogits *= (counted[:, None] * (dloss / max(count, 1))).astype(probs.dtype)",
                      "    dlogits *= (counted[:, None] * (dloss / len(safe))).astype(probs.dtype)", {"dlogits"}),
    "embedding": ("    np.add.at(dw, ids.reshape(-1), dout.reshape(-1, C))",
                  "    dw[ids.reshape(-1)] += dout.reshape(-1, C)", {"dw"}),
    # a wrong step also makes the chained backward (which calls the student's steps) wrong
    "attention_ninja": ('    dEinv = (dP * c["E"]).sum(axis=-1, keepdims=True)', '    dEinv = dP * c["E"]',
                        {"step04_normalise", "attention_steps_backward"}),
    # a missing transpose in dk: dk, and what is computed from it (dwk, dbk, dx)
    "attention": ("    dk = dscores.transpose(0, 1, 3, 2) @ q  # (B, A, T, D)", "    dk = dscores @ q  # (B, A, T, D)",
                  {"dk", "dwk", "dbk", "dx"}),
    # the capstone: a forgotten residual; dx is wrong, and BERT trained on it parts from the reference
    "adamw": ("    v += (1 - beta2) * g * g", "    v += (1 - beta2) * g",
              {"v of the weight (decayed)", "v of the bias (not decayed)", "p of the weight (decayed)",
               "p of the bias (not decayed)"}),
    "masking": ("            if rng.random() < 0.8:", "            if rng.random() < 0.9:",
                {"80% [MASK]", "10% unchanged", "10% random"}),
    "encoder_layer": ("    dx = dx + dsum1  # the residual: x also went straight into the sum", "    dx = dx",
                      {"dx", "loss_curve"}),
}
# cheats of the linear assignment that must score 0 on dx, dw, db at autograde (issue 25): a solution cell
# that patches the hidden tests in the kernel, and one that wraps the installed reference
CHEATS = {
    "patcher": ("    dx = dout @ w  # (..., I)",
                "    return np.zeros_like(dout @ w), np.zeros((dout.shape[-1], w.shape[-1])), np.zeros(dout.shape[-1])"),
    "wrapper": ("    dx = dout @ w  # (..., I)",
                "    import minibert.layers.linear as _r\n    return _r.linear_backward(dout, cache)"),
}
CAPSTONE_STEPS = "20"  # the capstone notebook's training cell runs tens of steps in CI (300 for students)


def gid(item):
    """The grade id suffix of a graded item (``course.notebook``'s)."""
    return re.sub(r"\W+", "_", item).strip("_")


def nbgrader(course, *args):
    """One nbgrader command in the course directory, as an instructor types it; returns its output."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
               MINIBERT_CAPSTONE_STEPS=CAPSTONE_STEPS)
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def plant_bug(notebook_path, name):
    good, bad, _ = BUGS[name]
    nb = nbformat.read(str(notebook_path), as_version=4)
    hits = [c for c in nb.cells if good in c.source]
    assert len(hits) == 1 and hits[0].metadata["nbgrader"]["solution"], f"{name}: the line to break moved"
    hits[0].source = hits[0].source.replace(good, bad)
    nbformat.write(nb, str(notebook_path))


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course") / "minibert-course"
    subprocess.run([sys.executable, "-m", "minibert", "exercises", "course", str(course)], check=True,
                   capture_output=True)
    nbgrader(course, "generate_assignment", "--force", "--CourseDirectory.assignment_id=*")
    for name in NAMES:
        shutil.copytree(course / "source" / name, course / "submitted" / "answers" / name)
        shutil.copytree(course / "release" / name, course / "submitted" / "untouched" / name)
        shutil.copytree(course / "source" / name, course / "submitted" / "buggy" / name)
        plant_bug(course / "submitted" / "buggy" / name / f"{name}.ipynb", name)
    for student, (good, bad) in CHEATS.items():
        target = course / "submitted" / student / "linear"
        shutil.copytree(course / "source" / "linear", target)
        nb = nbformat.read(str(target / "linear.ipynb"), as_version=4)
        [cell] = [c for c in nb.cells if good in c.source]
        cell.source = cell.source.replace(good, bad)
        if student == "patcher":  # and, at the top level of the cell, the hidden tests patched in the kernel
            cell.source += "\n\nimport minibert.classroom.course as _c\n_c.grade_item = lambda *a, **k: None\n"
        nbformat.write(nb, str(target / "linear.ipynb"))
    log = nbgrader(course, "autograde", "--create", "--force", "--CourseDirectory.assignment_id=*")
    (course / "autograde.log").write_text(log)
    nbgrader(course, "generate_feedback", "--force", "--CourseDirectory.assignment_id=*",
             "--CourseDirectory.student_id=buggy")
    nbgrader(course, "export")
    return course


def cell_scores(course, student, name, autograded=True):
    """{grade cell id: (score, max_score)} from nbgrader's gradebook: the autograded cells, or (with
    ``autograded=False``) the written derivation, {id: (score, max_score, needs_manual_grade)}."""
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="minibert") as gb:
        nb = gb.find_submission_notebook(name, name, student)
        if autograded:
            return {g.name: (g.score, g.max_score) for g in nb.grades if "_test_" in g.name}
        return {g.name: (g.score, g.max_score, g.needs_manual_grade) for g in nb.grades if "_test_" not in g.name}


@pytest.mark.parametrize("name", NAMES)
def test_the_written_derivation_waits_for_a_hand_grade_and_an_untouched_one_scores_zero(course, name):
    points = PROBLEMS[name].points
    # the answers' copy holds the rubric, a changed cell: nbgrader leaves it to the instructor
    assert cell_scores(course, "answers", name, autograded=False) == {f"{name}_derivation": (0, points, True)}
    assert cell_scores(course, "untouched", name, autograded=False) == {f"{name}_derivation": (0, points, False)}


def test_every_assignment_is_written_with_nbgrader_metadata(course):
    assert (course / "nbgrader_config.py").is_file()
    for name in NAMES:
        nb = nbformat.read(str(course / "source" / name / f"{name}.ipynb"), as_version=4)
        meta = [c.metadata["nbgrader"] for c in nb.cells]
        assert all(m["schema_version"] == 3 for m in meta)
        tests = [m for m in meta if m["grade"] and not m["solution"]]
        written = [m for m in meta if m["grade"] and m["solution"]]  # the derivation, graded by hand
        assert [m["grade_id"] for m in written] == [f"{name}_derivation"]
        assert written[0]["points"] == PROBLEMS[name].points and not written[0]["locked"]
        assert [m["grade_id"].split("_test_", 1)[1] for m in tests] == \
            [gid(i) for i in G.items(name)], "one autograded cell per graded item"
        assert all(m["points"] > 0 and m["locked"] for m in tests)
        # the solution cells hold exactly the library's code between the markers
        sol = "\n".join(c.source for c in nb.cells if c.metadata["nbgrader"]["solution"])
        assert solution_lines(sol) == solution_lines(X.source_text(name))


def test_the_release_holds_no_line_of_any_solution(course):
    for name in NAMES:
        text = X.source_text(name)
        given = {l.strip() for l in X.student_version(text).splitlines()}
        answers = set(solution_lines(text)) - given  # a line the given code also has is not an answer
        release = nbformat.read(str(course / "release" / name / f"{name}.ipynb"), as_version=4)
        lines = {l.strip() for c in release.cells for l in c.source.splitlines()}
        assert not answers & lines, f"{name}: solution lines in the release: {answers & lines}"
        assert "BEGIN HIDDEN TESTS" not in "".join(c.source for c in release.cells)


@pytest.mark.parametrize("name", NAMES)
def test_the_answers_get_full_points(course, name):
    scores = cell_scores(course, "answers", name)
    assert scores and all(s == m for s, m in scores.values()), scores


@pytest.mark.parametrize("name", NAMES)
def test_the_untouched_release_gets_zero_on_every_graded_cell(course, name):
    scores = cell_scores(course, "untouched", name)
    assert scores and all(s == 0 for s, _ in scores.values()), scores


@pytest.mark.parametrize("name", NAMES)
def test_a_planted_bug_loses_only_the_cells_of_the_arrays_it_breaks_and_feedback_names_them(course, name):
    scores = cell_scores(course, "buggy", name)
    lost = {g.split("_test_", 1)[1] for g, (s, m) in scores.items() if s < m}
    assert lost == {gid(i) for i in BUGS[name][2]}, (lost, scores)
    feedback = (course / "feedback" / "buggy" / name / f"{name}.html").read_text()
    for item in BUGS[name][2]:
        assert f"{item}: WRONG" in feedback, item


def test_the_only_changed_attributes_are_the_checksums_of_the_untouched_releases_hidden_test_cells(course):
    """nbgrader stores a locked cell's checksum with its hidden tests in (generate_assignment saves the
    cells before ClearHiddenTests), so a handed-back release, without them, warns once per hidden-test
    cell and gets the stored source back (docs/instructors_guide.md, step 5). The copies of the source
    (``answers``, ``buggy``) hold the hidden tests and warn about nothing."""
    warned = re.findall(r"Attribute '(\w+)' for cell (\S+) has changed", (course / "autograde.log").read_text())
    hidden = [f"{name}_test_{gid(item)}" for name in NAMES for item in G.items(name)]
    assert sorted(warned) == sorted(("checksum", cell) for cell in hidden)


def test_export_writes_the_grades_csv(course):
    rows = list(csv.DictReader(open(course / "grades.csv")))
    by = {(r["student_id"], r["assignment"]): r for r in rows}
    for name in NAMES:
        possible = sum(G.points(name).values())  # autograded; the written derivation waits for a hand grade
        assert float(by["answers", name]["score"]) == possible
        assert float(by["answers", name]["max_score"]) == possible + PROBLEMS[name].points
        assert float(by["untouched", name]["score"]) == 0
        assert float(by["buggy", name]["score"]) == possible - len(BUGS[name][2])


@pytest.mark.parametrize("student", list(CHEATS))
def test_a_cheat_in_the_notebook_scores_zero_at_autograde(course, student):
    """The hidden tests' verdicts come from minibert's isolated grader (``IsolatedGrades``), not from the
    student's kernel: patching ``grade_item`` there, or wrapping the reference, earns nothing.  Seen
    failing (dx, dw, db full marks for the patcher) with IsolatedGrades left out of nbgrader_config.py."""
    scores = cell_scores(course, student, "linear")
    assert {k: v[0] for k, v in scores.items() if k.endswith(("_dx", "_dw", "_db"))} == \
        {"linear_test_dx": 0, "linear_test_dw": 0, "linear_test_db": 0}, scores


def test_the_feedback_has_the_integrity_line(course):
    nb = nbformat.read(str(course / "autograded" / "answers" / "attention" / "attention.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "INTEGRITY (for the instructor" in text and "copied?" in text
