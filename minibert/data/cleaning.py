"""Cleaning documentation into sentences: reST / Sphinx-text (a docstring, a pydoc topic) -> prose.

``clean_documentation(text)`` drops code (doctests, literal blocks, indented blocks that do not read like
prose), reST markup and tables, and splits what is left into sentences (``split_sentences``).  The default
corpus (``cpython_docs.py``) is CPython's documentation passed through it.

    >>> clean_documentation("Return the *absolute* value of a number.  See :func:`abs` for details::\n\n"
    ...                     "    abs(-1)\n")
    ['Return the absolute value of a number.', 'See abs for details:']
"""
import re



_HEADING_UNDERLINE = re.compile(r"^\s*([=*\-~^\"'#+`])\1{2,}\s*$")    # ===== or ***** under a title
_DIRECTIVE = re.compile(r"^\s*\.\. ")                                # .. versionadded:: 3.2
_DOCTEST = re.compile(r"^\s*(>>>|\.\.\.)( |$)")                      # >>> x = 1   /   ... pass
_BULLET = re.compile(r"^\s*([*\-+\u2022]|\d+\.|\(\d+\)|#\.)\s+")     # * item, 1. item, (1) item
_RUBRIC = re.compile(r"^\s*-\[ .* \]-\s*$")                          # -[ Footnotes ]-
_TABLE = re.compile(r"^\s*(\||\+[-=])")                               # | cell | or +-----+
_FIELD = re.compile(r"^\s*:[\w ]+:\s*")                              # :param x: ... (field list)

_INLINE_RULES = [
    # :func:`open`, :meth:`~object.__eq__`, :ref:`the title <label>` -> open, __eq__, the title
    (re.compile(r":[\w:.+-]+:`([^`<]*?)\s*(?:<[^>`]*>)?`"), lambda m: m.group(1).lstrip("~!").rsplit(".", 1)[-1]
     if m.group(1).startswith("~") else m.group(1).lstrip("!")),
    (re.compile(r"``(.+?)``"), r"\1"),                              # ``literal`` -> literal
    (re.compile(r"`([^`<]+?)\s*(?:<[^>`]*>)?`_{0,2}"), r"\1"),      # `text <url>`_ and `interpreted`
    (re.compile(r"\*\*([^\s*](?:[^*]*?[^\s*])?)\*\*"), r"\1"),       # **strong**
    (re.compile(r"(?<![\w*])\*([^\s*](?:[^*]*?[^\s*])?)\*(?![\w*])"), r"\1"),  # *emphasis*, not *args
    (re.compile(r"\[\d+\]"), ""),                                    # footnote references [1]
    (re.compile(r"::$"), ":"),                                       # "Example::" -> "Example:"
    (re.compile(r"\s+"), " "),                                       # collapse whitespace
]


def _strip_inline_markup(text):
    """Remove reST inline markup: roles, literals, links, emphasis, footnote refs; collapse whitespace."""
    for pattern, repl in _INLINE_RULES:
        text = pattern.sub(repl, text)
    return text.strip()


# A character that is neither a letter, a space nor ordinary punctuation: digits, _, =, [, {, <, /, # ...
_NOT_PROSE = re.compile(r"(?![ ,.;:'\"?!()\-\u2019\u201c\u201d])[\W\d_]")


def _prose_fraction(text):
    """Fraction of characters that are letters, spaces or ordinary punctuation (code scores low)."""
    if not text:
        return 0.0
    return 1.0 - len(_NOT_PROSE.findall(text)) / len(text)


def _looks_like_prose(text, indented):
    """A paragraph is kept if it reads like prose: 3+ words, mostly letters.  An indented paragraph must
    also look like a sentence (end with . ! ? or :, or start with a capital and have 4+ words and almost no
    symbols), because an indented block that does not is almost always code or a grammar rule."""
    words = text.split()
    if len(words) < 3:
        return False
    fraction = _prose_fraction(text)
    if fraction < 0.85:
        return False
    if indented and text[-1] not in ".!?:" and not (text[0].isupper() and len(words) >= 4 and fraction >= 0.95):
        return False
    return True


def _paragraphs(text):
    """Split documentation text into (indented, lines) paragraphs, dropping code and markup lines.

    Rules, in order, per line:
      * blank line -> end of paragraph;
      * ``.. directive::`` -> dropped together with its indented body;
      * a paragraph ending in ``::`` announces a literal block -> the following indented block is dropped;
      * ``>>>`` / ``...`` doctest lines and their output (up to the next blank line) -> dropped;
      * title underlines (=====), rubrics (-[ Footnotes ]-) and table rows (| or +--) -> dropped, and the
        title line above an underline is dropped with it;
      * a bullet (``*``, ``-``, ``1.``) starts a new paragraph and loses its marker.
    """
    lines = text.expandtabs(8).splitlines()
    paragraphs, current = [], []
    skip_indent = None          # drop lines indented deeper than this (directive body / literal block)
    in_doctest = False

    def close():
        nonlocal current
        if current:
            indent = min(len(l) - len(l.lstrip()) for l in current)
            paragraphs.append((indent > 0, [l.strip() for l in current]))
        current = []

    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if not stripped:
            in_doctest = False
            if current and current[-1].rstrip().endswith("::"):
                skip_indent = min(len(l) - len(l.lstrip()) for l in current)
            close()
            continue
        if in_doctest:
            continue
        if _DOCTEST.match(line):
            in_doctest = True
            close()
            continue
        if _DIRECTIVE.match(line):
            close()
            skip_indent = indent
            continue
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if (_HEADING_UNDERLINE.match(line) or _RUBRIC.match(line) or _TABLE.match(line)
                or (_HEADING_UNDERLINE.match(next_line) and len(next_line.strip()) >= len(stripped) - 2)):
            close()
            continue
        if _BULLET.match(line):
            close()
            line = line[:indent] + _BULLET.sub("", line)
        current.append(line)
    close()
    return paragraphs


# A rule-based sentence splitter: a sentence ends at . ! or ? (plus closing quotes or brackets) followed by
# whitespace and a capital letter, a digit or an opening quote -- unless the word before the period is a
# common abbreviation ("e.g.", "etc.") or a single letter (an initial, "J. Smith").
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_ABBREVIATIONS = {"e.g", "i.e", "etc", "cf", "vs", "mr", "mrs", "dr", "st", "no", "fig", "approx", "resp",
                  "ca", "al", "ex", "incl", "viz", "jr", "sr", "prof", "vol", "sec", "ch", "p", "pp"}


def split_sentences(text):
    """Split a paragraph into sentences with a simple rule (see ``_SENTENCE_END``); returns a list of str.

    >>> split_sentences("It works, e.g. here. Then it stops! Why? Because.")
    ['It works, e.g. here.', 'Then it stops!', 'Why?', 'Because.']
    """
    sentences, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        before = text[start:m.start()].split()
        last_word = before[-1].lower().strip("(\"'") if before else ""
        if m.group().startswith(".") and (last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())):
            continue
        sentences.append(text[start:m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# A plain lower-case word, maybe quoted or followed by punctuation.  Prose is mostly made of them; lists of
# constants (ST_MODE ST_INO ...) and signatures (ctime(seconds) -> string) are not.
_PLAIN_WORD = re.compile(r"^[\"'(\u201c\u2018]?[a-z][a-z'\u2019-]*[\"')\u201d\u2019]?[,.;:!?]?[\"')\u201d\u2019]?$")


# A call signature, as C functions document themselves: "spawnvp(mode, file, args) -> integer".
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(->|-->|$)")
# A word hyphenated across two lines.
_HYPHEN_BREAK = re.compile(r"(?<=[a-z]-) (?=[a-z])")


def clean_documentation(text):
    """Documentation text (a docstring or a pydoc topic) -> list of clean sentences.

    Drops code (doctests, literal blocks, indented blocks that do not read like prose), reST markup and
    tables, collapses whitespace, splits paragraphs into sentences, and keeps sentences of 3+ words that are
    mostly letters and at least 30% plain lower-case words.
    """
    sentences = []
    for indented, lines in _paragraphs(text):
        paragraph = " ".join(_FIELD.sub("", line) for line in lines)
        paragraph = _HYPHEN_BREAK.sub("", paragraph)                # "decimal-\npoint" -> "decimal-point"
        paragraph = _strip_inline_markup(paragraph)
        if not _looks_like_prose(paragraph, indented):
            continue
        for sentence in split_sentences(paragraph):
            words = sentence.split()
            if (len(words) >= 3 and _prose_fraction(sentence) >= 0.8 and not _SIGNATURE.match(sentence)
                    and sum(bool(_PLAIN_WORD.match(w)) for w in words) >= 0.3 * len(words)):
                sentences.append(sentence)
    return sentences
