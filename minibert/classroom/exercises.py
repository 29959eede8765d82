"""Classroom exercises: write BERT's backward passes yourself, graded by gradient checks.

    minibert exercises list                       the exercises, in the suggested order
    minibert exercises make OUTDIR                write the student copies into OUTDIR
    minibert exercises check [NAME ...] [--dir D] grade the copies in D (default: the current
                                                  directory if `make` wrote it, else the reference)

**Where the solutions live.**  In the library itself: the exercise ``linear`` is
``minibert/layers/linear.py``, and so on for softmax, layernorm, gelu, cross_entropy, embedding and
attention; the one exercise that is not a layer, ``minibert/classroom/attention_ninja.py``, cuts the
forward of attention into atomic steps.  So a student who passes has written the code minibert runs,
and there is no copy to keep in step.  What the student writes is marked with nbgrader's markers, each
alone on its line, below a ``# TODO`` comment with hints (comments: the library runs as if they were
not there)::

    # TODO: the three gradients dx, dw, db.
    #   hint: ...
    ### BEGIN SOLUTION
    dx = dout @ w
    ...
    ### END SOLUTION

**The checks live in the source too**, at the bottom of each file: ``gradcheck_cases(rng)``, the
layer's one table of gradient checks (``minibert.gradcheck.GradCase``), and ``test_NAME()``, which
runs it (``pytest minibert/layers/NAME.py``); the checks the student should not see sit between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, in the table or in the test.  We keep them
there rather than generate them in ``make`` because that is the simpler design: one file holds a
solution and its checks, so a teacher can hand it to nbgrader as it is (the table and the test
together are the "Autograder tests" cell: nbgrader accepts hidden tests only in such a cell),
and ``make`` stays a text filter with no code templates.

**make** copies every source, replacing each solution region by
``raise NotImplementedError("TODO (function): ...")`` (the TODO and its hints stay above it),
deleting the hidden tests, and making relative imports absolute (``from .softmax import ...`` becomes
``from minibert.layers.softmax import ...``, so a student's attention uses the library's softmax).  The
copies run as they are (``python linear.py`` runs the visible checks, which fail until the TODOs are
done).

**check** is ``grader.py``: it runs the library's table of each exercise, hidden cases included, on
the student's functions, and names every wrong array.  The exit code is 0 when every graded exercise
passes, 1 otherwise, 2 on a usage error.
"""
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKER_FILE = ".minibert-exercises.json"  # written by `make`; `check` recognises a student directory by it


# ------------------------------------------------------------------------------------------------
# Solution regions: parsing, and the student copy
# ------------------------------------------------------------------------------------------------

@dataclass
class Region:
    kind: str            # "solution" or "hidden"
    begin: int           # line index of the BEGIN marker
    end: int             # line index of the END marker
    indent: str = ""     # the BEGIN marker's indentation
    function: str = ""   # the enclosing function's name
    todo: str = ""       # the TODO text (solution regions), continuation lines joined


def parse_regions(text, filename="<source>"):
    """Every marked region of ``text``, in order; a ValueError naming the file and line if the markers
    are malformed (not alone on their line, unbalanced, nested, or a solution without a TODO above it)."""
    lines = text.splitlines()
    regions, open_region = [], None
    markers = {BEGIN_SOLUTION: ("solution", True), END_SOLUTION: ("solution", False),
               BEGIN_HIDDEN: ("hidden", True), END_HIDDEN: ("hidden", False)}
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped in markers:
            kind, is_begin = markers[stripped]
            if is_begin:
                if open_region is not None:
                    raise ValueError(f"{filename}:{i + 1}: {stripped!r} inside the region opened at line "
                                     f"{open_region.begin + 1}; regions cannot nest")
                open_region = Region(kind, i, -1, line[:len(line) - len(line.lstrip())])
            else:
                if open_region is None or open_region.kind != kind:
                    raise ValueError(f"{filename}:{i + 1}: {stripped!r} without a matching BEGIN")
                open_region.end = i
                regions.append(open_region)
                open_region = None
        elif "### BEGIN" in line or "### END" in line:
            raise ValueError(f"{filename}:{i + 1}: a marker must be alone on its line (nbgrader compares "
                             f"the stripped line exactly), got {stripped!r}")
    if open_region is not None:
        raise ValueError(f"{filename}:{open_region.begin + 1}: region never closed")
    for r in regions:
        r.function = _enclosing_function(lines, r.begin)
        if r.kind == "solution":
            r.todo = _todo_above(lines, r.begin, filename)
    return regions


def _enclosing_function(lines, i):
    for j in range(i, -1, -1):
        s = lines[j].lstrip()
        if s.startswith("def "):
            return s[4:].split("(")[0]
    return "<module>"


def _todo_above(lines, i, filename):
    """The ``# TODO:`` comment in the comment block right above line ``i``, continuation lines joined."""
    j = i - 1
    while j >= 0 and lines[j].strip().startswith("#"):
        j -= 1
    block = [l.strip().lstrip("#").strip() for l in lines[j + 1:i]]
    starts = [n for n, l in enumerate(block) if l.startswith("TODO")]
    if not starts:
        raise ValueError(f"{filename}:{i + 1}: a solution region needs a '# TODO: ...' comment (with hints) "
                         "right above it; the student copy keeps it")
    todo = [block[starts[0]].split(":", 1)[-1].strip()]
    for l in block[starts[0] + 1:]:
        if l.startswith("hint") or not l:
            break
        todo.append(l)
    return " ".join(todo)


def student_version(text, filename="<source>"):
    """The student copy of an exercise source: each solution region becomes one
    ``raise NotImplementedError("TODO (function): ...")`` at the region's indentation (the TODO and
    hints above it are kept), and each hidden-tests region disappears."""
    lines = text.splitlines()
    regions = parse_regions(text, filename)
    out, pos = [], 0
    for r in regions:
        out.extend(lines[pos:r.begin])
        if r.kind == "solution":
            message = f"TODO ({r.function}): {r.todo}"
            out.append(f"{r.indent}raise NotImplementedError({message!r})")
        pos = r.end + 1
    out.extend(lines[pos:])
    return "\n".join(out) + "\n"


def source_path(name):
    """The file of exercise ``name`` (with its solutions): a file of ``minibert/layers``, or the ninja's."""
    return Path(importlib.util.find_spec(EXERCISES[name].module).origin)


_RELATIVE_IMPORT = re.compile(r"^(\s*from\s+)(\.[\w.]*)(\s+import\b)", re.M)


def source_text(name):
    """The source of exercise ``name`` as a file that runs outside the package: the module's text with
    its relative imports made absolute (``from .softmax import`` -> ``from minibert.layers.softmax
    import``)."""
    package = EXERCISES[name].module.rpartition(".")[0]
    text = source_path(name).read_text(encoding="utf-8")
    return _RELATIVE_IMPORT.sub(lambda m: m[1] + importlib.util.resolve_name(m[2], package) + m[3], text)


def make(outdir, force=False, names=None):
    """Write the student copies of ``names`` (default: every exercise) into ``outdir``; returns the paths.

    Refuses to overwrite an exercise file that is already there unless ``force``: it may hold a
    student's work."""
    names = exercise_names(names)
    outdir = Path(outdir)
    targets = [outdir / f"{n}.py" for n in names]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"exercises make: {', '.join(existing)} already exist(s) and may hold a student's "
                              "work; choose another directory or pass --force to overwrite")
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, target in zip(names, targets):
        text = student_version(source_text(name), str(source_path(name)))
        header = (f"# Student copy of {EXERCISES[name].module.replace('.', '/')}.py, written by "
                  "`minibert exercises make`.\n"
                  f"# Replace every `raise NotImplementedError(...)` by your code, then run `python {name}.py`\n"
                  f"# and `minibert exercises check {name} --dir .`\n")
        compile(header + text, str(target), "exec")  # the copy must be valid Python
        target.write_text(header + text, encoding="utf-8")
        written.append(target)
    readme = outdir / "README.md"
    if force or not readme.exists():
        readme.write_text(_student_readme(names), encoding="utf-8")
    (outdir / MARKER_FILE).write_text(json.dumps({"minibert_exercises": 1, "exercises": names}, indent=1) + "\n",
                                      encoding="utf-8")
    return written


def _student_readme(names):
    rows = "\n".join(f"| `{n}.py` | {EXERCISES[n].title} | `docs/{EXERCISES[n].docs}` |" for n in names)
    return f"""# minibert exercises

Write BERT's backward passes yourself. **Derive first, on paper**: each function's docstring and the
`# forward:` comments give the forward and the shapes; write one entry of the output, differentiate it,
sum what the chain rule touches, and check every result's shape (minibert's `docs/math_primer.md`).
Then, in each file, replace every `raise NotImplementedError(...)` by your code; the `# TODO` above it
says what to compute, the `hint:` lines what to differentiate. Then:

```bash
python linear.py                          # the checks in the file: float64 gradient checks
minibert exercises check linear --dir .   # the grade: more cases, compared with the reference
minibert exercises check --dir .          # every exercise
```

The grade prints one line per array, `name | exact | approx | maxdiff`, then the relative error
against the reference and against finite differences: a correct float64 gradient is below 1e-7
(typically 1e-10), a wrong one around 1e-2 or worse. The worked derivations are in minibert's
`docs/backward/`: compare yours with them *after* you have derived it.

| file | exercise | the worked derivation, for after |
|---|---|---|
{rows}

Keep the functions' names, arguments and caches as the docstrings give them: the grader calls them.
"""


# ------------------------------------------------------------------------------------------------
# The exercises (their grading is grader.py)
# ------------------------------------------------------------------------------------------------

@dataclass
class Exercise:
    name: str
    title: str
    docs: str
    module: str = ""  # the module holding the solutions and the table of checks; default: minibert.layers.NAME

    def __post_init__(self):
        self.module = self.module or f"minibert.layers.{self.name}"


EXERCISES = {e.name: e for e in [
    Exercise("linear", "the linear layer: dx, dW, db", "backward/linear.md"),
    Exercise("softmax", "stable softmax with a padding mask, and its backward", "backward/softmax.md"),
    Exercise("layernorm", "LayerNorm forward and its three-term backward", "backward/layernorm.md"),
    Exercise("gelu", "GELU, exact (erf) and tanh forms, each with its own backward", "backward/gelu.md"),
    Exercise("cross_entropy", "fused softmax cross-entropy with ignore_index", "backward/cross_entropy.md"),
    Exercise("embedding", "the embedding lookup and its scatter-add backward", "backward/embedding.md"),
    Exercise("attention_ninja", "backprop ninja: attention through 13 atomic steps, then the fused softmax",
             "backward/attention.md", module="minibert.classroom.attention_ninja"),
    Exercise("attention", "multi-head attention's backward in the library's compact form",
             "backward/attention.md"),
    Exercise("adamw", "the AdamW update, checked over several steps of BERT's warmup-and-decay schedule",
             "backward/adamw.md"),
    Exercise("masking", "BERT's masking: 15% of the tokens, 80/10/10, never a special token, checked by "
             "statistics over many draws", "pretraining.md", module="minibert.data.pretraining"),
    Exercise("encoder_layer", "the capstone, your BERT, your backward: a whole encoder layer's backward "
             "(residuals, two LayerNorms, dropout), then BERT pretrained on it next to the reference",
             "backward/tied_weights.md"),
]}


def exercise_names(names=None):
    """``names`` as a list (default: every exercise, in order); a ValueError naming any unknown one."""
    names = list(names or EXERCISES)
    unknown = [n for n in names if n not in EXERCISES]
    if unknown:
        raise ValueError(f"unknown exercise(s) {', '.join(map(repr, unknown))}; the exercises are: "
                         f"{', '.join(EXERCISES)}")
    return names


# ------------------------------------------------------------------------------------------------
# The command line: `minibert exercises ...`
# ------------------------------------------------------------------------------------------------
