"""Build the minibert book: every lesson executed with its outputs, every page of docs/, the README as the
landing page and an API reference from the docstrings, as a static site.

    ./run book                    # build into site/
    ./run book --out DIR          # build into DIR
    ./run book --serve            # build, then serve it on http://127.0.0.1:8000 (--port N)

The tool is MkDocs with the Material theme, mkdocs-jupyter for the lessons and mkdocstrings for the API
reference (why these and not Jupyter Book / Sphinx: ``book/README.md``). This script lays out a staging
copy of the pages (``.cache/book/pages``) that mirrors the repository, so every relative link the README,
the docs and the lessons already use between each other still points at the right page:

* ``README.md`` (the landing page), ``docs/`` as it is, ``notebooks/README.md``;
* each lesson ``notebooks/NN_name.ipynb``, executed (``notebooks/run_notebooks.py``: the copy the notebook
  test stored is reused when the notebook, minibert's sources and the libraries are unchanged), with a box
  after its title: the notebook file to download, how to run it locally, the derivations it uses;
* each derivation page ``docs/backward/*.md`` with a box under its title: the code it quotes (the API
  reference page of that module, with its source) and the lessons that use it;
* ``api/``: one page per module of ``minibert/`` (``::: minibert.layers.linear``, rendered by mkdocstrings);
* ``trace/toy.html`` and ``trace/tiny.html``: ``minibert trace --html`` pages (lesson 11's toy BERT, and a
  pretrained BERT-Tiny: ``tiny_model_dir``), linking to the derivation and API pages of the book.

The lessons are found in ``notebooks/`` (every ``*.ipynb``, in the order of their numbers), the
derivations in ``docs/backward/`` and the modules in ``minibert/``: a new one appears by itself. The
navigation follows the course: the README, the lessons in order, the derivations in the order of
``docs/index.md``, the other pages of docs/ (in the order docs/index.md links them, then the rest), the
API reference.

The build fails (exit 1) on a lesson that raises, on any MkDocs warning (``--strict``: a link to a page
that does not exist, an anchor that does not exist, a broken docstring reference) and on any internal link
or image of the built HTML that does not resolve (``book/check_site.py``).  Seeds are fixed in the lessons,
so two builds show the same numbers and figures.
"""
import argparse
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
sys.path.insert(0, str(BOOK))
sys.path.insert(0, str(ROOT / "notebooks"))
import check_site  # noqa: E402
import run_notebooks  # noqa: E402

STAGE = ROOT / ".cache" / "book"
MATHJAX_VERSION = "3.2.2"  # npm package mathjax: the es5 build (tex-mml-chtml.js and its fonts)
LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # a Markdown link target: [text](target)


_SNAPSHOT = None  # the lessons of the build under way: a lesson added meanwhile waits for the next build


def lessons():
    return list(_SNAPSHOT) if _SNAPSHOT is not None else run_notebooks.lessons()


def title_of_lesson(path):
    """The lesson's first heading, e.g. '03 · Scaled dot-product and multi-head attention'."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return path.stem


def title_of_page(path):
    m = re.search(r"^#\s+(.+)$", path.read_text(encoding="utf-8"), re.M)
    return m.group(1).strip() if m else path.stem


def modules():
    """Every module of minibert/ as a dotted name, packages first within a folder (``__main__`` left out)."""
    names = []
    for p in sorted((ROOT / "minibert").rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(set(names))


def api_page(module):
    """The staged path of a module's API page: ``api/minibert.layers.linear.md``."""
    return f"api/{module}.md"


def module_of_file(path_text):
    """``minibert/layers/linear.py`` -> ``minibert.layers.linear`` (None when there is no such file)."""
    p = ROOT / path_text
    if not (p.suffix == ".py" and p.exists() and path_text.startswith("minibert/")):
        return None
    parts = Path(path_text).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def relative(target, start_dir):
    return os.path.relpath(target, start_dir).replace(os.sep, "/")


# ---------------------------------------------------------------------------------------------- staging

def derivations():
    """The derivation pages in the order docs/index.md lists them, then any it does not list."""
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    pages = sorted((ROOT / "docs" / "backward").glob("*.md"))
    listed = [m for m in re.findall(r"\]\((backward/[\w-]+\.md)\)", index)]
    order = list(dict.fromkeys(ROOT / "docs" / m for m in listed if (ROOT / "docs" / m).exists()))
    return order + [p for p in pages if p not in order]


def guides():
    """The other pages of docs/, in the order docs/index.md first links them, then the rest by name."""
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    pages = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")
    linked = [ROOT / "docs" / m for m in re.findall(r"\]\(([\w-]+\.md)\)", index)]
    order = list(dict.fromkeys(p for p in linked if p in pages))
    return order + [p for p in pages if p not in order]


def code_files_of(derivation):
    """The files of minibert/ a derivation page quotes: the ones its row in docs/index.md names, then
    the ones the page names itself."""
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    row = next((line for line in index.splitlines() if f"(backward/{derivation.name})" in line), "")
    text = row + "\n" + derivation.read_text(encoding="utf-8")
    found = re.findall(r"minibert/[\w/]+\.py", text)
    return [f for f in dict.fromkeys(found) if (ROOT / f).exists()]


def lessons_using(derivation, code_files):
    """The lessons that link to the derivation page, or else import a module the page quotes."""
    def source(nb):
        return nb.read_text(encoding="utf-8")
    linking = [nb for nb in lessons() if f"backward/{derivation.name}" in source(nb)]
    if linking:
        return linking
    mods = [module_of_file(f) for f in code_files if module_of_file(f)]
    return [nb for nb in lessons() if any(re.search(rf"\b{re.escape(m)}\b", source(nb)) for m in mods)]


def derivation_box(derivation, stage_page):
    code = code_files_of(derivation)
    users = lessons_using(derivation, code)
    here = stage_page.parent
    code_links = ", ".join(f"[`{f}`]({relative(STAGE_PAGES() / api_page(module_of_file(f)), here)})"
                           for f in code if module_of_file(f))
    lesson_links = ", ".join(f"[{title_of_lesson(nb)}]({relative(STAGE_PAGES() / 'notebooks' / nb.name, here)})"
                             for nb in users)
    lines = ['!!! info "The code and the lesson"', ""]
    lines.append(f"    **The code this page derives:** {code_links or 'named in the text below'} "
                 "(API reference, with each function's source).")
    if lesson_links:
        lines.append(f"    **The lesson that uses it:** {lesson_links}.")
    else:
        lines.append("    **No lesson steps through it;** the exercises do (`minibert exercises make DIR`, "
                     "see the instructor's guide).")
    return "\n".join(lines) + "\n"


def insert_after_title(markdown, box):
    m = re.search(r"^#\s+.+$", markdown, re.M)
    if not m:
        return box + "\n" + markdown
    return markdown[:m.end()] + "\n\n" + box + "\n" + markdown[m.end():]


def rewrite_links(text, page_dir, html):
    """Relative links of a page at ``page_dir`` (a folder of the repository), as they work in the
    repository, made to work in the site: a file of ``minibert/`` becomes its API reference page; in a
    lesson (``html=True``, where mkdocs-jupyter does not rewrite links) a page ``.md`` or ``.ipynb`` also
    becomes its ``.html`` (``README.md`` is ``index.html``)."""
    def fix(m):
        target = m.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return m.group(0)
        path, _, frag = target.partition("#")
        repo_path = os.path.normpath(os.path.join(page_dir, path)).replace(os.sep, "/")
        module = module_of_file(repo_path)
        if module:
            new = relative(f"api/{module}." + ("html" if html else "md"), page_dir)
        elif path.endswith("/") and (ROOT / repo_path).is_dir():  # a folder: its README, staged as a page
            new = path + ("index.html" if html else "README.md")
        elif html and path.endswith((".md", ".ipynb")):
            stem = path.rsplit(".", 1)[0]
            new = (stem[: -len("README")] + "index" if stem.endswith("README") else stem) + ".html"
        else:
            return m.group(0)
        return m.group(1) + new + ("#" + frag if frag else "") + m.group(3)
    return LINK.sub(fix, text)


def lesson_box(nb_path, derivation_links):
    stem = nb_path.stem
    src = ROOT / "notebooks" / "src" / f"{stem}.py"
    built_from = f" (built from <code>notebooks/src/{stem}.py</code>)" if src.exists() else ""
    uses = ", ".join(f'<a href="{href}">{title}</a>' for title, href in derivation_links)
    return (
        '<div class="admonition info lesson-header">\n'
        '<p class="admonition-title">This lesson, executed when the book was built</p>\n'
        f"<p>The notebook: <a href=\"download/{nb_path.name}\"><code>notebooks/{nb_path.name}</code></a>{built_from}, "
        "committed without outputs; what you see below is what its code printed and plotted when this "
        "page was built (seeds are fixed, so you get the same).</p>\n"
        "<p>To run it yourself, from a clone of the repository (Python 3.10 or newer, CPU only):</p>\n"
        f"<pre><code>python3 -m venv .venv &amp;&amp; .venv/bin/pip install -e \".[test]\"\n"
        f".venv/bin/jupyter lab notebooks/{nb_path.name}</code></pre>\n"
        + (f"<p>The derivations it uses: {uses}.</p>\n" if uses else "")
        + "</div>"
    )


@functools.lru_cache(None)
def STAGE_PAGES():
    return STAGE / "pages"


def stage(executed):
    """Lay out the pages to build in STAGE/pages; ``executed`` maps each lesson to its executed text."""
    pages = STAGE_PAGES()
    if pages.exists():
        shutil.rmtree(pages)
    # the committed notebooks, to download (not "files/": nbconvert strips that prefix, Jupyter's file route)
    (pages / "notebooks" / "download").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", pages / "README.md")
    shutil.copytree(ROOT / "docs", pages / "docs")
    shutil.copy(ROOT / "notebooks" / "README.md", pages / "notebooks" / "README.md")
    for md in pages.rglob("*.md"):  # links to minibert/*.py: to the module's API page
        page_dir = md.parent.relative_to(pages).as_posix()
        md.write_text(rewrite_links(md.read_text(encoding="utf-8"), page_dir, html=False), encoding="utf-8")

    # derivations: a box under the title, with the code and the lesson
    for d in derivations():
        staged = pages / "docs" / "backward" / d.name
        staged.write_text(insert_after_title(staged.read_text(encoding="utf-8"), derivation_box(d, staged)),
                          encoding="utf-8")

    # lessons: the executed copy, links made to work in the site, a box after the title
    for nb_path in lessons():
        shutil.copy(nb_path, pages / "notebooks" / "download" / nb_path.name)  # the file to download
        nb = nbformat.reads(executed[nb_path], as_version=4)
        text = nb_path.read_text(encoding="utf-8")
        derivation_links = [(title_of_page(d), f"../docs/backward/{d.stem}.html") for d in derivations()
                            if f"backward/{d.name}" in text]
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = rewrite_links(cell.source, "notebooks", html=True)
        # the box goes right under the title (in the first Markdown cell, after its '# ' line)
        box = lesson_box(nb_path, derivation_links)
        first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
        if first is not None and re.search(r"^#\s+.+$", first.source, re.M):
            first.source = insert_after_title(first.source, box)
        else:
            cell = nbformat.v4.new_markdown_cell(box)
            cell.id = f"{nb_path.stem[:2]}-book"
            nb.cells.insert(0, cell)
        # progress bars drawn as Jupyter widgets need the widget manager from a CDN: keep their text form
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
        nbformat.write(nb, pages / "notebooks" / nb_path.name)

    # the lesson sources, which notebooks/README.md links to
    src_dir = pages / "notebooks" / "src"
    src_dir.mkdir()
    listing = ["# The lesson sources", "",
               "Each lesson is built from a Python file in Jupytext's percent format "
               "(`python notebooks/build_notebooks.py`, see [the lessons](../README.md)):", ""]
    for src in sorted((ROOT / "notebooks" / "src").glob("*.py")):
        shutil.copy(src, src_dir / (src.name + ".txt"))
        listing.append(f"* [`{src.name}`]({src.name}.txt)")
    (src_dir / "README.md").write_text("\n".join(listing) + "\n", encoding="utf-8")

    # API reference: one page per module
    api = pages / "api"
    api.mkdir()
    mods = modules()
    for m in mods:
        (api / f"{m}.md").write_text(f"# `{m}`\n\n::: {m}\n", encoding="utf-8")
    lines = ["# API reference", "",
             "Generated from the docstrings by mkdocstrings: each function with its signature, the shapes "
             "its docstring gives and its source. One page per module:", ""]
    lines += [f"* [`{m}`]({m}.md)" for m in mods]
    (api / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # the step-through pages of lesson 11's toy BERT and of BERT-Tiny (minibert trace --html)
    trace_pages(pages / "trace")

    # static assets: our CSS and MathJax config, and MathJax itself
    (pages / "assets" / "book").mkdir(parents=True)
    for f in (BOOK / "assets").iterdir():
        shutil.copy(f, pages / "assets" / "book" / f.name)
    shutil.copytree(mathjax(), pages / "assets" / "book" / "mathjax")
    return pages


# the sentences of the book's step-through pages: (text, the answer at its [MASK]: None takes the model's guess)
TRACE_TOY = ("the cat often [MASK] .", "meows")
TRACE_TINY = ("the [MASK] statement raises an exception .", None)
TINY_STEPS = int(os.environ.get("MINIBERT_BOOK_TINY_STEPS", "200"))


def tiny_model_dir():
    """A pretrained BERT-Tiny for the book's page: ``$MINIBERT_BOOK_TINY`` (a ``minibert pretrain`` output,
    e.g. of the default 3600-step job), else a short pretraining of the tiny preset on the bundled corpus
    (``MINIBERT_BOOK_TINY_STEPS``, default 200 steps: about a minute on 2 quiet cores, 5 on a busy machine)
    made once and kept in ``.cache/book/``."""
    given = os.environ.get("MINIBERT_BOOK_TINY")
    if given:
        return Path(given), f"BERT-Tiny pretrained by `minibert pretrain` ({given})"
    out = STAGE / f"tiny-pretrain-{TINY_STEPS}"
    what = (f"BERT-Tiny after a short pretraining ({TINY_STEPS} steps of `minibert pretrain`'s tiny preset on the "
            "bundled corpus; the default job runs 3600)")
    if not (out / "model" / "model.safetensors").is_file():
        from minibert.training.pretrain import PretrainConfig, pretrain
        start = time.perf_counter()
        pretrain(PretrainConfig(preset="tiny", max_steps=TINY_STEPS, out=str(out)))
        print(f"pretrained the book's BERT-Tiny ({TINY_STEPS} steps) in {time.perf_counter() - start:.0f} s", flush=True)
    return out, what


def trace_pages(folder):
    """``folder/toy.html`` (lesson 11's toy BERT, trained in seconds) and ``folder/tiny.html`` (a pretrained
    BERT-Tiny): ``minibert trace --html`` pages, their links made to point at the book's derivation and API
    pages."""
    sys.path.insert(0, str(ROOT))
    from minibert.classroom.stepthrough import step_through
    from minibert.classroom.toy import toy_batch_of, train_toy_bert
    from minibert.classroom.trace import sentence_batch
    from minibert.classroom.trace_html import write_html
    from minibert.training.inference import load_pretraining_model

    def doc_href(doc):  # docs/backward/softmax.md -> ../docs/backward/softmax.html
        return "../" + doc[:-len(".md")] + ".html"

    def source_href(source):  # minibert/layers/softmax.py:14 -> ../api/minibert.layers.softmax.html
        module = module_of_file(source.rsplit(":", 1)[0])
        return f"../api/{module}.html" if module else None

    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, tok, _ = train_toy_bert(seed=0)  # lesson 11's model: the same seed, the same numbers
    batch = toy_batch_of(tok, *TRACE_TOY)
    tokens = batch.pop("tokens")
    words = tok.convert_ids_to_tokens(list(range(model.config.vocab_size)))
    walk = step_through(model, **batch, tokens=tokens, words=words, sentence=TRACE_TOY[0])
    write_html(walk, folder / "toy.html", title="minibert trace: lesson 11's toy BERT, " + TRACE_TOY[0],
               doc_href=doc_href, source_href=source_href)
    directory, what = tiny_model_dir()
    model, tok = load_pretraining_model(str(directory))
    batch = sentence_batch(tok, TRACE_TINY[0], answers=TRACE_TINY[1], model=model)
    tokens = batch.pop("tokens")
    words = tok.convert_ids_to_tokens(list(range(model.config.vocab_size)))
    walk = step_through(model.eval(), **batch, tokens=[tokens], words=words, sentence=TRACE_TINY[0])
    walk.model_name = what
    write_html(walk, folder / "tiny.html", title="minibert trace: " + what, doc_href=doc_href,
               source_href=source_href)
    print(f"wrote the step-through pages trace/toy.html and trace/tiny.html in {time.perf_counter() - start:.0f} s",
          flush=True)


def mathjax():
    """The es5 build of MathJax 3, installed once from the npm registry into .cache/book/npm."""
    target = STAGE / "npm" / "node_modules" / "mathjax" / "es5"
    if not (target / "tex-mml-chtml.js").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("the book needs npm (Node.js) to install MathJax, which typesets its formulas "
                             "offline; install it (Debian: apt-get install -y npm)")
        (STAGE / "npm").mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(STAGE / "npm"), "--no-audit", "--no-fund",
                        "--silent", f"mathjax@{MATHJAX_VERSION}"], check=True)
    return target


def nav():
    def md(p):
        return relative(p, ROOT)
    lesson_nav = [{"About the lessons": "notebooks/README.md"}]
    lesson_nav += [{title_of_lesson(nb): f"notebooks/{nb.name}"} for nb in lessons()]
    derivation_nav = [{"Overview": "docs/index.md"}]
    derivation_nav += [{title_of_page(d): md(d)} for d in derivations()]
    api_nav = [{"Overview": "api/index.md"}] + [{m: api_page(m)} for m in modules()]
    return [
        {"Home": "README.md"},
        {"Lessons": lesson_nav},
        {"Backward derivations": derivation_nav},
        {"Guides": [{title_of_page(g): md(g)} for g in guides()]},
        {"Lesson sources": "notebooks/src/README.md"},
        {"API reference": api_nav},
    ]


def mkdocs_config(pages, out):
    return {
        "site_name": "The minibert book",
        "site_description": "BERT from first principles in NumPy: lessons, derivations, API",
        "docs_dir": str(pages),
        "site_dir": str(out),
        "use_directory_urls": False,  # pages are files (notebooks/03_attention.html): links work from disk too
        "strict": True,
        "validation": {"omitted_files": "warn", "absolute_links": "warn", "unrecognized_links": "warn",
                       "anchors": "warn"},
        "theme": {"name": "material", "font": False,  # no Google Fonts: the book is read offline
                  "features": ["navigation.sections", "navigation.indexes", "navigation.footer", "toc.follow",
                               "content.code.copy"]},
        "nav": nav(),
        "markdown_extensions": [
            "tables", "admonition", "attr_list", "md_in_html", "toc",
            {"pymdownx.arithmatex": {"generic": True}},
            "pymdownx.superfences", "pymdownx.highlight", "pymdownx.details",
        ],
        "extra_javascript": ["assets/book/mathjax-config.js", "assets/book/mathjax/tex-mml-chtml.js"],
        "extra_css": ["assets/book/book.css"],
        "hooks": [str(BOOK / "hooks.py")],
        "plugins": [
            "search",
            {"mkdocs-jupyter": {
                "include": ["notebooks/*.ipynb"],
                "execute": False,  # executed by notebooks/run_notebooks.py, which stores and reuses the copies
                "allow_errors": False,
                "ignore_h1_titles": False,
                "include_source": True,  # the executed notebook beside its page, for the download button
                "custom_mathjax_url": "data:text/javascript,",  # MathJax is loaded once, from the site
                "toc_depth": 3,
            }},
            {"mkdocstrings": {"handlers": {"python": {
                "paths": [str(ROOT)],
                "options": {"extensions": [f"{BOOK / 'griffe_plaintext.py'}:PlainTextBrackets"],
                            "docstring_style": None, "show_source": True, "show_root_heading": False,
                            "show_signature_annotations": True, "separate_signature": True,
                            "members_order": "source", "show_submodules": False,
                            "heading_level": 2},
            }}}},
        ],
    }


def execute_lessons(stale_ok=False, jobs=None):
    start = time.perf_counter()
    if stale_ok:
        texts = {p: run_notebooks.newest(p) for p in lessons()}
        if all(texts.values()):
            print("  --stale-ok: the newest executed copy of every lesson, whatever minibert's sources", flush=True)
            return texts
    results = run_notebooks.run_all(lessons(), jobs=jobs)
    failed = {p.name: r["error"] for p, r in results.items() if r["error"]}
    for p, r in results.items():
        print(f"  {p.name}: {'reused' if r['cached'] else ('FAILED' if r['error'] else 'executed')} "
              f"({r['seconds']:.1f} s)", flush=True)
    if failed:
        msgs = "\n\n".join(f"{name}:\n{err[-4000:]}" for name, err in failed.items())
        raise SystemExit(f"the book is not built: {len(failed)} lesson(s) raised an error\n\n{msgs}")
    print(f"lessons ready in {time.perf_counter() - start:.0f} s", flush=True)
    return {p: r["notebook"] for p, r in results.items()}


def build(out, stale_ok=False, jobs=None):
    """Build the site into ``out``; raises SystemExit with the reason when the book is not right.
    ``jobs``: how many lessons execute at once (default: ``MINIBERT_NOTEBOOK_JOBS`` or the CPUs)."""
    global _SNAPSHOT
    out = Path(out).resolve()
    _SNAPSHOT = run_notebooks.lessons()
    try:
        return _build(out, stale_ok, jobs)
    finally:
        _SNAPSHOT = None


def _build(out, stale_ok, jobs):
    print("executing the lessons (or reusing the executed copies in .cache/executed)", flush=True)
    executed = execute_lessons(stale_ok, jobs)
    pages = stage(executed)
    config = STAGE / "mkdocs.yml"
    config.write_text(yaml.safe_dump(mkdocs_config(pages, out), sort_keys=False, allow_unicode=True),
                      encoding="utf-8")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "-f", str(config)],
                          cwd=ROOT, text=True, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"mkdocs build --strict failed:\n{log[-8000:]}")
    print(f"mkdocs built {out} in {time.perf_counter() - start:.0f} s", flush=True)
    problems = check_site.check(out)
    if problems:
        raise SystemExit(f"the built site has {len(problems)} broken link(s) or image(s):\n" + "\n".join(problems[:50]))
    print(f"checked {len(list(out.rglob('*.html')))} pages: every internal link and image resolves", flush=True)
    return out


def serve(out, port):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
        print(f"serving the book on http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "site"), help="where to write the site (default: site/)")
    ap.add_argument("--serve", action="store_true", help="serve the built site on 127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="the port for --serve (default: 8000)")
    ap.add_argument("--stale-ok", action="store_true",
                    help="when editing pages only: take the newest executed copy of each lesson even if "
                         "minibert changed since (a lesson never executed still runs)")
    args = ap.parse_args(argv)
    out = build(args.out, stale_ok=args.stale_ok)
    if args.serve:
        serve(out, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
