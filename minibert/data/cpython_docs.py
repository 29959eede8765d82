"""The default corpus: the documentation that ships with CPython itself, cleaned, split and cached.

The pydoc topics (``pydoc_data.topics``, the language reference as plain text) and the docstrings of the
standard library's modules, classes and functions (``stdlib_docs.py``), cleaned into documents of sentences
(``cleaning.py``), split into train and held-out *by document*, and cached as plain text in
google-research/bert's format (``corpus.py``).  No download: every Python installation has it.

    >>> corpus = load_default_corpus()      # 2-5 s the first time, then read from ~/.cache/minibert/
    >>> corpus                              # (numbers for CPython 3.11.7 on Linux)
    Corpus('cpython-docs', train: 628 docs, 24,490 sentences, 2.01M chars; heldout: 37 docs, 1,168 sentences, 93,061 chars)
    >>> corpus.train[0][:2]                 # the first two sentences of the first training document
"""
import hashlib
import json
import os
import sys
import time

from ..files import atomic_write_bytes
from .cleaning import clean_documentation
from .corpus import Corpus, read_text_corpus, write_text_corpus
from .stdlib_docs import stdlib_docstrings

# Bump when the cleaning rules change: the cache directory name includes it, so old caches are ignored.
CORPUS_VERSION = 1
HELDOUT_PERCENT = 5


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
    sources += [("module:" + name, docstrings) for name, docstrings in stdlib_docstrings()]
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
