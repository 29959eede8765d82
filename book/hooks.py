"""MkDocs hooks of the book (``hooks:`` in the generated mkdocs.yml).

mkdocs-jupyter builds a lesson's table of contents from a Markdown conversion of the notebook, whose
heading slugs drop inline code, while the page's headings get their ids from nbconvert, which keeps it:
for "Model inputs: `[CLS] A [SEP] B [SEP]`, segments, padding" the sidebar linked to
``#model-inputs-segments-padding`` and the heading was ``#model-inputs-cls-a-sep-b-sep-segments-padding``,
a dead link. The table of contents and the headings come in the same order, so each entry takes the id of
the next heading of its level in the page.
"""
import re

_HEADING = re.compile(r"<h([1-6])\b[^>]*\bid=\"([^\"]+)\"")


def _flatten(toc):
    for item in toc:
        yield item
        yield from _flatten(item.children)


def on_page_context(context, page, config, nav):
    if not page.file.src_uri.endswith(".ipynb") or not page.content:
        return context
    headings = [(int(level), hid) for level, hid in _HEADING.findall(page.content)]
    ids = {hid for _, hid in headings}
    entries = list(_flatten(page.toc))
    if all(e.id in ids for e in entries):
        return context
    pos = 0
    for entry in entries:
        for j in range(pos, len(headings)):
            if headings[j][0] == entry.level:
                entry.id, pos = headings[j][1], j + 1
                break
    return context
