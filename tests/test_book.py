"""The book (``./run book``, ``book/build.py``) builds, and a real browser finds nothing wrong in it.

The site is built into a temporary folder exactly as ``./run book`` builds it: every lesson executed
(``notebooks/run_notebooks.py``; the copies that ``tests/test_notebooks.py`` stored are reused, so CI
executes each lesson once: a per-lesson lock makes the two wait for each other under pytest-xdist),
MkDocs ``--strict``, then the static link/image check. Then Debian's Chromium, driven by Playwright
(``book/browser_check.py``), opens every page: no console error, the math typeset (no raw ``$$``, formulas
on every derivation page), every image loaded with a non-zero size and each lesson showing as many as its
executed notebook has figures, every internal link and anchor resolving.

The checks are shown to fail: a small site with one fault of each kind, and a lesson that raises.
"""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
sys.path.insert(0, str(ROOT / "notebooks"))

import browser_check  # noqa: E402
import build  # noqa: E402
import check_site  # noqa: E402
import run_notebooks  # noqa: E402


def _need_chromium():
    if not os.access(browser_check.CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {browser_check.CHROMIUM}: apt-get install -y chromium (.ci/run does)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "site"
    # under pytest-xdist the other worker executes lessons too: one kernel each keeps 2 cores at 2 kernels
    build.build(out, jobs=1 if os.environ.get("PYTEST_XDIST_WORKER") else None)
    return out


def test_the_book_builds_and_chromium_finds_every_page_right(site):
    _need_chromium()
    lessons = run_notebooks.lessons()
    for nb in lessons:  # every lesson is a page, beside the notebook it was made from
        assert (site / "notebooks" / f"{nb.stem}.html").is_file(), f"no page for {nb.name}"
        assert (site / "notebooks" / "download" / nb.name).read_bytes() == nb.read_bytes()  # the file to download
    for page in list((ROOT / "docs").rglob("*.md")):
        assert (site / page.relative_to(ROOT).with_suffix(".html")).is_file(), f"no page for {page}"
    assert (site / "index.html").is_file() and (site / "api" / "minibert.layers.linear.html").is_file()
    api = (site / "api" / "minibert.layers.linear.html").read_text(encoding="utf-8")
    assert "linear_backward" in api and "(..., O) -&gt; dx (..., I), dw (O, I), db (O,)" in api  # docstring shapes
    derivation = (site / "docs" / "backward" / "linear.html").read_text(encoding="utf-8")
    assert "../../api/minibert.layers.linear.html" in derivation  # links to the code it quotes
    lesson = (site / "notebooks" / "03_attention.html").read_text(encoding="utf-8")
    assert 'href="download/03_attention.ipynb"' in lesson and "jupyter lab notebooks/03_attention.ipynb" in lesson
    assert "../docs/backward/attention.html" in lesson  # the lesson's own link to its derivation, made to work
    # the step-through pages (minibert trace --html) of lesson 11's toy BERT and of BERT-Tiny, linked from lesson 11;
    # Chromium opens them with every other page
    assert 'href="../trace/toy.html"' in (site / "notebooks" / "11_one_sentence.html").read_text(encoding="utf-8")
    for name in ("toy", "tiny"):
        page = (site / "trace" / f"{name}.html").read_text(encoding="utf-8")
        assert '<script type="application/json" id="minibert-trace">' in page and '"phase":"backward"' in page

    figures = browser_check.expected_figures_of(site)
    assert sum(figures.values()) >= len(lessons) // 2, f"too few figures in the executed lessons: {figures}"
    problems, n = browser_check.check(site, figures)
    assert n == len(list(site.rglob("*.html")))
    assert not problems, "\n".join(f"{page}: {p}" for page, found in problems.items() for p in found)


def test_the_navigation_follows_the_course_and_finds_new_pages_by_itself():
    nav = build.nav()
    sections = [next(iter(item)) for item in nav]
    assert sections[:4] == ["Home", "Lessons", "Backward derivations", "Guides"]
    lesson_pages = [next(iter(e.values())) for e in nav[1]["Lessons"]][1:]
    assert lesson_pages == [f"notebooks/{p.name}" for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    derivation_pages = [next(iter(e.values())) for e in nav[2]["Backward derivations"]][1:]
    assert derivation_pages[0] == "docs/backward/linear.md"  # docs/index.md's reading order
    assert sorted(derivation_pages) == sorted(f"docs/backward/{p.name}" for p in (ROOT / "docs/backward").glob("*.md"))
    guide_pages = {next(iter(e.values())) for e in nav[3]["Guides"]}
    assert guide_pages == {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if p.name != "index.md"}


def _bad_site(tmp_path):
    site = tmp_path / "bad"
    site.mkdir()
    (site / "ok.html").write_text('<html><body><div class="md-content"><p id="here">fine</p>'
                                  '<a href="ok.html#here">self</a></div></body></html>')
    (site / "bad.html").write_text(
        '<html><body><div class="md-content">'
        '<p>$$x^2$$ left as it was written</p>'
        '<img src="missing.png" alt="a figure">'
        '<a href="nowhere.html">dead</a> <a href="ok.html#gone">dead anchor</a>'
        '<script>console.error("boom")</script>'
        '</div></body></html>')
    return site


def test_the_static_check_finds_a_missing_image_a_dead_link_and_a_dead_anchor(tmp_path):
    problems = check_site.check(_bad_site(tmp_path))
    assert len(problems) == 3, problems
    assert any("missing.png" in p for p in problems) and any("nowhere.html" in p for p in problems)
    assert any("no id 'gone'" in p for p in problems)


def test_the_browser_check_sees_console_errors_raw_math_missing_images_and_dead_links(tmp_path):
    _need_chromium()
    site = _bad_site(tmp_path)
    problems, n = browser_check.check(site, {"bad.html": 2})
    assert n == 2 and set(problems) == {"bad.html"}, problems
    found = "\n".join(problems["bad.html"])
    for expected in ("console error: boom", "raw '$$'", "image not shown", "1 images shown, the notebook has 2",
                     "nowhere.html: no such page", "no id 'gone'"):
        assert expected in found, f"{expected!r} not reported:\n{found}"


def test_the_browser_check_does_not_blame_a_page_for_the_browsers_own_favicon_request(tmp_path):
    """Chromium asks for /favicon.ico by itself when a page links no icon; its 404 is not the page's.
    (Without the exception the first of these pages was blamed, in each of two runs.)"""
    _need_chromium()
    for name in ("a.html", "b.html", "c.html"):
        (tmp_path / name).write_text("<html><body><p>fine, and no icon</p></body></html>")
    assert browser_check.check(tmp_path) == ({}, 3)


def test_the_build_stops_on_a_lesson_that_raises(tmp_path, monkeypatch):
    nb = tmp_path / "99_raises.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "id": "a", "metadata": {},
                                         "outputs": [], "source": "raise ValueError('a broken lesson')"}],
                              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                          "language": "python"}},
                              "nbformat": 4, "nbformat_minor": 5}))
    monkeypatch.setattr(build, "lessons", lambda: [nb])
    with pytest.raises(SystemExit, match="1 lesson.*raised an error(.|\n)*a broken lesson"):
        build.execute_lessons()
    assert not list(run_notebooks.CACHE.glob("99_raises.*.ipynb"))  # a failed run stores nothing
    (run_notebooks.CACHE / "99_raises.lock").unlink(missing_ok=True)
