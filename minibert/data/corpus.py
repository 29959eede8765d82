"""What a corpus is, and the text format it is stored in.

A *document* is a list of sentence strings; a corpus is a list of documents, split into ``train`` and
``heldout`` (``Corpus``).  On disk it is google-research/bert's format, the one its
``create_pretraining_data.py`` reads: one sentence per line, a blank line between documents
(``write_text_corpus`` / ``read_text_corpus``).

Two corpora ship with minibert, each in its own module: ``cpython_docs.load_default_corpus()`` (the
documentation that ships with CPython, cleaned by ``cleaning.py``) and ``synthetic.synthetic_corpus()`` (a
tiny seeded language whose right answers are known).

    >>> docs = read_text_corpus("my_corpus.txt")     # [[sentence, ...], ...]: here 100 documents
    >>> Corpus(docs[:-10], docs[-10:], "mine")
    Corpus('mine', train: 90 docs, 557 sentences, 19,965 chars; heldout: 10 docs, 53 sentences, 1,880 chars)
"""
import os
import re
from dataclasses import dataclass, field

from ..files import atomic_write_bytes


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


FORMAT = "a UTF-8 text file, one sentence per line and a blank line between documents"


def read_text_corpus(path):
    """Read a corpus in google-research/bert's format: one sentence per line, blank line between documents.

    Returns a list of documents, each a list of sentence strings (stripped; empty documents dropped).
    Every bad file gets an error naming it and what was expected: FileNotFoundError if ``path`` does not
    exist, IsADirectoryError if it is a directory, ValueError if it is not UTF-8 text (a binary file, or
    text in another encoding), holds a NUL byte (binary data that happens to decode) or holds no sentence.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"corpus {path!r} is a directory: expected {FORMAT}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"corpus file not found: {path!r} (expected {FORMAT})")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")     # -sig: a byte-order mark (Windows editors write one) is dropped
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"corpus file {path!r} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}, "
                         f"line {line}, cannot be decoded): expected {FORMAT}. A binary file, or text saved in "
                         "another encoding? (re-save it as UTF-8)") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ValueError(f"corpus file {path!r} holds a NUL byte (line {line}): expected {FORMAT}, "
                         "not a binary file")
    docs = [[]]
    for line in re.split(r"\r\n|\r|\n", text):   # the line ends open() knows (not str.splitlines()'s \f ...)
        line = line.strip()
        if line:
            docs[-1].append(line)
        elif docs[-1]:
            docs.append([])
    docs = [doc for doc in docs if doc]
    if not docs:
        raise ValueError(f"corpus file {path!r} is empty: expected {FORMAT}, got no sentence")
    return docs
