"""train_wordpiece: a hand-worked example, the fast incremental merge loop against a slow full
recount, determinism, the vocabulary layout, and a trained vocabulary in use.

Training is discrete and deterministic, so comparisons are exact. No timing here: the 8k-pieces
benchmark is benchmarks/bench_wordpiece.py.
"""
import random
import re
import sysconfig
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from minibert.data.tokenizer import SPECIAL_TOKENS, BasicTokenizer, BertTokenizer, is_control, is_whitespace
from minibert.data.wordpiece import _WORD_BOUNDARY, count_words, initial_alphabet, merge_loop, train_wordpiece

HUGS = ["hug " * 10 + "pug " * 5 + "pun " * 12 + "bun " * 4 + "hugs " * 5]


def stdlib_docstrings(n_chars, skip=0):
    """About n_chars of English: triple-quoted strings from the standard library's sources, file by
    file in sorted order, after skipping the first `skip` characters (for a held-out part)."""
    pattern = re.compile(r'"""(.*?)"""', re.S)
    texts, seen = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        for doc in pattern.findall(path.read_text(encoding="utf-8", errors="replace")):
            seen += len(doc)
            if seen > skip:
                texts.append(doc)
            if seen >= skip + n_chars:
                return texts
    return texts


@pytest.fixture(scope="module")
def corpus():
    texts = stdlib_docstrings(150_000)
    assert sum(map(len, texts)) >= 150_000, "the standard library should have 150k characters of docstrings"
    return texts


def test_hand_worked_example():
    """hug x10, pug x5, pun x12, bun x4, hugs x5 (the HF course's example). Pair counts at the start:
    ##u ##g 20, p ##u 17, ##u ##n 16, h ##u 15, ##g ##s 5, b ##u 4. Merge by merge:
    ##ug (20), ##un (16), hug (h ##ug: 15), pun (12), then hugs and pug tie at 5 ("hug" < "p"), bun (4)."""
    vocab = train_wordpiece(HUGS, vocab_size=100, min_frequency=2)
    alphabet = ["b", "g", "h", "n", "p", "s", "u"]
    assert vocab == list(SPECIAL_TOKENS) + alphabet + ["##" + c for c in alphabet] + [
        "##ug", "##un", "hug", "pun", "hugs", "pug", "bun"]
    # Every word is now one piece, so training stops early, below the requested 100.
    assert train_wordpiece(HUGS, vocab_size=22) == vocab[:22]
    assert train_wordpiece(HUGS, vocab_size=100, min_frequency=5) == vocab[:-1]   # bun (4) is too rare


def reference_merge_loop(word_counts, vocab, vocab_size, min_frequency):
    """The obviously-correct, slow version: recount every pair of every word before each merge."""
    words = {word: [word[0]] + ["##" + c for c in word[1:]] for word in word_counts}
    vocab = list(vocab)
    while len(vocab) < vocab_size:
        counts = Counter()
        for word, pieces in words.items():
            for pair in zip(pieces, pieces[1:]):
                counts[pair] += word_counts[word]
        if not counts:
            break
        (a, b), n = min(counts.items(), key=lambda item: (-item[1], item[0]))
        if n < min_frequency:
            break
        if a + b[2:] not in vocab:
            vocab.append(a + b[2:])
        for word, pieces in words.items():
            merged, i = [], 0
            while i < len(pieces):
                if pieces[i:i + 2] == [a, b]:
                    merged.append(a + b[2:])
                    i += 2
                else:
                    merged.append(pieces[i])
                    i += 1
            words[word] = merged
    return vocab


def test_incremental_merge_loop_equals_full_recount(corpus):
    """The fast loop updates pair counts only in the words a merge touched; a full recount after
    every merge must pick the same pairs in the same order (300 merges, ties included)."""
    word_counts = count_words(corpus[:100], BasicTokenizer())
    chars = initial_alphabet(word_counts)
    start = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    word_counts = dict(sorted(word_counts.items()))
    size = len(start) + 300
    fast = merge_loop(word_counts, list(start), size, min_frequency=2)
    assert len(fast) == size
    assert fast == reference_merge_loop(word_counts, start, size, min_frequency=2)


def test_training_is_deterministic_and_ignores_text_order(corpus):
    vocab = train_wordpiece(corpus, vocab_size=1500)
    assert train_wordpiece(corpus, vocab_size=1500) == vocab
    shuffled = list(corpus)
    random.Random(0).shuffle(shuffled)
    assert train_wordpiece(iter(shuffled), vocab_size=1500) == vocab     # any iterable, any order


def test_vocabulary_layout_and_requested_size(corpus):
    vocab = train_wordpiece(corpus, vocab_size=1200)
    assert len(vocab) == 1200 and len(set(vocab)) == 1200
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    n_chars = sum(1 for piece in vocab if len(piece) == 1)
    chars = vocab[5:5 + n_chars]
    assert chars == sorted(chars) and vocab[5 + n_chars:5 + 2 * n_chars] == ["##" + c for c in chars]
    merged = vocab[5 + 2 * n_chars:]
    assert all(len(piece.removeprefix("##")) >= 2 for piece in merged)


def test_trained_vocabulary_tokenizes_held_out_english(corpus, tmp_path):
    path = tmp_path / "vocab.txt"
    vocab = train_wordpiece(corpus, vocab_size=2000, out_file=path)
    assert path.read_text(encoding="utf-8").split("\n") == vocab + [""]
    tok = BertTokenizer(path)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 1, 2, 3, 4)

    held_out = " ".join(stdlib_docstrings(3_000, skip=400_000))      # docstrings the trainer never saw
    tokens = tok.tokenize(held_out)
    words = BasicTokenizer().tokenize(held_out)
    assert len(words) > 500 and not set(stdlib_docstrings(3_000, skip=400_000)) & set(corpus)
    assert tokens.count("[UNK]") <= 0.01 * len(tokens), "only characters never seen in training are [UNK]"
    assert len(tokens) < 1.6 * len(words), "2k pieces should cover most words in one or two pieces"
    sentence = "Return the number of items in the list, or raise an error if it is empty."
    assert tok.tokenize(sentence) == BasicTokenizer().tokenize(sentence), "common words are whole pieces"


def test_word_boundaries_are_where_basic_tokenizer_splits():
    """count_words cuts the raw text at _WORD_BOUNDARY before the BasicTokenizer runs: that must
    be exactly the characters the BasicTokenizer splits words at (BERT's whitespace, plus what
    Python's str.split() also splits at among the characters that survive cleaning)."""
    splits = {chr(cp) for cp in range(0x110000)
              if is_whitespace(chr(cp)) or (chr(cp).isspace() and not is_control(chr(cp)))}
    matched = {chr(cp) for cp in range(0x110000) if _WORD_BOUNDARY.fullmatch(chr(cp))}
    assert matched == splits, sorted(map(unicodedata.name, matched ^ splits))


def test_counting_chunks_equals_tokenizing_whole_texts():
    messy = ["Hello,\tWorld!\u2028Café\x1fau\x0blait 我爱\u3000NLP\u00a0e\u0301cole  [MASK]\r\nend",
             "", "the the THE the.", "a\x00b\u200bc"]
    basic = BasicTokenizer()
    assert count_words(messy, basic) == Counter(w for text in messy for w in basic.tokenize(text))


def test_unseen_and_long_words_are_left_out():
    vocab = train_wordpiece(["ab ab ab " + "x" * 101], vocab_size=50)
    assert "x" not in vocab                         # only in a word the tokenizer would make [UNK]
    assert "ab" in vocab
    # limit_alphabet=2 keeps a (6 times) and b (3); "zzq" cannot be spelled and is left out.
    # Then "##a ##b" and "a ##a" tie at 3: "##a" sorts before "a", so "##ab" first, then "aab".
    vocab = train_wordpiece(["aab aab aab zzq"], vocab_size=50, limit_alphabet=2)
    assert vocab[5:] == ["a", "b", "##a", "##b", "##ab", "aab"]


@pytest.mark.parametrize("call, error, message", [
    (lambda: train_wordpiece("just one string", 100), TypeError, "iterable of str.*single str"),
    (lambda: train_wordpiece(["fine", 3], 100), TypeError, "item 1 is int"),
    (lambda: train_wordpiece(["abc"], 8), ValueError, "vocab_size=8 is too small.*3 characters.*need 11"),
    (lambda: train_wordpiece(["abc"], 100, min_frequency=0), ValueError, "min_frequency must be an int >= 1, got 0"),
    (lambda: train_wordpiece(["abc"], 10.5), ValueError, "vocab_size must be an int"),
    (lambda: train_wordpiece(["abc"], 100, limit_alphabet=0), ValueError, "limit_alphabet"),
])
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
