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
