"""The derivation pages in docs/backward quote our code ("copied verbatim from the files named",
docs/index.md): a quote that no longer matches the code would teach a formula the library no longer
runs.  (The instructor's guide shows generated student copies, which are not quotes.)  The same holds for
every line of code the README, the docs and the lessons quote as the library's (defined below), and for
every path they quote."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "backward").glob("*.md"))
SOURCE_LINES = {line.strip() for path in (ROOT / "minibert").rglob("*.py") for line in path.read_text().splitlines()}


def code_lines(block):
    return [l.strip() for l in block.splitlines() if l.strip() and not l.strip().startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_quoted_code_matches_the_library_line_for_line(page):
    """A python block is a quote when at least half of its code lines are lines of minibert (the rest
    are illustrations, e.g. formulas written out); every line of a quote must then be in minibert."""
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
        lines = code_lines(block)
        found = [l in SOURCE_LINES for l in lines]
        if lines and sum(found) * 2 >= len(lines):
            stale = [l for l, ok in zip(lines, found) if not ok]
            assert not stale, f"{page.name} quotes lines that are not in minibert any more: {stale}"


def test_the_check_finds_a_stale_quote():
    lines = code_lines("    x = cache\n    return p * (dp - (dp * p).sum(axis=-1))  # old\n")
    assert [l in SOURCE_LINES for l in lines] == [True, False]


DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "notebooks" / "src").glob("*.py"),
                    ROOT / "notebooks" / "README.md"])
QUOTED_PATH = re.compile(r"`((?:minibert|docs|notebooks|tests|benchmarks)/[\w/.-]+\.(?:py|md|ipynb))")
# a file of the package named from its folder, as docs/architecture.md does: `training/loop.py`
PACKAGE_PATH = re.compile(r"`((?:layers|kernels|models|data|training|classroom)/[\w/.-]+\.py)`(?! \(removed)")
# Paths the docs already name for a module being written on another branch; each entry must leave this list
# (the test below says so) once the module exists, or once the docs name it otherwise.
PENDING = {}


def missing_paths(text):
    """The quoted paths of ``text`` that name no file (``NAME``-like paths are placeholders)."""
    paths = [(p, ROOT / p) for p in QUOTED_PATH.findall(text)]
    paths += [(p, ROOT / "minibert" / p) for p in PACKAGE_PATH.findall(text)]
    return sorted({p for p, where in paths
                   if not where.exists() and not re.search(r"[A-Z]{3,}", p) and p not in PENDING})


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_path_is_a_file_of_the_repository(doc):
    """A path quoted in the docs, the README or a lesson names a file that exists (a file moved by a
    restructure, or one on the author's machine only, would send a reader nowhere); a path of the
    package may be written from its folder (`layers/linear.py`), or be marked "(removed ...)" as history."""
    text = doc.read_text()
    assert "/work/" not in text, f"{doc.name} points at a path of the machine it was written on"
    missing = missing_paths(text)
    assert not missing, f"{doc.name} quotes paths that do not exist: {missing}"


def test_the_path_check_sees_a_moved_file():
    assert QUOTED_PATH.findall("see `minibert/train.py` and `minibert/training/loop.py`") == \
        ["minibert/train.py", "minibert/training/loop.py"]
    assert not (ROOT / "minibert/train.py").exists()
    assert missing_paths("`training/train.py`, `training/loop.py`, `layers/erf.py` (removed in 2026), "
                         "`layers/NAME.py`") == ["training/train.py"]


def test_a_pending_path_is_still_pending():
    """A PENDING path stays in the list only while its module does not exist and the docs still name it."""
    for path in PENDING:
        assert not (ROOT / "minibert" / path).exists(), f"minibert/{path} exists now: remove it from PENDING"
        assert any(path in doc.read_text() for doc in DOC_FILES), f"no doc names {path} any more: remove it from PENDING"


# -- lines of code the prose quotes as the library's ---------------------------------------------------
# A quote is a line of code the text presents as minibert's ("then `dh = dh + dsum2`, the residual").
# Precisely: in prose (README.md, docs/**/*.md, notebooks/README.md, and the markdown cells and comments of
# notebooks/src/*.py), an inline code span, or a line of a ```python block, that is
#   * one Python assignment statement (x = ..., x += ..., x: T = ...), written as a statement: spaces
#     around the operator (`lr=1e-4`, `is_decoder=True` are keyword arguments and options, not lines), and
#   * about a line of the library: some assignment in minibert/ uses exactly its names (variables and
#     attributes, both sides).  Sharing every name with a library line is what makes `dh += dsum2` a
#     quote of `dh = dh + dsum2`; a formula such as `D = C / A` or an example of the reader's own
#     (`out = W[ids]`) shares no library line's names and is prose.
# A quote must be a statement of minibert, compared as ast.unparse (spacing and redundant parentheses
# aside).  Not seen: a quote none of whose library lines is left with its names (rename a variable and
# its quotes stop being quotes); the path test and the lessons' show() cells, which print the code itself,
# cover much of that.

PROSE_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / "notebooks" / "README.md",
                      *(ROOT / "notebooks" / "src").glob("*.py")])
INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
STATEMENT_OPERATOR = re.compile(r"\s(?:[-+*/@%&|^]|//|\*\*|>>|<<)?=\s")
NOT_QUOTES = {  # (file, line): why a line that looks like a quote is not one
    ("docs/instructors_guide.md", "v += (1 - beta2) * g"): "a planted bug: the gradient where its square belongs",
    ("docs/instructors_guide.md", "ids = [[3, 3]]"): "a live demo's input (a repeated id), not the library's line",
}
ASSIGNMENTS = (ast.Assign, ast.AugAssign, ast.AnnAssign)


def names_of(node):
    """Variables and attributes a statement mentions: {'dh', 'dsum2'} for ``dh += dsum2``."""
    return frozenset(n.id if isinstance(n, ast.Name) else n.attr
                     for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute)))


def library_assignments(root=ROOT / "minibert"):
    """{names: {unparsed statement, ...}} of every assignment in the package."""
    found = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ASSIGNMENTS):
                found.setdefault(names_of(node), set()).add(ast.unparse(node))
    return found


LIBRARY = library_assignments()


def prose_of(path):
    """The text of a prose file; of a lesson source, its markdown cells and its code's comments."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return text
    out, markdown = [], False
    for line in text.splitlines():
        if line.startswith("# %%"):
            markdown = "[markdown]" in line
        elif markdown and line.startswith("#"):
            out.append(line[2:])
        elif not markdown and "#" in line:
            out.append(line[line.index("#") + 1:])  # a comment, or a '#' in a string: prose either way
    return "\n".join(out)


def candidate_lines(text):
    """Inline code spans outside code blocks, and the lines of ```python blocks."""
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    spans = INLINE_CODE.findall(re.sub(r"```.*?```", "", text, flags=re.S))
    return spans + [line for block in blocks for line in block.splitlines()]


def stale_quotes(text, library=None):
    """[(quoted line, the library's lines with its names)] of the quotes in ``text`` that are not in minibert."""
    library = LIBRARY if library is None else library
    stale = []
    for line in candidate_lines(text):
        code = line.strip()
        if not STATEMENT_OPERATOR.search(code):
            continue
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        if len(tree.body) != 1 or not isinstance(tree.body[0], ASSIGNMENTS):
            continue
        same_names = library.get(names_of(tree.body[0]), set())
        if same_names and ast.unparse(tree.body[0]) not in same_names:
            stale.append((code, sorted(same_names)))
    return stale


@pytest.mark.parametrize("doc", PROSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_line_of_code_quoted_as_the_librarys_is_in_the_library(doc):
    name = str(doc.relative_to(ROOT))
    stale = [(q, lib) for q, lib in stale_quotes(prose_of(doc)) if (name, q) not in NOT_QUOTES]
    assert not stale, (f"{name} quotes lines that are not minibert's (the library's lines with the same names "
                       f"follow each): {stale}")


def test_the_quote_check_sees_a_changed_line_and_leaves_prose_alone():
    library = {names_of(ast.parse(s).body[0]): {ast.unparse(ast.parse(s).body[0])}
               for s in ("dh = dh + dsum2", "dx = dx + dsum1", "D = C // A")}
    text = ("then `dh += dsum2` (the residual), and `dx = dx + dsum1`; with `lr=1e-4` and `out = W[ids]`\n"
            "```python\nD = C / A\nx = (y)\n```\n")
    assert stale_quotes(text, library) == [("dh += dsum2", ["dh = dh + dsum2"]), ("D = C / A", ["D = C // A"])]
    # the lesson's lines as they were (issue 26), against the real library
    assert [q for q, _ in stale_quotes("`dh += dsum2` ... `dx += dsum1`")] == ["dh += dsum2", "dx += dsum1"]
    for path, line in NOT_QUOTES:  # an exception that no longer matches anything must go
        assert line in (ROOT / path).read_text(), f"NOT_QUOTES lists {line!r}, which {path} no longer holds"
