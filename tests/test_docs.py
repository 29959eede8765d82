"""The derivation pages in docs/backward quote our code ("copied verbatim from the files named",
docs/index.md): a quote that no longer matches the code would teach a formula the library no longer
runs.  (The instructor's guide shows generated student copies, which are not quotes.)"""
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


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_path_is_a_file_of_the_repository(doc):
    """A path quoted in the docs, the README or a lesson names a file that exists (a file moved by a
    restructure, or one on the author's machine only, would send a reader nowhere)."""
    text = doc.read_text()
    assert "/work/" not in text, f"{doc.name} points at a path of the machine it was written on"
    missing = sorted({p for p in QUOTED_PATH.findall(text)
                      if not (ROOT / p).exists() and not re.search(r"[A-Z]{3,}", p)})  # NAME: a placeholder
    assert not missing, f"{doc.name} quotes paths that do not exist: {missing}"


def test_the_path_check_sees_a_moved_file():
    assert QUOTED_PATH.findall("see `minibert/train.py` and `minibert/training/loop.py`") == \
        ["minibert/train.py", "minibert/training/loop.py"]
    assert not (ROOT / "minibert/train.py").exists()
