"""minibert.data's corpora: the CPython-documentation corpus (``cpython_docs``, built once here, in a temporary
cache), the text format of google-research/bert (``corpus``), the cleaning rules (``cleaning``) and the synthetic
language (``synthetic``)."""
import collections
import json
import os
import re
import time

import pytest

from minibert.data import cpython_docs, synthetic
from minibert.data.cleaning import clean_documentation, split_sentences
from minibert.data.corpus import Corpus, read_text_corpus, write_text_corpus
from minibert.data.cpython_docs import load_default_corpus
from minibert.data.synthetic import synthetic_corpus, synthetic_vocabulary


# -- the default corpus ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The default corpus built from scratch into an empty cache: (corpus, cache_dir, seconds)."""
    cache_dir = tmp_path_factory.mktemp("minibert-cache")
    start = time.perf_counter()
    corpus = load_default_corpus(cache_dir=cache_dir)
    return corpus, cache_dir, time.perf_counter() - start


def test_default_corpus_is_large_clean_english(built):
    corpus, _, seconds = built
    print(f"\n{corpus!r}  built in {seconds:.1f} s")
    assert corpus.num_chars > 2_000_000, corpus
    assert corpus.num_sentences > 20_000 and corpus.num_documents > 500, corpus
    assert seconds < 30, f"building the default corpus took {seconds:.1f} s (expected a few seconds)"
    assert any(t.startswith("topic:") for t in corpus.train_titles)          # pydoc topics ...
    assert any(t.startswith("module:") for t in corpus.train_titles)         # ... and docstrings
    sentences = [s for doc in corpus.train + corpus.heldout for s in doc]
    for s in sentences:
        assert s == s.strip() and "\n" not in s and "  " not in s, repr(s)
        assert len(s.split()) >= 3, repr(s)
    # reST markup, doctest prompts and grammar rules were removed
    markup = re.compile(r"``|:func:`|:meth:`|:class:`|^>>>|^\.\. |::=")
    bad = [s for s in sentences if markup.search(s)]
    assert len(bad) <= len(sentences) // 1000, bad[:5]
    # real prose: most sentences start with a capital letter and end with a period
    assert sum(s[0].isupper() for s in sentences) > 0.9 * len(sentences)
    assert sum(s.endswith(".") for s in sentences) > 0.8 * len(sentences)


def test_train_and_heldout_are_disjoint_by_document(built):
    corpus, _, _ = built
    assert len(corpus.train_titles) == len(corpus.train) and len(corpus.heldout_titles) == len(corpus.heldout)
    titles = corpus.train_titles + corpus.heldout_titles
    assert len(set(titles)) == len(titles)
    assert not set(corpus.train_titles) & set(corpus.heldout_titles)
    assert not {tuple(d) for d in corpus.train} & {tuple(d) for d in corpus.heldout}
    assert 0.02 < len(corpus.heldout) / corpus.num_documents < 0.10         # ~5% held out
    # the split is a function of the title alone (hashlib, not the per-process salted hash())
    assert all(cpython_docs._is_heldout(t) for t in corpus.heldout_titles)
    assert not any(cpython_docs._is_heldout(t) for t in corpus.train_titles)


def test_default_corpus_build_is_deterministic(built):
    corpus, _, _ = built
    again = cpython_docs.build_default_corpus()
    assert again.train == corpus.train and again.heldout == corpus.heldout
    assert again.train_titles == corpus.train_titles and again.heldout_titles == corpus.heldout_titles


def test_cache_round_trip_reads_plain_text_and_json(built, monkeypatch):
    corpus, cache_dir, _ = built
    (path,) = [p for p in cache_dir.iterdir()]                  # one directory per Python / cleaning version
    assert sorted(os.listdir(path)) == ["heldout.txt", "meta.json", "train.txt"]   # no temp file, no pickle
    meta = json.loads((path / "meta.json").read_text())
    assert meta["stats"] == corpus.stats()
    assert read_text_corpus(path / "train.txt") == corpus.train

    def no_build():
        raise AssertionError("the cached corpus should have been read, not rebuilt")
    monkeypatch.setattr(cpython_docs, "build_default_corpus", no_build)
    start = time.perf_counter()
    cached = load_default_corpus(cache_dir=cache_dir)
    assert time.perf_counter() - start < 5
    assert cached.train == corpus.train and cached.heldout == corpus.heldout
    assert cached.train_titles == corpus.train_titles and cached.heldout_titles == corpus.heldout_titles
    assert repr(cached) == repr(corpus)


def test_cache_dir_comes_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path))
    assert cpython_docs.default_cache_dir() == str(tmp_path)
    monkeypatch.delenv("MINIBERT_CACHE")
    assert cpython_docs.default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "minibert")


def test_repr_reports_documents_sentences_and_characters():
    c = Corpus([["One two three.", "Four five six."], ["Seven eight nine."]], [["Ten eleven twelve."]], "tiny")
    assert repr(c) == ("Corpus('tiny', train: 2 docs, 3 sentences, 45 chars; "
                       "heldout: 1 docs, 1 sentences, 18 chars)")
    assert (c.num_documents, c.num_sentences, c.num_chars) == (3, 4, 63)


# -- google-research/bert's text format ----------------------------------------------------------

def test_text_corpus_round_trip(tmp_path):
    docs = [["The first sentence.", "The second one."], ["Another document."], ["A third", "with two lines"]]
    path = tmp_path / "sub" / "corpus.txt"
    write_text_corpus(docs, path)
    assert path.read_text() == ("The first sentence.\nThe second one.\n\nAnother document.\n\n"
                                "A third\nwith two lines\n")
    assert read_text_corpus(path) == docs
    assert os.listdir(tmp_path / "sub") == ["corpus.txt"]                  # the temp file was renamed


def test_read_text_corpus_tolerates_extra_blank_lines_and_spaces(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n\n  One.  \nTwo.\n\n\n\n\tThree.\n   \n")
    assert read_text_corpus(path) == [["One.", "Two."], ["Three."]]


def test_read_text_corpus_splits_lines_as_open_does_and_drops_a_byte_order_mark(tmp_path):
    """Windows line ends and a UTF-8 BOM (Notepad writes one) read as plain lines; a form feed or a
    U+2028 inside a sentence (str.splitlines() would cut there) stays in it, as write_text_corpus wrote it."""
    path = tmp_path / "c.txt"
    path.write_bytes("\ufeffOne.\r\nTwo.\r\n\r\nThree\x0cfour\u2028five.\rSix.\n".encode("utf-8"))
    assert read_text_corpus(path) == [["One.", "Two."], ["Three\x0cfour\u2028five.", "Six."]]


def test_read_text_corpus_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_text_corpus(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n")
    with pytest.raises(ValueError, match=r"empty\.txt.*empty"):
        read_text_corpus(empty)


def test_write_text_corpus_rejects_what_would_not_read_back(tmp_path):
    with pytest.raises(ValueError, match=r"docs\[0\]\[1\]"):
        write_text_corpus([["fine", "two\nlines"]], tmp_path / "x.txt")
    with pytest.raises(ValueError, match=r"docs\[1\]\[0\]"):
        write_text_corpus([["fine"], [""]], tmp_path / "x.txt")
    with pytest.raises(TypeError, match="docs\\[0\\]"):
        write_text_corpus(["a whole document as one string"], tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


# -- cleaning rules ----------------------------------------------------------------------------

def test_split_sentences_keeps_abbreviations_and_initials():
    assert split_sentences("It works, e.g. here. Then it stops! Why? Because J. Smith said so.") == [
        "It works, e.g. here.", "Then it stops!", "Why?", "Because J. Smith said so."]
    assert split_sentences("Use os.path.join() here. The version is 3.11 now.") == [
        "Use os.path.join() here.", "The version is 3.11 now."]


def test_clean_documentation_drops_code_and_markup():
    doc = """Summary line of the function.

    Use :func:`open` or :meth:`~io.IOBase.close` with ``mode='r'``, see `the docs <https://x>`_ and
    *emphasis* here.

    Example::

        result = compute(a, b)
        print(result)

    >>> compute(1, 2)
    3

    Section title
    -------------

    .. versionadded:: 3.2

    .. code-block:: python

       x = {"a": [1, 2, 3]}

    The list continues:

    * first item of the list
    * second item of the list
    """
    import inspect
    assert clean_documentation(inspect.cleandoc(doc)) == [
        "Summary line of the function.",
        "Use open or close with mode='r', see the docs and emphasis here.",   # "Example:" is too short
        "The list continues:",
        "first item of the list",
        "second item of the list",
    ]


def test_clean_documentation_keeps_indented_prose_but_not_indented_code():
    text = ("A definition follows:\n\n"
            "   while_stmt ::= \"while\" expression \":\" suite\n\n"
            "object.__init__(self[, ...])\n\n"
            "   Called after the instance has been created.  It has no return value.\n")
    assert clean_documentation(text) == ["A definition follows:", "Called after the instance has been created.",
                                         "It has no return value."]


# -- the synthetic language ---------------------------------------------------------------------

def test_synthetic_corpus_is_seeded():
    a, b, c = synthetic_corpus(50, seed=3), synthetic_corpus(50, seed=3), synthetic_corpus(50, seed=4)
    assert a.train == b.train and a.heldout == b.heldout
    assert a.train != c.train
    assert len(a.train) + len(a.heldout) == 50 and len(a.heldout) == 2         # 5% held out
    assert all(4 <= len(doc) <= 8 for doc in a.train + a.heldout)


def test_synthetic_colour_is_fixed_by_the_next_word_and_not_by_the_left_context():
    docs = synthetic_corpus(300, seed=0, heldout_fraction=0).train
    vocabulary = set(synthetic_vocabulary())
    colours = set(synthetic.SYNTHETIC_ADJECTIVES)
    for doc in docs:
        words = [re.findall(r"\w+|\.", s) for s in doc]
        nouns = {w for sentence in words for w in sentence if w in synthetic.SYNTHETIC_ADJECTIVE_OF}
        topics = [t for t, ns in synthetic.SYNTHETIC_TOPICS.items() if nouns <= set(ns)]
        assert len(topics) == 1                          # a document stays on one topic (NSP signal)
        for sentence in words:
            assert set(sentence) <= vocabulary
            for left, right in zip(sentence, sentence[1:]):
                if left in colours:                     # the word to the right decides the colour
                    assert synthetic.SYNTHETIC_ADJECTIVE_OF[right] == left
    # within every topic each colour belongs to the same number of nouns: the topic (left context)
    # carries no information about the colour
    for nouns in synthetic.SYNTHETIC_TOPICS.values():
        counts = collections.Counter(synthetic.SYNTHETIC_ADJECTIVE_OF[n] for n in nouns)
        assert set(counts.values()) == {len(nouns) // len(colours)}


def test_synthetic_corpus_errors():
    with pytest.raises(ValueError, match="num_docs must be an integer >= 1, got 0"):
        synthetic_corpus(0)
    with pytest.raises(ValueError, match="max_sentences"):
        synthetic_corpus(5, min_sentences=4, max_sentences=2)
    with pytest.raises(ValueError, match="num_topics must be <= 8, got 9"):
        synthetic_corpus(5, num_topics=9)
    with pytest.raises(ValueError, match="heldout_fraction"):
        synthetic_corpus(5, heldout_fraction=1.0)
