"""A Griffe extension for the API reference: minibert's docstrings are plain text, not Markdown, so a
bracketed token such as ``[CLS]`` or ``[MASK]`` is BERT's vocabulary, not a Markdown reference link.
Escape those brackets (outside code spans) before mkdocstrings renders the docstring."""
import re

import griffe

_CODE = re.compile(r"(``.+?``|`[^`]+`)")
_BRACKETS = re.compile(r"\[([^\[\]\n]*)\](?!\()")


def escape_brackets(text):
    parts = _CODE.split(text)
    return "".join(p if i % 2 else _BRACKETS.sub(r"\\[\1\\]", p) for i, p in enumerate(parts))


class PlainTextBrackets(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = escape_brackets(obj.docstring.value)
