"""Check a built site without a browser: every internal link, image, script and stylesheet of every HTML
page points at a file of the site, and every ``#fragment`` of an internal link at an ``id`` of its page.

    python book/check_site.py site/

The build (``book/build.py``) runs it after MkDocs, whose own ``--strict`` check sees the Markdown pages'
links but not the ones inside the lessons' HTML (mkdocs-jupyter renders the notebooks itself). The browser
test (``tests/test_book.py``) checks the same in Chromium, plus what only a browser sees.
"""
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ATTRS = {"a": "href", "img": "src", "script": "src", "link": "href", "source": "src"}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs = []  # (tag, url)
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        url = attrs.get(ATTRS.get(tag, ""), None)
        if url is not None:
            self.refs.append((tag, url))


def is_external(url):
    parts = urlsplit(url)
    return bool(parts.scheme or parts.netloc)  # http:, https:, mailto:, data:, javascript:, //host


def _parse(path, cache):
    if path not in cache:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def check(site):
    """A list of problems, one line each ('page: <img> src -> what is wrong'); empty when all resolve."""
    site = Path(site).resolve()
    problems, parsed = [], {}
    for page_path in sorted(site.rglob("*.html")):
        page = _parse(page_path, parsed)
        rel = page_path.relative_to(site)
        for tag, url in page.refs:
            if not url.strip():
                problems.append(f"{rel}: <{tag}> with an empty address")
                continue
            if is_external(url):
                continue
            parts = urlsplit(url)
            if not parts.path:
                target = page_path
            elif parts.path.startswith("/"):  # from the site's root (MkDocs' 404 page links so)
                target = (site / unquote(parts.path).lstrip("/")).resolve()
            else:
                target = (page_path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if site not in target.parents and target != site:
                problems.append(f"{rel}: <{tag}> {url} points outside the site")
            elif not target.is_file():
                problems.append(f"{rel}: <{tag}> {url} -> {target.relative_to(site) if site in target.parents else target} does not exist")
            elif parts.fragment and target.suffix == ".html" and tag == "a":
                if unquote(parts.fragment) not in _parse(target, parsed).ids:
                    problems.append(f"{rel}: <a> {url}: no id {parts.fragment!r} in {target.relative_to(site)}")
    return problems


if __name__ == "__main__":
    found = check(sys.argv[1] if len(sys.argv) > 1 else "site")
    print("\n".join(found) or "every internal link and image resolves")
    sys.exit(1 if found else 0)
