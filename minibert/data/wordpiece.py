"""Train a WordPiece vocabulary (``vocab.txt``) from raw text.

BERT's vocabulary was learned from its training corpus by Google's own (unpublished) WordPiece
trainer.  This one does what HF tokenizers' ``WordPieceTrainer`` does: start from single characters
and repeatedly glue together the two adjacent pieces that occur together most often, until the
vocabulary has the size you asked for (which score picks the pair: below). Pieces that continue a word carry a ``##`` prefix, so the
word "hugs" starts as ``h ##u ##g ##s`` and may end as ``hug ##s``.

    >>> vocab = train_wordpiece(["hug " * 10 + "pug " * 5 + "pun " * 12 + "bun " * 4 + "hugs " * 5],
    ...                         vocab_size=22)
    >>> vocab[:5], vocab[-5:]
    (['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'], ['##s', '##u', '##ug', '##un', 'hug'])

(after the 5 specials and 7 + 7 characters, three merges: "##u ##g" occurs 20 times, "##u ##n" 16,
then "h ##ug" 15.)

The steps, each one function below:

1. ``count_words``: run our ``BasicTokenizer`` (the same cleaning, lower-casing and punctuation
   splitting the tokenizer will apply later) and count how often each word occurs.
2. ``initial_alphabet``: every character seen, in two forms: "a" (starts a word) and "##a"
   (continues one). With them every training word can be spelled, so nothing is [UNK].
3. ``merge_loop``: split every word into characters and merge the most frequent adjacent pair,
   again and again, adding each merged piece to the vocabulary.

Which pair to merge? Two scores are in use:

- frequency, ``count(a, b)`` (this module). This is what HF tokenizers' ``WordPieceTrainer``
  actually does: it is its BPE trainer with a ``##`` continuation prefix.
- the "likelihood" score ``count(a, b) / (count(a) * count(b))`` (HF course's description of
  Google's unpublished trainer). It prefers pairs whose parts are rare on their own.

We use frequency because (i) after a merge only the pairs in the words that contained the merged
pair change count, so an exact incremental update is simple and fast (with the likelihood score,
``count(a)`` changes with every merge of ``a`` and with it the score of every pair containing
``a``); and (ii) the likelihood score ranks a pair of two characters seen twice (2 / (2 * 2))
above "##in" + "##g" seen 50,000 times, so the first merges are rare junk. Either way the
*tokenizer* is the same: WordPiece tokenizes by greedy longest match, which needs only the
vocabulary, not the merge order (unlike BPE, which replays the merges).

Ties are broken by the pieces' text (alphabetical), so the result depends only on the word counts:
the same texts in any order give the same vocabulary.
"""
import heapq
import os
import re
from collections import Counter, defaultdict

from ..files import atomic_write_bytes
from .tokenizer import SPECIAL_TOKENS, BasicTokenizer

__all__ = ["train_wordpiece", "count_words", "initial_alphabet", "merge_loop"]

# Where BasicTokenizer splits words: BERT's whitespace (" \t\n\r" and the Unicode space separators,
# category Zs) plus U+2028/U+2029, which Python's str.split() also splits on. Splitting the raw text
# here first lets count_words run the (slow, pure Python) BasicTokenizer once per distinct chunk
# instead of once per character of the corpus; test_wordpiece checks this list against Unicode.
_WORD_BOUNDARY = re.compile("[ \t\n\r\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u2028\u2029]+")


def count_words(texts, basic_tokenizer):
    """Word -> number of occurrences, after ``basic_tokenizer`` (lower-casing, punctuation split...).

    Chunks between whitespace are counted first (cheap), then each distinct chunk goes through the
    BasicTokenizer once and its words inherit the chunk's count. That gives the same counts as
    tokenizing every text in full, because the BasicTokenizer never joins across whitespace.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("train_wordpiece: texts must be an iterable of str (e.g. a list of lines or "
                        f"documents), got a single {type(texts).__name__}; wrap it in a list")
    chunks = Counter()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"train_wordpiece: texts must contain only str, item {i} is "
                            f"{type(text).__name__}: {text!r:.80}")
        chunks.update(_WORD_BOUNDARY.split(text))
    words = Counter()
    for chunk, n in chunks.items():
        for word in basic_tokenizer.tokenize(chunk):
            words[word] += n
    return words


def initial_alphabet(word_counts, limit_alphabet=None):
    """The characters to start from, most frequent first if ``limit_alphabet`` caps their number.

    Returns the sorted list of kept characters. Words that use a dropped (rare) character cannot
    be spelled; ``train_wordpiece`` leaves them out (the tokenizer will make them [UNK]).
    """
    char_counts = Counter()
    for word, n in word_counts.items():
        for char in word:
            char_counts[char] += n
    chars = sorted(char_counts, key=lambda c: (-char_counts[c], c))   # most frequent first, ties by text
    if limit_alphabet is not None:
        chars = chars[:limit_alphabet]
    return sorted(chars)


def merge_loop(word_counts, vocab, vocab_size, min_frequency):
    """Merge the most frequent adjacent pair of pieces until ``vocab`` has ``vocab_size`` entries.

    Args:
        word_counts: dict word -> count; every character of every word has both its forms in vocab.
        vocab: list of str, the vocabulary so far (specials and alphabet); appended to in place.
        vocab_size: stop when ``len(vocab)`` reaches it.
        min_frequency: stop when the best pair occurs fewer times than this.

    Data structures (pieces are ints: their index in ``vocab``):
        words[w]       the word as a list of piece ids, e.g. [id("h"), id("##u"), id("##g")]
        freqs[w]       how often the word occurs
        pair_count     (left, right) -> occurrences in the corpus (sum of freqs, times per word)
        pair_words     (left, right) -> set of the words w that contain it
        heap           (-count, left text, right text, left, right): the best pair on top. When a
                       count changes we push the new entry and leave the old one; an entry whose
                       count no longer matches pair_count is stale and skipped when popped.

    One merge of (a, b) into ab touches only the words in pair_words[(a, b)]: each is re-split,
    and the counts of the pairs it held before and holds after are updated. No full recount.
    """
    piece_id = {piece: i for i, piece in enumerate(vocab)}
    words = [[piece_id[word[0]]] + [piece_id["##" + c] for c in word[1:]] for word in word_counts]
    freqs = list(word_counts.values())

    pair_count = defaultdict(int)
    pair_words = defaultdict(set)
    for w, (pieces, freq) in enumerate(zip(words, freqs)):
        for pair in zip(pieces, pieces[1:]):
            pair_count[pair] += freq
            pair_words[pair].add(w)
    heap = [(-n, vocab[a], vocab[b], a, b) for (a, b), n in pair_count.items()]
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        neg_count, left, right, a, b = heapq.heappop(heap)
        if pair_count.get((a, b)) != -neg_count:
            continue                                   # stale entry: this pair's count changed since
        if -neg_count < min_frequency:
            break                                      # the best remaining pair is too rare
        # The new piece: "hu" + "##g" -> "hug". (`right` is never a word start, so it has "##".)
        merged = left + right[2:]
        if merged not in piece_id:                     # "##a"+"##bc" and "##ab"+"##c" give one piece
            piece_id[merged] = len(vocab)
            vocab.append(merged)
        ab = piece_id[merged]

        delta = defaultdict(int)                       # net change of each pair's count
        for w in pair_words.pop((a, b)):
            pieces, freq = words[w], freqs[w]
            old_pairs = set(zip(pieces, pieces[1:]))
            for pair in zip(pieces, pieces[1:]):
                delta[pair] -= freq
            new_pieces, i = [], 0                      # replace every a, b (left to right) by ab
            while i < len(pieces):
                if i + 1 < len(pieces) and pieces[i] == a and pieces[i + 1] == b:
                    new_pieces.append(ab)
                    i += 2
                else:
                    new_pieces.append(pieces[i])
                    i += 1
            words[w] = new_pieces
            new_pairs = set(zip(new_pieces, new_pieces[1:]))
            for pair in zip(new_pieces, new_pieces[1:]):
                delta[pair] += freq
            for pair in old_pairs - new_pairs:
                if pair != (a, b):
                    pair_words[pair].discard(w)
            for pair in new_pairs - old_pairs:
                pair_words[pair].add(w)
        del pair_count[(a, b)]
        delta.pop((a, b), None)
        for (x, y), change in delta.items():
            if change:
                pair_count[(x, y)] += change
                heapq.heappush(heap, (-pair_count[(x, y)], vocab[x], vocab[y], x, y))
    return vocab


def train_wordpiece(texts, vocab_size, out_file=None, min_frequency=2, do_lower_case=True,
                    tokenize_chinese_chars=True, strip_accents=None, limit_alphabet=None,
                    max_input_chars_per_word=100):
    """Learn a WordPiece vocabulary of ``vocab_size`` pieces from ``texts``.

    Args:
        texts: any iterable of str (a list of documents, an open file, a generator).
        vocab_size: size of the vocabulary to build, special tokens included. Fewer pieces come out
            if the corpus runs out of pairs occurring ``min_frequency`` times.
        out_file: if given, also write the vocabulary there (atomically), one piece per line (a
            ``vocab.txt`` that ``BertTokenizer`` reads).
        min_frequency: a pair must occur at least this often to be merged.
        do_lower_case, tokenize_chinese_chars, strip_accents: the BasicTokenizer settings; use the
            ones the ``BertTokenizer`` that will read this vocabulary will use.
        limit_alphabet: keep only this many (most frequent) characters; None keeps all.
        max_input_chars_per_word: longer words are skipped (the tokenizer makes them [UNK]).

    Returns:
        list of str: ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4), then every character, then every
        character with ``##``, then the merged pieces in the order they were learned.
    """
    for name, value, lowest in (("vocab_size", vocab_size, 1), ("min_frequency", min_frequency, 1),
                                ("max_input_chars_per_word", max_input_chars_per_word, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ValueError(f"train_wordpiece: {name} must be an int >= {lowest}, got {value!r}")
    if limit_alphabet is not None and (isinstance(limit_alphabet, bool) or not isinstance(limit_alphabet, int)
                                       or limit_alphabet < 1):
        raise ValueError(f"train_wordpiece: limit_alphabet must be None or an int >= 1, got {limit_alphabet!r}")

    # 1. Words and their counts, through the same BasicTokenizer the BertTokenizer will use.
    basic = BasicTokenizer(do_lower_case, tokenize_chinese_chars, strip_accents)
    word_counts = count_words(texts, basic)
    word_counts = {w: n for w, n in word_counts.items() if len(w) <= max_input_chars_per_word}

    # 2. Specials, then the alphabet in both forms.
    chars = initial_alphabet(word_counts, limit_alphabet)
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    if vocab_size < len(vocab):
        raise ValueError(f"train_wordpiece: vocab_size={vocab_size} is too small: the {len(SPECIAL_TOKENS)} special "
                         f"tokens and the {len(chars)} characters seen (each also as ##char) already need "
                         f"{len(vocab)}; raise vocab_size or set limit_alphabet")
    kept = set(chars)
    word_counts = {w: n for w, n in sorted(word_counts.items()) if kept.issuperset(w)}

    # 3. Merges.
    vocab = merge_loop(word_counts, vocab, vocab_size, min_frequency)

    if out_file is not None:
        directory = os.path.dirname(os.fspath(out_file))
        if directory:
            os.makedirs(directory, exist_ok=True)
        atomic_write_bytes(out_file, "".join(piece + "\n" for piece in vocab).encode("utf-8"))
    return vocab
