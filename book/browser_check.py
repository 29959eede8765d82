"""Open every page of a built site in a real headless Chromium and report what a reader would see wrong.

    python book/browser_check.py site/          # exit 1 and a list of problems, or "N pages, no problem"

The site is served on 127.0.0.1 (an ephemeral port) and Debian's ``chromium`` (``/usr/bin/chromium``, or
``$CHROMIUM``) is driven with Playwright's Python API, pointed at that executable (Playwright's own browser
download is never used). For each page:

* **no console errors**: nothing logged at level "error" (a failed load of a script, stylesheet, font
  or image is logged so too; the browser's own request for ``/favicon.ico`` aside), no uncaught
  exception, no failed request;
* **math typeset**: once MathJax has finished (``MathJax.startup.promise``), no ``$$`` is left in the
  page's prose (code and outputs aside) and MathJax reported no TeX error (``mjx-merror``); a derivation
  page (``docs/backward/``) must hold typeset formulas (``mjx-container``);
* **figures shown**: every image of the page's content has loaded (``complete``, ``naturalWidth > 0``)
  and is drawn with a non-zero size; on a lesson page there are as many as the executed notebook has
  figure outputs (``expected_figures``);
* **internal links resolve**: every link to the site (same origin) answers 200, and its ``#fragment``,
  if any, is an id of the target page.
"""
import functools
import http.server
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# the flags this machine needs (docs of the machine kind): no GPU, no QUIC, no background connections
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

_PAGE_STATE = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const content = document.querySelector('.md-content') || document.body;
  const prose = content.cloneNode(true);
  prose.querySelectorAll('pre, code, .jp-OutputArea, script, style, mjx-container').forEach(e => e.remove());
  const imgs = Array.from(content.querySelectorAll('img')).map(img => {
    const r = img.getBoundingClientRect();
    return {src: img.getAttribute('src').slice(0, 80), complete: img.complete, natural: img.naturalWidth,
            width: r.width, height: r.height};
  });
  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  return {
    rawDisplayMath: (prose.innerText.match(/\$\$/g) || []).length,
    typeset: content.querySelectorAll('mjx-container').length,
    texErrors: Array.from(content.querySelectorAll('mjx-merror')).map(e => e.textContent).slice(0, 5),
    images: imgs,
    links: links,
  };
}
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@functools.lru_cache(None)
def _ids(path):
    from check_site import _Page  # noqa: E402 (same folder)
    page = _Page()
    page.feed(Path(path).read_text(encoding="utf-8", errors="replace"))
    return page.ids


def serve(site):
    """A threaded HTTP server of ``site`` on 127.0.0.1; returns (server, base_url)."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _is_error(message):
    """A console message at level "error", except the 404 of ``/favicon.ico``: Chromium asks for it by
    itself, once, when a page links no icon, and logs the 404 late enough that it can land on the next
    page (seen: a test's icon-less ``ok.html`` blamed for it).  The tab's icon is not the page's content."""
    return message.type == "error" and urlsplit(message.location.get("url", "")).path != "/favicon.ico"


def check(site, expected_figures=None, derivation_prefix="docs/backward/", pages=None):
    """Open each page of ``site`` (every ``*.html``, or ``pages``, paths relative to the site) in headless
    Chromium; return ``{page: [problem, ...]}`` for the pages with problems, and the number of pages seen.

    ``expected_figures`` maps a page to how many images it must show (the lessons' figure outputs)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from playwright.sync_api import sync_playwright

    site = Path(site).resolve()
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")) if pages is None else pages
    expected_figures = expected_figures or {}
    server, base = serve(site)
    problems, link_targets = {}, {}
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                            args=FLAGS, viewport={"width": 1280, "height": 900})
            page = browser.new_page()
            errors = []
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text[:300]}") if _is_error(m) else None)
            page.on("pageerror", lambda e: errors.append(f"uncaught exception: {str(e)[:300]}"))
            page.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED" else  # cut by leaving the page
                    errors.append(f"request failed: {r.url[:200]} ({r.failure})"))
            for rel in pages:
                errors.clear()
                found = []
                response = page.goto(base + rel, wait_until="load", timeout=60_000)
                if response is None or response.status != 200:
                    found.append(f"answered {response.status if response else 'nothing'}")
                state = page.evaluate(_PAGE_STATE)
                page.wait_for_timeout(50)  # late console messages
                found += errors
                if state["rawDisplayMath"]:
                    found.append(f"{state['rawDisplayMath']} raw '$$' left in the prose: the math is not typeset")
                if state["texErrors"]:
                    found.append(f"MathJax could not typeset: {state['texErrors']}")
                if rel.startswith(derivation_prefix) and state["typeset"] == 0:
                    found.append("a derivation page with no typeset formula")
                for img in state["images"]:
                    if not (img["complete"] and img["natural"] > 0 and img["width"] > 0 and img["height"] > 0):
                        found.append(f"image not shown: {img}")
                if rel in expected_figures and len(state["images"]) < expected_figures[rel]:
                    found.append(f"{len(state['images'])} images shown, the notebook has {expected_figures[rel]} figures")
                for href in state["links"]:
                    if href.startswith(base):
                        link_targets.setdefault(href, rel)
                if found:
                    problems[rel] = found
            browser.close()
        # every internal link, once: the page answers, and its fragment is an id of it
        for href, source in sorted(link_targets.items()):
            url, frag = urldefrag(href)
            path = urlsplit(url).path.lstrip("/")
            target = site / path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.setdefault(source, []).append(f"link to {href[len(base):]}: no such page")
            elif frag and target.suffix == ".html" and frag not in _ids(target):
                problems.setdefault(source, []).append(f"link to {href[len(base):]}: no id {frag!r} there")
    finally:
        server.shutdown()
        server.server_close()
    return problems, len(pages)


def expected_figures_of(site):
    """For each lesson page of a built site, the number of figures its executed notebook (copied beside the
    page by mkdocs-jupyter) holds: ``image/png`` and ``image/svg+xml`` outputs."""
    import nbformat
    counts = {}
    for nb_path in Path(site).glob("notebooks/*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        n = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if {"image/png", "image/svg+xml"} & set(o.get("data", {})))
        counts[f"notebooks/{nb_path.stem}.html"] = n
    return counts


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    site = Path(argv[0] if argv else "site")
    problems, n = check(site, expected_figures_of(site))
    for page, found in problems.items():
        print(f"{page}:")
        for f in found:
            print(f"  {f}")
    print(f"{n} pages opened in Chromium, {len(problems)} with problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
