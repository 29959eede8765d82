"""Corpora for pre-training: real English that ships with Python, and a synthetic language.

Two sources, both needing no download:

* ``load_default_corpus()`` -- the documentation that ships with CPython itself: the pydoc topics
  (``pydoc_data.topics``, the language reference as plain text) and the docstrings of the standard
  library's modules, classes and functions.  Cleaned into documents of sentences, split into train and
  held-out *by document*, and cached as plain text in google-research/bert's format.
* ``synthetic_corpus()`` -- a tiny seeded language whose right answers are known, for fast tests and
  classroom experiments (a bidirectional model provably beats a left-to-right one; NSP is learnable up to a
  known ceiling).

A *document* is a list of sentence strings; a corpus is a list of documents.  This is exactly the shape
google-research/bert's ``create_pretraining_data.py`` reads: one sentence per line, a blank line between
documents (``read_text_corpus`` / ``write_text_corpus``).

    >>> corpus = load_default_corpus()      # 2-5 s the first time, then read from ~/.cache/minibert/
    >>> corpus                              # (numbers for CPython 3.11.7 on Linux)
    Corpus('cpython-docs', train: 628 docs, 24,490 sentences, 2.01M chars; heldout: 37 docs, 1,168 sentences, 93,061 chars)
    >>> corpus.train[0][:2]                 # the first two sentences of the first training document
"""
import ast
import contextlib
import hashlib
import importlib
import inspect
import io
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from dataclasses import dataclass, field

# Bump when the cleaning rules change: the cache directory name includes it, so old caches are ignored.
CORPUS_VERSION = 1
HELDOUT_PERCENT = 5


# --------------------------------------------------------------------------------------------------
# The Corpus container
# --------------------------------------------------------------------------------------------------

def _count(docs):
    """(characters, sentences, documents) of a list of documents; newlines are not counted."""
    return (sum(len(s) for doc in docs for s in doc), sum(len(doc) for doc in docs), len(docs))


@dataclass
class Corpus:
    """Documents split into ``train`` and ``heldout``; a document is a list of sentence strings.

    ``train_titles`` / ``heldout_titles`` name each document (e.g. ``"topic:assert"``,
    ``"module:json.decoder"``) when the source has titles, else they are empty lists.
    """
    train: list
    heldout: list
    name: str = "corpus"
    train_titles: list = field(default_factory=list)
    heldout_titles: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def stats(self):
        """Characters, sentences and documents of each split, as a dict of dicts."""
        out = {}
        for split in ("train", "heldout"):
            chars, sentences, docs = _count(getattr(self, split))
            out[split] = {"chars": chars, "sentences": sentences, "documents": docs}
        return out

    @property
    def num_chars(self):
        return sum(s["chars"] for s in self.stats().values())

    @property
    def num_sentences(self):
        return sum(s["sentences"] for s in self.stats().values())

    @property
    def num_documents(self):
        return len(self.train) + len(self.heldout)

    def __repr__(self):
        def part(split, s):
            chars = f"{s['chars'] / 1e6:.2f}M" if s["chars"] >= 1e6 else f"{s['chars']:,}"
            return f"{split}: {s['documents']:,} docs, {s['sentences']:,} sentences, {chars} chars"
        st = self.stats()
        return f"Corpus({self.name!r}, {part('train', st['train'])}; {part('heldout', st['heldout'])})"


# --------------------------------------------------------------------------------------------------
# google-research/bert's text format: one sentence per line, a blank line between documents
# --------------------------------------------------------------------------------------------------

def write_text_corpus(docs, path):
    """Write documents to ``path``: one sentence per line, a blank line between documents.

    The write is atomic (``files.atomic_write_bytes``: readers see the old file or the whole new one) and
    creates ``path``'s directory if needed.  Sentences must be non-empty and must not contain a newline,
    or the file would read back differently.
    """
    # imported here, not at the top: the child of _stdlib_docstrings runs this file as a script, where a
    # relative import fails (and it writes no cache)
    from ..files import atomic_write_bytes
    lines = []
    for d, doc in enumerate(docs):
        if isinstance(doc, str):
            raise TypeError(f"docs[{d}] must be a list of sentence strings, got a str (a whole document?)")
        for s, sentence in enumerate(doc):
            if not isinstance(sentence, str) or not sentence.strip() or "\n" in sentence or "\r" in sentence:
                raise ValueError(f"docs[{d}][{s}] must be a non-empty one-line string, got {sentence!r}")
            lines.append(sentence.strip())
        if len(doc):
            lines.append("")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))


def read_text_corpus(path):
    """Read a corpus in google-research/bert's format: one sentence per line, blank line between documents.

    Returns a list of documents, each a list of sentence strings (stripped; empty documents dropped).
    Raises FileNotFoundError if ``path`` does not exist and ValueError if it holds no sentence.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"corpus file not found: {path!r}")
    docs = [[]]
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                docs[-1].append(line)
            elif docs[-1]:
                docs.append([])
    docs = [doc for doc in docs if doc]
    if not docs:
        raise ValueError(f"corpus file {path!r} is empty: expected one sentence per line and a blank line "
                         "between documents, got no sentence")
    return docs


# --------------------------------------------------------------------------------------------------
# Cleaning: reST / Sphinx-text documentation -> sentences
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# The default corpus: CPython's own documentation
# --------------------------------------------------------------------------------------------------

# How the standard library is read.  Most modules are imported (fast: Python loads its compiled caches) and
# their docstrings are read from the live objects -- in a fresh child interpreter, see _stdlib_docstrings().
# Importing runs a module's top-level code, so modules whose import has side effects are either skipped or
# read from source:
#   * skipped -- no useful prose, or they print / open a browser when imported, or they are tests, demos,
#     code-generator tables (encodings) or the pydoc topics themselves (read separately);
#   * read from source with ``ast`` (parsing runs nothing, but is ~3x slower than importing) -- GUI toolkits
#     and IDLE (``idlelib.idle`` starts IDLE when imported), and deprecated packages that warn or, like
#     distutils, are swapped for setuptools' copy at import.
SKIPPED_MODULES = frozenset({
    "__main__", "__hello__", "__phello__", "this", "antigravity", "test", "turtledemo", "encodings",
    "pydoc_data", "ensurepip", "readline", "rlcompleter", "_tkinter", "xxlimited", "xxlimited_35",
    "xxsubtype",
})
READ_FROM_SOURCE = frozenset({"idlelib", "tkinter", "turtle", "lib2to3", "distutils"})
_SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__", "site-packages"})


def _stdlib_modules():
    """Deterministic, sorted list of (module_name, source_path_or_None) of the standard library.

    Top-level names come from ``sys.stdlib_module_names``; packages are walked on disk in sorted order, so
    no package has to be imported to list its submodules.  ``source_path`` is None for modules written in C
    (builtins, math, itertools, ...), which have no ``.py`` file.
    """
    lib = sysconfig.get_paths()["stdlib"]
    modules = []
    for name in sorted(sys.stdlib_module_names):
        if name in SKIPPED_MODULES or name.startswith(("__", "_test", "_xxtest")) or name.endswith("_test"):
            continue
        module_file, package_dir = os.path.join(lib, name + ".py"), os.path.join(lib, name)
        if os.path.isfile(module_file):
            modules.append((name, module_file))
        elif os.path.isfile(os.path.join(package_dir, "__init__.py")):
            for root, dirs, files in os.walk(package_dir):
                dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
                for f in sorted(files):
                    if f.endswith(".py") and f != "__main__.py":
                        parts = os.path.relpath(os.path.join(root, f), lib)[:-3].split(os.sep)
                        if parts[-1] == "__init__":
                            parts.pop()
                        modules.append((".".join(parts), os.path.join(root, f)))
        else:
            modules.append((name, None))
    modules.sort()
    return modules


def _docstrings_from_source(path):
    """Docstrings of a module and of every class and function in it, in source order, read with ``ast``
    (nothing is imported, so none of the module's code runs)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        try:
            tree = ast.parse(f.read(), filename=path)
        except SyntaxError:
            return []
    docs = []

    def visit(node):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)               # already dedented (inspect.cleandoc)
            if doc:
                docs.append(doc)
        # A def or class can only appear inside statements, so walk statement bodies, never expressions.
        for body in ("body", "orelse", "finalbody", "handlers"):
            for child in getattr(node, body, ()):
                if isinstance(child, (ast.stmt, ast.excepthandler)):
                    visit(child)
    visit(tree)
    return docs


def _docstrings_from_import(name):
    """Docstrings of an imported module, of the functions and classes it defines and of their methods and
    properties, in definition order (a module's ``__dict__`` keeps it).  Output and warnings of the import
    are silenced; returns [] if the import fails (e.g. ``winreg`` on Linux)."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except (Exception, SystemExit):
        return []
    written_in_python = (getattr(module, "__file__", None) or "").endswith(".py")

    def defined_here(obj):
        # A Python module also holds what it imported; keep only what it defines.  C types often report the
        # public module (_collections.deque says "collections"), so C modules keep everything.
        # (_pydecimal sets its own __name__ to "decimal", so accept that name too.)
        return not written_in_python or getattr(obj, "__module__", None) in (name, module.__name__)

    docs = [module.__doc__]
    for attr, obj in list(vars(module).items()):
        if attr.startswith("__") or not defined_here(obj):
            continue
        if isinstance(obj, type):
            docs.append(obj.__doc__)
            for member_name, member in list(vars(obj).items()):
                if member_name.startswith("__") and not written_in_python:
                    continue                            # C dunders: "Return self==value." boilerplate
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if callable(member) or isinstance(member, property):
                    docs.append(getattr(member, "__doc__", None))
        elif callable(obj):
            docs.append(getattr(obj, "__doc__", None))
    return [inspect.cleandoc(d) for d in docs if isinstance(d, str) and d.strip()]


def _collect_stdlib_docstrings():
    """[(module_name, [docstring, ...])] for the whole standard library, in sorted module order, collected
    in *this* interpreter (see ``_stdlib_docstrings`` for why that is a fresh one)."""
    out = []
    for name, path in _stdlib_modules():
        if name.split(".")[0] in READ_FROM_SOURCE:
            out.append((name, _docstrings_from_source(path)))
        else:
            out.append((name, _docstrings_from_import(name)))
    return out


def _stdlib_docstrings():
    """``_collect_stdlib_docstrings()`` run in a fresh interpreter, ``python -I -S minibert/data/corpus.py``.

    Why a child process: what a live module holds depends on who touched it.  pytest replaces
    ``sys.unraisablehook``, IPython ``sys.displayhook``, and importing typing_extensions patches two
    functions of ``typing``; a corpus read in such a process would differ from one read elsewhere.  A child
    started with ``-I -S`` (no environment variables, no site-packages, no .pth hooks) sees the plain
    standard library, so the corpus depends only on the Python installation -- and whatever the imports do
    stays in the child.  It writes JSON to a file in a private temporary directory (stdout could carry a C
    module's chatter), read only once the child has exited with code 0, so a plain write is enough.
    """
    if not sys.executable:
        raise RuntimeError("cannot start a Python interpreter to read the standard library: sys.executable "
                           "is empty (embedded Python?); use read_text_corpus() or synthetic_corpus() instead")
    with tempfile.TemporaryDirectory(prefix="minibert-") as tmp:
        out = os.path.join(tmp, "docstrings.json")
        cmd = [sys.executable, "-I", "-S", os.path.abspath(__file__), "--collect-stdlib-docstrings", out]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not os.path.isfile(out):
            raise RuntimeError(f"collecting the standard library's docstrings failed ({' '.join(cmd)}, "
                               f"exit code {proc.returncode}):\n{proc.stderr[-2000:]}")
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def _is_heldout(title):
    """Deterministic train/held-out assignment by a hash of the document title (~HELDOUT_PERCENT %).

    hashlib, not ``hash()``: Python salts ``hash(str)`` per process, which would change the split per run.
    """
    digest = hashlib.sha256(title.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < HELDOUT_PERCENT


def build_default_corpus():
    """Build the CPython-documentation corpus from scratch (no cache); returns a ``Corpus``.

    One document per pydoc topic (``topic:<name>``) and one per standard-library module
    (``module:<dotted.name>``: the module docstring followed by its classes' and functions' docstrings).
    A docstring that appears more than once (inherited boilerplate, re-exported C/Python twins) is kept once.
    """
    from pydoc_data.topics import topics

    start = time.perf_counter()
    sources = [("topic:" + key, [topics[key]]) for key in sorted(topics)]     # [(title, [raw text])]
    sources += [("module:" + name, docstrings) for name, docstrings in _stdlib_docstrings()]
    seen_texts, seen_docs = set(), set()
    train, heldout, train_titles, heldout_titles = [], [], [], []
    for title, texts in sources:
        doc = []
        for text in texts:
            if text not in seen_texts:                  # pydoc's "else" topic is its "if" topic, etc.
                seen_texts.add(text)
                doc.extend(clean_documentation(text))
        if not doc or tuple(doc) in seen_docs:          # so no document is both in train and held out
            continue
        seen_docs.add(tuple(doc))
        if _is_heldout(title):
            heldout.append(doc)
            heldout_titles.append(title)
        else:
            train.append(doc)
            train_titles.append(title)
    meta = {
        "corpus_version": CORPUS_VERSION,
        "python_version": sys.version.split()[0],
        "build_seconds": round(time.perf_counter() - start, 3),
        "source": "pydoc_data.topics + standard-library docstrings",
    }
    corpus = Corpus(train, heldout, "cpython-docs", train_titles, heldout_titles, meta)
    meta["stats"] = corpus.stats()
    return corpus


def default_cache_dir():
    """``$MINIBERT_CACHE`` if set, else ``~/.cache/minibert``."""
    return os.environ.get("MINIBERT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "minibert")


def _corpus_cache_path(cache_dir):
    """The cache directory of the default corpus for this Python version and cleaning version."""
    version = sys.version.split()[0]
    return os.path.join(cache_dir, f"cpython-docs-py{version}-v{CORPUS_VERSION}")


def load_default_corpus(cache_dir=None, rebuild=False, verbose=False):
    """The CPython-documentation corpus, built on the first call and then read from the cache.

    Cache layout (``cache_dir`` defaults to ``default_cache_dir()``)::

        <cache_dir>/cpython-docs-py3.11.7-v1/train.txt     google-research/bert text format
        <cache_dir>/cpython-docs-py3.11.7-v1/heldout.txt
        <cache_dir>/cpython-docs-py3.11.7-v1/meta.json     titles, statistics, build time

    Every file is written atomically and ``meta.json`` last, so a cache with ``meta.json`` is complete.
    Plain text and JSON only (never pickle: a cache file must not be able to run code).
    """
    from ..files import atomic_write_bytes  # not at the top: see write_text_corpus
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _corpus_cache_path(cache_dir)
    meta_path = os.path.join(path, "meta.json")
    if not rebuild and os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        train = read_text_corpus(os.path.join(path, "train.txt"))
        heldout = read_text_corpus(os.path.join(path, "heldout.txt"))
        corpus = Corpus(train, heldout, "cpython-docs", meta.pop("train_titles"), meta.pop("heldout_titles"),
                        meta)
        if len(corpus.train_titles) != len(train) or len(corpus.heldout_titles) != len(heldout):
            raise ValueError(f"corpus cache {path!r} is inconsistent (titles and documents differ); "
                             "delete it or call load_default_corpus(rebuild=True)")
        if verbose:
            print(f"loaded {corpus} from {path}")
        return corpus
    if os.path.isfile(meta_path):
        os.remove(meta_path)                            # the old cache is incomplete from here on
    corpus = build_default_corpus()
    write_text_corpus(corpus.train, os.path.join(path, "train.txt"))
    write_text_corpus(corpus.heldout, os.path.join(path, "heldout.txt"))
    meta = dict(corpus.meta, train_titles=corpus.train_titles, heldout_titles=corpus.heldout_titles)
    atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode("utf-8"))
    if verbose:
        print(f"built {corpus} in {corpus.meta['build_seconds']:.1f} s, cached in {path}")
    return corpus


# --------------------------------------------------------------------------------------------------
# A synthetic language whose right answers are known
# --------------------------------------------------------------------------------------------------

SYNTHETIC_ADJECTIVES = ("red", "green", "blue", "yellow")
SYNTHETIC_TOPICS = {
    "kitchen": ("cup", "plate", "spoon", "bowl", "knife", "pot", "kettle", "fork"),
    "farm": ("cow", "pig", "goat", "horse", "sheep", "hen", "barn", "tractor"),
    "forest": ("fox", "owl", "deer", "bear", "wolf", "tree", "moss", "fern"),
    "sea": ("ship", "whale", "crab", "shell", "wave", "fish", "boat", "reef"),
    "city": ("bus", "taxi", "tower", "bridge", "shop", "train", "street", "park"),
    "school": ("book", "desk", "pen", "chalk", "map", "bell", "ruler", "globe"),
    "garden": ("rose", "tulip", "bee", "snail", "hose", "bench", "gate", "seed"),
    "space": ("star", "moon", "comet", "rocket", "planet", "orbit", "probe", "alien"),
}
SYNTHETIC_VERBS = ("sees", "likes", "follows", "finds", "pushes", "holds", "meets", "hides")
# Every noun always wears the same colour: the j-th noun of each topic gets SYNTHETIC_ADJECTIVES[j % 4], so
# each topic has exactly two nouns of each colour and the topic says nothing about the colour.
SYNTHETIC_ADJECTIVE_OF = {noun: SYNTHETIC_ADJECTIVES[j % len(SYNTHETIC_ADJECTIVES)]
                          for nouns in SYNTHETIC_TOPICS.values() for j, noun in enumerate(nouns)}
_SYNTHETIC_TEMPLATES = (
    "the {a1} {n1} {verb} the {a2} {n2}.",
    "a {a1} {n1} is near the {a2} {n2}.",
)


def synthetic_vocabulary():
    """Every word (and the period) the synthetic language uses, sorted: build a tokenizer vocab from it."""
    words = {"the", "a", "is", "near", "."} | set(SYNTHETIC_ADJECTIVES) | set(SYNTHETIC_VERBS)
    for nouns in SYNTHETIC_TOPICS.values():
        words |= set(nouns)
    return sorted(words)


def synthetic_corpus(num_docs, seed=0, min_sentences=4, max_sentences=8, num_topics=8,
                     heldout_fraction=0.05):
    """A seeded corpus of ``num_docs`` documents in a tiny language whose right answers are known.

    Each document picks one topic (kitchen, farm, ...) and writes ``min_sentences`` to ``max_sentences``
    sentences about that topic's nouns, from two templates::

        the red cup holds the blue bowl.
        a green spoon is near the yellow fork.

    What a model can learn, and the best it can do:

    * **Colour words need the right-hand context.**  Each noun always comes with its own colour
      (``SYNTHETIC_ADJECTIVE_OF``), and every topic has two nouns of each colour, so nothing to the *left*
      of a colour word (``the``, earlier sentences, the topic) says which colour comes.  A left-to-right
      model predicts a masked colour at chance, 1/4; a bidirectional model reads the noun just to the right
      and gets it every time (unless that noun is masked too).  This is the point of BERT's bidirectional
      masked LM.
    * **Nouns** are predictable from their colour (left) and the topic (the rest of the document): two
      candidates, so at most 1/2.  Verbs are uniform: at most 1/8.
    * **Next-sentence prediction** is learnable from topics: consecutive sentences share the document's
      topic, a random sentence comes from another document, whose topic differs with probability
      (K-1)/K for K = ``num_topics``.  The best NSP accuracy is 1 - 1/(2K) (0.9375 for K = 8): a
      different topic means "random"; the same topic is a continuation with probability K/(K+1).

    Uses ``random.Random(seed)``, whose output is stable across Python versions.  Returns a ``Corpus``
    whose last ``int(num_docs * heldout_fraction)`` documents are held out (documents are independent, so
    any split is fair); ``corpus.train + corpus.heldout`` gives all of them.
    """
    for name, value, low in (("num_docs", num_docs, 1), ("min_sentences", min_sentences, 1),
                             ("num_topics", num_topics, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(max_sentences, int) or max_sentences < min_sentences:
        raise ValueError(f"max_sentences must be an integer >= min_sentences={min_sentences}, got {max_sentences!r}")
    if isinstance(heldout_fraction, bool) or not isinstance(heldout_fraction, (int, float)) \
            or not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    if num_topics > len(SYNTHETIC_TOPICS):
        raise ValueError(f"num_topics must be <= {len(SYNTHETIC_TOPICS)}, got {num_topics}")
    rng = random.Random(seed)
    topics = list(SYNTHETIC_TOPICS)[:num_topics]
    docs = []
    for _ in range(num_docs):
        nouns = SYNTHETIC_TOPICS[rng.choice(topics)]
        doc = []
        for _ in range(rng.randint(min_sentences, max_sentences)):
            n1, n2 = rng.choice(nouns), rng.choice(nouns)
            doc.append(rng.choice(_SYNTHETIC_TEMPLATES).format(
                a1=SYNTHETIC_ADJECTIVE_OF[n1], n1=n1, verb=rng.choice(SYNTHETIC_VERBS),
                a2=SYNTHETIC_ADJECTIVE_OF[n2], n2=n2))
        docs.append(doc)
    num_heldout = int(num_docs * heldout_fraction)
    num_train = num_docs - num_heldout
    titles = [f"synthetic:{seed}:{i}" for i in range(num_docs)]
    return Corpus(docs[:num_train], docs[num_train:], "synthetic", titles[:num_train], titles[num_train:],
                  {"seed": seed, "num_topics": num_topics, "source": "synthetic_corpus"})


if __name__ == "__main__":
    # The child process of _stdlib_docstrings(): python -I -S corpus.py --collect-stdlib-docstrings OUT.json
    if len(sys.argv) == 3 and sys.argv[1] == "--collect-stdlib-docstrings":
        # A plain write, not an atomic one: OUT is in the parent's private temporary directory, and the
        # parent reads it only after this process has exited with code 0, so no one sees it half-written.
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            json.dump(_collect_stdlib_docstrings(), f)
    else:
        sys.exit("usage: python -I -S corpus.py --collect-stdlib-docstrings OUT.json")
