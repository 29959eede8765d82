"""The nbgrader course: ``minibert exercises course DIR``.

Writes a complete nbgrader course directory, generated from the library's own sources::

    DIR/nbgrader_config.py
    DIR/source/<assignment>/<assignment>.ipynb      one assignment per exercise, in the suggested order
    DIR/derivations/<assignment>.md                 the worked derivation: feedback, after grading

Each notebook reads as a lesson, top to bottom:

* a Markdown cell with the assignment, its points and how it is graded (read-only);
* the problem (read-only): the forward, its computational graph and the shapes, what to derive and
  hints that never state the result (``derivations.py``); then the **written derivation**, a manually
  graded answer cell worth the problem's points, holding the instructor's rubric (the release replaces
  it by "YOUR ANSWER HERE").  The worked derivation, ``docs/backward/<page>.md``, is not in the
  notebook: ``write_course`` puts it in ``DIR/derivations/``, the feedback released after grading;
* the exercise's source file, one cell per top-level function: a function with a ``### BEGIN
  SOLUTION`` region is an nbgrader *solution* cell holding exactly the library's code between the
  markers (nbgrader's ``generate_assignment`` replaces it by ``raise NotImplementedError()``), every
  other function is read-only given code;
* the visible check: the file's table of gradient checks and its ``test_NAME()`` without the hidden
  cases, printing each array's relative error next to the range it should fall in (read-only);
* the hidden tests: one *autograded test* cell per graded item (per array of a layer, per step of the
  backprop ninja), each worth its points, so that a wrong ``dk`` costs ``dk``'s point and nothing
  else.  Each calls ``grade_item`` below, which grades the notebook's functions on the library's
  table, hidden cases included (the very table ``minibert exercises check`` and the tests use), in
  the isolated grader, and fails with a message naming the wrong array.  At ``nbgrader autograde`` the
  course's ``nbgrader_config.py`` regrades the notebook outside the student's kernel
  (``grading/notebook.py``'s ``IsolatedGrades``), so no student cell can patch the hidden tests.

So the course cannot drift from the library: the answers are the library's code, and the tests are
the library's tables.  The round trip through nbgrader itself (generate, autograde the answers, the
untouched release and planted bugs, export) is ``tests/classroom/test_course.py``.
"""
import ast
import json
import re
from pathlib import Path

from .exercises import (BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION, EXERCISES, exercise_names,
                        parse_regions, source_path, source_text)
from .derivations import PROBLEMS, problem_markdown, rubric_markdown
from .grader import item_scores, items, points

# docs/ of the repository; an installed wheel holds it as minibert/docs (setup.py)
DOCS_DIR = next((d for d in (Path(__file__).resolve().parents[1] / "docs", Path(__file__).resolve().parents[2] / "docs")
                 if d.is_dir()), Path(__file__).resolve().parents[2] / "docs")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}

NBGRADER_CONFIG = '''\
# nbgrader configuration of the minibert course, written by `minibert exercises course`.
c = get_config()  # noqa: F821 -- provided by nbgrader
c.CourseDirectory.course_id = "minibert"
# The hidden tests run the library's gradient checks (finite differences over every entry): allow time.
c.Execute.timeout = 600
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
# The grade comes from minibert's isolated grader, not from the student's kernel (where a student cell could
# patch the hidden tests): IsolatedGrades, right after Execute, regrades the notebook's code in a process of
# its own and writes each hidden-test cell's verdict (docs/grading.md).
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, Execute, IgnorePattern,  # noqa: E402
                                    LimitOutput, SaveAutoGrades)
from minibert.classroom.grading.notebook import IsolatedGrades  # noqa: E402
c.Autograde.autograde_preprocessors = [Execute, IsolatedGrades, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
'''


# cells an assignment adds after its visible check: the capstone trains BERT on the student's layer
CAPSTONE_STEPS_VARIABLE = "MINIBERT_CAPSTONE_STEPS"  # CI sets it to tens of steps; students get 300
EPILOGUES = {"encoder_layer": [
    ("markdown", "## Your BERT, your backward\n\n"
     "Now train it. The cell below pretrains a tiny BERT (2 layers, C = 32, dropout 0.1, MLM + NSP on the "
     "synthetic corpus, AdamW with warmup and decay, float64) twice from the same seed on the same batches: "
     "once on minibert's reference layers, once on **your** `encoder_layer_forward`/`encoder_layer_backward` "
     "(`minibert.set_backend(yours)`: the model calls your pair for every layer). When your backward is right "
     "the two loss curves coincide, to the last bit or within float64 rounding (the gap stays below 1e-8); "
     "a wrong gradient moves the very first update and the curves part.\n\n"
     "To train on more of your own code, put your other layer functions (`layernorm_backward`, "
     "`attention_backward`, ...) in the namespace too, or pass the directory of your exercise files: "
     "`capstone.train_side_by_side(\"my_exercises/\")`."),
    ("code", "import os\nimport types\n\nfrom minibert.classroom import capstone\n\n"
     f"STEPS = int(os.environ.get({CAPSTONE_STEPS_VARIABLE!r}, \"300\"))  # 300 steps: about 7 s of CPU (2-core AMD EPYC)\n"
     "yours = types.SimpleNamespace(encoder_layer_forward=encoder_layer_forward,\n"
     "                              encoder_layer_backward=encoder_layer_backward, __name__=\"your encoder layer\")\n"
     "run = capstone.train_side_by_side(yours, steps=STEPS)\n"
     "print(run)\n"
     "run.plot();"),
]}


# ---- what a notebook is made of ------------------------------------------------------------------

def _meta(kind, grade_id, points=0):
    """nbgrader's cell metadata (schema 3) for a cell of ``kind``: "solution", "test" (autograded,
    with points), "written" (a manually graded answer, with points: the written derivation) or "given"
    (read-only)."""
    m = {"grade": kind in ("test", "written"), "grade_id": grade_id, "locked": kind not in ("solution", "written"),
         "schema_version": 3, "solution": kind in ("solution", "written"), "task": False}
    if kind in ("test", "written"):
        m["points"] = points
    return {"nbgrader": m}


def _drop_hidden(text):
    """``text`` without its hidden-tests regions (they live in the autograded cells instead)."""
    lines, out, hidden = text.split("\n"), [], False
    for line in lines:
        if line.strip() == BEGIN_HIDDEN:
            hidden = True
        elif line.strip() == END_HIDDEN:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


def solution_lines(text):
    """The code lines (stripped, comments and blanks left out) between solution markers of ``text``."""
    lines = text.splitlines()
    found = []
    for r in parse_regions(text):
        if r.kind == "solution":
            found += [l.strip() for l in lines[r.begin + 1:r.end] if l.strip() and not l.strip().startswith("#")]
    return found


def _chunks(text):
    """The top-level pieces of a source file: (first line of each def/class with the comments right
    above it) -> text.  The first piece is the module docstring and imports."""
    lines = text.split("\n")
    starts = []
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.If)):
            i = (node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno) - 1
            while i > 0 and lines[i - 1].startswith("#"):
                i -= 1
            starts.append((i, node))
    pieces = [("header", None, "\n".join(lines[:starts[0][0]]))] if starts else [("header", None, text)]
    for n, (i, node) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        name = node.name if hasattr(node, "name") else "main"
        pieces.append((name, node, "\n".join(lines[i:end])))
    return [(name, node, piece.strip("\n")) for name, node, piece in pieces if piece.strip()]


def _derivation(name, answers):
    """The exercise's worked derivation, ``docs/backward/<page>.md``, as Markdown: the feedback released
    after grading (``write_course`` writes it to ``DIR/derivations/``).  Each fenced code block that
    quotes a line of ``answers`` (the other exercises' answers: attention.md, the ninja's feedback, holds
    the ``attention`` assignment's code) is replaced by a note."""
    path = DOCS_DIR / EXERCISES[name].docs
    if not path.is_file():
        return f"(The derivation is `docs/{EXERCISES[name].docs}` in minibert's repository.)"
    text = path.read_text(encoding="utf-8")
    from .lessons import _normalise
    answers = {_normalise(a) for a in answers}

    def block(m):
        body = m.group(0)
        if any(_normalise(l) in answers for l in body.splitlines() if _normalise(l)):
            return "*(code block left out: it is the code you write below)*"
        return body
    text = re.sub(r"^```.*?^```[ \t]*$", block, text, flags=re.S | re.M)
    return text


_WORKED = re.compile(r"(?:``)?docs/backward/\w+\.md(?:``)?(?: and (?:``)?docs/backward/\w+\.md(?:``)?)?")


def _without_worked_derivation(text):
    """``text`` with every pointer to a worked derivation (``docs/backward/*.md``) replaced: in the
    course the student derives first, and the worked page is the feedback after grading."""
    return _WORKED.sub("the derivation you write above (the worked one comes with your feedback)", text)


def notebook(name, number=0):
    """The nbgrader source notebook of exercise ``name`` (an ``nbformat`` NotebookNode)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    ex = EXERCISES[name]
    text = source_text(name)
    pts = points(name)
    cells = []

    def md(source, gid):
        c = new_markdown_cell(source)
        c.metadata.update(_meta("given", gid))
        cells.append(c)

    def code(source, kind, gid, p=0):
        c = new_code_cell(source)
        c.metadata.update(_meta(kind, gid, p))
        cells.append(c)

    table = "\n".join(f"| `{item}` | {p} |" for item, p in pts.items())
    md(f"# Assignment {number}: {ex.title}\n\n"
       f"Exercise `{name}` of minibert, the very code of `{ex.module.replace('.', '/')}.py`.\n\n"
       "**What to do.** First derive: the problem below gives the forward, its computational graph and the "
       "shapes; write the derivation in the answer cell under it (graded by hand, "
       f"{PROBLEMS[name].points} points). "
       "Then fill in every cell that says `# YOUR CODE HERE` "
       "(the `# TODO` above it says what to compute, the `hint:` lines how). Keep the functions' names, "
       "arguments and caches: the grader calls them. Run the *visible check* cell: it prints every "
       "array's relative error next to the range it must fall in (a correct float64 gradient is below "
       "1e-7, typically 1e-10; a wrong one is around 1e-2 or worse).\n\n"
       "**How it is graded.** The hidden tests at the bottom run more cases than the visible check (the "
       "library's own table, hidden cases included) and compare every array with the reference and with "
       "finite differences. Each array is worth its own points, so one wrong gradient costs only its "
       f"points. Write your own code: a function imported from minibert scores zero.\n\n"
       f"| graded item | points |\n|---|---|\n| written derivation (by hand) | {PROBLEMS[name].points} |\n"
       f"{table}\n| **total** | **{sum(pts.values()) + PROBLEMS[name].points}** |\n",
       f"{name}_intro")
    md(problem_markdown(name), f"{name}_problem")
    answer = new_markdown_cell(rubric_markdown(name))  # a manually graded answer: the release empties it
    answer.metadata.update(_meta("written", f"{name}_derivation", PROBLEMS[name].points))
    cells.append(answer)
    test_fn = f"test_{name}"
    for piece_name, node, piece in _chunks(text):
        if piece_name == "main" or piece.startswith("if __name__"):
            continue
        piece = _without_worked_derivation(_drop_hidden(piece))
        if piece_name == test_fn:
            md("## The visible check\n\nRun it after each function you write: it prints each array's "
               "relative error next to the range it should fall in, and fails naming the wrong ones.",
               f"{name}_check_intro")
            code(piece + f"\n\n\n{test_fn}()", "given", f"{name}_visible_check")
            continue
        has_solution = BEGIN_SOLUTION in piece
        code(piece, "solution" if has_solution else "given", f"{name}_{piece_name}")
    for kind, source in EPILOGUES.get(name, ()):
        if kind == "markdown":
            md(source, f"{name}_epilogue_{len(cells)}")
        else:
            code(source, "given", f"{name}_epilogue_{len(cells)}")
    md("## Hidden tests\n\nOne cell per graded item; each is worth the points shown in the table at the "
       "top, and its message names the array when it is wrong.", f"{name}_tests_intro")
    for item, p in pts.items():
        gid = f"{name}_test_" + re.sub(r"\W+", "_", item).strip("_")
        code(f"# graded: {item} ({p} point{'s' if p != 1 else ''}), on every case of the library's table\n"
             f"{BEGIN_HIDDEN}\n"
             "from minibert.classroom.course import grade_item\n"
             f"grade_item({name!r}, {item!r}, globals())\n"
             f"{END_HIDDEN}", "test", gid, p)
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    nbformat.validate(nb)
    return nb


def write_course(outdir, names=None, force=False):
    """Write the nbgrader course directory ``outdir`` (see the module docstring); returns the notebooks'
    paths.  Refuses to overwrite an existing ``source/`` notebook unless ``force``."""
    import nbformat
    names = exercise_names(names)
    outdir = Path(outdir)
    targets = [outdir / "source" / n / f"{n}.ipynb" for n in names]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"exercises course: {', '.join(existing)} already exist(s); choose another "
                              "directory or pass --force to overwrite")
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    order = list(EXERCISES)
    for name, target in zip(names, targets):
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook(name, order.index(name) + 1), str(target))
    # the worked derivations: feedback after grading, kept out of source/ so nbgrader never releases them
    feedback = outdir / "derivations"
    feedback.mkdir(exist_ok=True)
    for name in names:
        others = {line for other in EXERCISES if other != name for line in solution_lines(source_text(other))}
        (feedback / f"{name}.md").write_text(_derivation(name, others), encoding="utf-8")
    return targets


# ---- what the hidden tests call ------------------------------------------------------------------

def grade_item(name, item, namespace):
    """The hidden test of one graded item: grade the notebook's functions (``namespace``, the notebook's
    ``globals()``) on exercise ``name``'s table in the isolated grader (``grading/notebook.py``: their
    source goes to a file, graded in a process of its own), print the item's lines, and raise
    AssertionError naming the array unless ``item`` is right in every case.  At ``nbgrader autograde``
    this cell's outcome is replaced by ``IsolatedGrades``'s, computed outside the student's kernel, so
    there the kernel does not grade a second time."""
    import os
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":
        print(f"{item}: graded by minibert's isolated grader after this notebook has run")
        return
    from .grading.notebook import grade_namespace
    result = grade_namespace(name, namespace)
    [(_, earned, possible, message)] = [s for s in item_scores(result) if s[0] == item]
    labels = {label for label, _ in items(name)[item]}
    mine = [l for l in result.lines if l.split("|")[0].strip() in labels]
    print("\n".join(mine[:12]))
    print(message)
    for flag in result.integrity:
        print(f"INTEGRITY (for the instructor; no points change): {flag}")
    if earned < possible:
        raise AssertionError(message)
