"""BERT's tokenizer: text -> word pieces -> ids, exactly as transformers' ``BertTokenizer``.

BERT never sees characters or words; it sees ids into a fixed vocabulary of ~30k "word pieces"
(``vocab.txt``, one piece per line, the line number is the id). Getting from text to those ids takes
two stages, the same two stages as google-research/bert's ``tokenization.py``:

1. ``BasicTokenizer``: clean the text and cut it into words and punctuation marks.
       "Héllo, wörld!"  ->  ["hello", ",", "world", "!"]
   a. drop NUL, U+FFFD and control characters; turn every kind of whitespace into " "
   b. put spaces around CJK ideographs, so each Chinese character becomes its own word
   c. NFC-normalise (transformers does this; google-research/bert does not)
   d. split on whitespace; lower-case each word and strip its accents (NFD, drop the marks).
      (Python's ``str.split()`` also splits on U+2028/U+2029, the line and paragraph separators
      that survive step a; BERT and transformers use the same ``split()``.)
   e. split every punctuation character off as a word of its own

2. ``WordpieceTokenizer``: cut each word into the longest pieces found in the vocabulary,
   left to right. A piece that continues a word is written with a ``##`` prefix.
       "unaffable"  ->  ["una", "##ffa", "##ble"]
   A word with no complete cover (or longer than 100 characters) becomes the single token [UNK].

``BertTokenizer`` ties the two together, keeps the special tokens ([CLS] [SEP] [PAD] [MASK] [UNK])
whole when they are typed into the text, and builds model inputs: ``[CLS] A [SEP]`` or
``[CLS] A [SEP] B [SEP]`` with ``token_type_ids`` (segment A = 0, B = 1) and an ``attention_mask``
(1 = real token, 0 = padding).

    >>> tok = BertTokenizer("vocab.txt")
    >>> tok.tokenize("The [MASK] sat.")
    ['the', '[MASK]', 'sat', '.']
    >>> enc = tok("The cat sat.", "It purred.")
    >>> tok.convert_ids_to_tokens(enc["input_ids"])
    ['[CLS]', 'the', 'cat', 'sat', '.', '[SEP]', 'it', 'pu', '##rred', '.', '[SEP]']
    >>> enc["token_type_ids"]
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]

The tests compare every token and id with transformers' python ``BertTokenizerLegacy`` (the slow
tokenizer) and its Rust-backed ``BertTokenizer`` on the real 30k vocabulary.
"""
import os
import re
import unicodedata

import numpy as np

from ..files import atomic_write_bytes

__all__ = ["BasicTokenizer", "BertTokenizer", "WordpieceTokenizer", "load_vocab"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# ---------------------------------------------------------------------------------------------
# Character classes (google-research/bert's definitions, character for character)
# ---------------------------------------------------------------------------------------------

def is_whitespace(char):
    """Space, tab, newline, carriage return, or any Unicode "space separator" (category Zs).

    \\t \\n \\r are control characters to Unicode, but BERT treats them as whitespace.
    """
    if char in " \t\n\r":
        return True
    return unicodedata.category(char) == "Zs"


def is_control(char):
    """Any Unicode "other" character (categories Cc, Cf, Cn, Co, Cs), except \\t \\n \\r.

    This covers ASCII controls (\\x00-\\x1f, \\x7f), zero-width characters such as U+200B
    (category Cf), unassigned code points and lone surrogates. BERT deletes them all.
    """
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def is_punctuation(char):
    """Every non-alphanumeric printable ASCII character, plus any Unicode punctuation (P*).

    ``^ $ ` + < = > | ~`` are "symbols" to Unicode, not punctuation, but BERT splits them off
    too so that all of ASCII is handled the same way. Non-ASCII symbols (©, €, emoji) are not split.
    """
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_chinese_char(char):
    """A CJK Unified Ideograph (the blocks google-research/bert lists in ``_is_chinese_char``).

    Only the ideographs: Japanese kana and Korean hangul are written with spaces between words,
    so they are treated like any other letters.
    """
    cp = ord(char)
    return (0x4E00 <= cp <= 0x9FFF         # CJK Unified Ideographs
            or 0x3400 <= cp <= 0x4DBF      # Extension A
            or 0x20000 <= cp <= 0x2A6DF    # Extension B
            or 0x2A700 <= cp <= 0x2B73F    # Extension C
            or 0x2B740 <= cp <= 0x2B81F    # Extension D
            or 0x2B820 <= cp <= 0x2CEAF    # Extension E
            or 0xF900 <= cp <= 0xFAFF      # Compatibility Ideographs
            or 0x2F800 <= cp <= 0x2FA1F)   # Compatibility Ideographs Supplement


# ---------------------------------------------------------------------------------------------
# Stage 1: BasicTokenizer
# ---------------------------------------------------------------------------------------------

class BasicTokenizer:
    """Cleans text and splits it into words and punctuation marks (no vocabulary needed).

    Args:
        do_lower_case: lower-case every word (uncased BERT models were trained on lower-cased text).
        tokenize_chinese_chars: make every CJK ideograph a word of its own (Chinese has no spaces).
        strip_accents: remove accents ("café" -> "cafe"). ``None`` means "do what do_lower_case
            says", as in the original BERT and transformers: uncased models strip accents.
        never_split: words that pass through untouched (not lower-cased, not split).
    """

    def __init__(self, do_lower_case=True, tokenize_chinese_chars=True, strip_accents=None, never_split=()):
        self.do_lower_case = do_lower_case
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.strip_accents = strip_accents
        self.never_split = frozenset(never_split)

    def tokenize(self, text):
        """Text -> list of words and punctuation marks, running steps a-e of the module docstring."""
        text = self.clean_text(text)                           # a. drop controls, unify whitespace
        if self.tokenize_chinese_chars:
            text = self.space_chinese_chars(text)              # b. "我爱" -> " 我  爱 "
        text = unicodedata.normalize("NFC", text)              # c. "e" + U+0301 -> "é"
        words = []
        for word in text.split():                              # d. whitespace split ...
            if word in self.never_split:
                words.append(word)
                continue
            if self.do_lower_case:
                word = word.lower()                            #    ... lower-case ...
            if self.strip_accents or (self.strip_accents is None and self.do_lower_case):
                word = self.remove_accents(word)               #    ... "café" -> "cafe"
            words.extend(self.split_on_punctuation(word))      # e. "world!" -> "world", "!"
        return words

    @staticmethod
    def clean_text(text):
        """Delete NUL, U+FFFD (the "replacement character" left by bad decoding) and control
        characters; replace every whitespace character by a plain space."""
        out = []
        for char in text:
            if char == "\x00" or char == "\ufffd" or is_control(char):
                continue
            out.append(" " if is_whitespace(char) else char)
        return "".join(out)

    @staticmethod
    def space_chinese_chars(text):
        """Surround each CJK ideograph with spaces, so that the whitespace split makes it a word."""
        return "".join(f" {char} " if is_chinese_char(char) else char for char in text)

    @staticmethod
    def remove_accents(word):
        """Decompose (NFD: "é" -> "e" + U+0301 combining acute) and drop the combining marks (Mn)."""
        return "".join(char for char in unicodedata.normalize("NFD", word)
                       if unicodedata.category(char) != "Mn")

    @staticmethod
    def split_on_punctuation(word):
        """Every punctuation character becomes a word of its own: "don't!" -> "don", "'", "t", "!"."""
        pieces = []
        start_new_piece = True
        for char in word:
            if is_punctuation(char):
                pieces.append(char)
                start_new_piece = True
            elif start_new_piece:
                pieces.append(char)
                start_new_piece = False
            else:
                pieces[-1] += char
        return pieces


# ---------------------------------------------------------------------------------------------
# Stage 2: WordPiece
# ---------------------------------------------------------------------------------------------

class WordpieceTokenizer:
    """Splits one word into vocabulary pieces, greedily, longest match first.

    From the start of the word, take the longest prefix that is in the vocabulary; then, from
    where it ended, the longest ``##``-prefixed piece; and so on. If at some point no piece
    matches, the whole word becomes ``unk_token`` (BERT never emits half a word plus [UNK]).

        vocab has "una", "##ffa", "##ble":   "unaffable" -> ["una", "##ffa", "##ble"]

    Words longer than ``max_input_chars_per_word`` become ``unk_token`` directly; the greedy
    search is quadratic in the word length, and such "words" are noise (URLs, base64, DNA).
    """

    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, word):
        """One word (no whitespace, already through BasicTokenizer) -> list of pieces."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces = []
        start = 0
        while start < len(word):
            for end in range(len(word), start, -1):            # longest candidate first
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
            else:                                               # not even one character matched
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces


# ---------------------------------------------------------------------------------------------
# The full tokenizer
# ---------------------------------------------------------------------------------------------

def load_vocab(vocab_file):
    """Read ``vocab.txt``: one token per line, the (0-based) line number is its id.

    Raises FileNotFoundError if the file is missing, ValueError if a token appears twice (two
    ids for one token would make ``ids -> tokens -> ids`` lose information).
    """
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"BertTokenizer: vocab_file {vocab_file!r} does not exist (expected a "
                                "vocab.txt with one token per line)")
    vocab = {}
    with open(vocab_file, encoding="utf-8") as f:
        for index, line in enumerate(f):
            token = line.rstrip("\n")
            if token in vocab:
                raise ValueError(f"BertTokenizer: vocab_file {vocab_file!r} lists token {token!r} twice "
                                 f"(lines {vocab[token] + 1} and {index + 1}); expected each token once")
            vocab[token] = index
    return vocab


def _check_text(name, text):
    if not isinstance(text, str):
        raise TypeError(f"BertTokenizer: {name} must be a str (or, for a batch, a list of str), "
                        f"got {type(text).__name__}: {text!r:.80}")


class BertTokenizer:
    """BERT's tokenizer over a ``vocab.txt``; same tokens, ids and model inputs as transformers'.

    Args:
        vocab_file: path to ``vocab.txt``. It must contain [UNK] [CLS] [SEP] [PAD] [MASK].
        do_lower_case: lower-case the text (True for "uncased" models).
        tokenize_chinese_chars: split CJK ideographs into one word each.
        strip_accents: remove accents; ``None`` follows ``do_lower_case`` (as transformers does).

    Attributes: ``vocab`` (token -> id), ``ids_to_tokens`` (id -> token), ``vocab_size``,
    ``pad_token_id``, ``unk_token_id``, ``cls_token_id``, ``sep_token_id``, ``mask_token_id``, and
    ``model_max_length`` (512, BERT's number of positions; used when truncation or
    ``padding="max_length"`` is asked for without a ``max_length``).
    """

    pad_token, unk_token, cls_token, sep_token, mask_token = SPECIAL_TOKENS
    model_max_length = 512

    def __init__(self, vocab_file, do_lower_case=True, tokenize_chinese_chars=True, strip_accents=None):
        self.vocab_file = os.fspath(vocab_file)
        self.vocab = load_vocab(self.vocab_file)                            # token -> id
        self.ids_to_tokens = {i: token for token, i in self.vocab.items()}  # id -> token
        missing = [token for token in SPECIAL_TOKENS if token not in self.vocab]
        if missing:
            raise ValueError(f"BertTokenizer: vocab_file {self.vocab_file!r} lacks the special token(s) "
                             f"{', '.join(missing)}; expected all of {', '.join(SPECIAL_TOKENS)}")
        self.do_lower_case = do_lower_case
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.strip_accents = strip_accents
        self.basic_tokenizer = BasicTokenizer(do_lower_case, tokenize_chinese_chars, strip_accents,
                                              never_split=SPECIAL_TOKENS)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, unk_token=self.unk_token)
        # "[CLS]" typed anywhere in the text is the special token, even glued to a word
        # ("the[SEP]end"), as in transformers (which finds them with a trie before anything else).
        self._special_tokens_re = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")

    # -- vocabulary -------------------------------------------------------------------------------

    @property
    def vocab_size(self):
        return len(self.vocab)

    def __len__(self):
        return len(self.vocab)

    @property
    def pad_token_id(self):
        return self.vocab[self.pad_token]

    @property
    def unk_token_id(self):
        return self.vocab[self.unk_token]

    @property
    def cls_token_id(self):
        return self.vocab[self.cls_token]

    @property
    def sep_token_id(self):
        return self.vocab[self.sep_token]

    @property
    def mask_token_id(self):
        return self.vocab[self.mask_token]

    @property
    def all_special_ids(self):
        return [self.vocab[token] for token in SPECIAL_TOKENS]

    def __repr__(self):
        return (f"BertTokenizer(vocab_file={self.vocab_file!r}, vocab_size={self.vocab_size}, "
                f"do_lower_case={self.do_lower_case}, tokenize_chinese_chars={self.tokenize_chinese_chars}, "
                f"strip_accents={self.strip_accents}, special_tokens={dict(zip(SPECIAL_TOKENS, self.all_special_ids))})")

    def save_vocabulary(self, save_directory):
        """Write ``save_directory/vocab.txt`` (created if needed, atomically); return ``(path,)`` as
        transformers."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, "vocab.txt")
        text = "".join(self.ids_to_tokens[i] + "\n" for i in range(len(self.ids_to_tokens)))
        atomic_write_bytes(path, text.encode("utf-8"))
        return (path,)

    # -- text -> tokens -> ids ---------------------------------------------------------------------

    def tokenize(self, text):
        """Text -> list of word pieces. Special tokens typed in the text stay whole.

        >>> tok.tokenize("The [MASK] is unaffable!")
        ['the', '[MASK]', 'is', 'una', '##ffa', '##ble', '!']
        """
        _check_text("text", text)
        tokens = []
        # re.split with a capturing group keeps the separators: odd positions are special tokens.
        for i, chunk in enumerate(self._special_tokens_re.split(text)):
            if i % 2 == 1:
                tokens.append(chunk)
                continue
            for word in self.basic_tokenizer.tokenize(chunk):
                if word in SPECIAL_TOKENS:           # e.g. "[MA\u200bSK]": whole once cleaned
                    tokens.append(word)
                else:
                    tokens.extend(self.wordpiece_tokenizer.tokenize(word))
        return tokens

    def convert_tokens_to_ids(self, tokens):
        """Token (str) -> id, or list of tokens -> list of ids. Unknown tokens map to [UNK]'s id."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        tokens = list(tokens)                # (a generator is read once)
        for token in tokens:                 # checked first, then looked up in one pass: this runs on
            if not isinstance(token, str):   # every token of every pretraining epoch
                _check_text("each token passed to convert_tokens_to_ids", token)
        vocab_get, unk_id = self.vocab.get, self.unk_token_id
        return [vocab_get(token, unk_id) for token in tokens]

    def _check_id(self, i, name):
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"BertTokenizer.{name}: ids must be ints, got {type(i).__name__}: {i!r:.80}")
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"BertTokenizer.{name}: id {int(i)} is out of range; expected "
                             f"0 <= id < vocab_size={self.vocab_size}")
        return int(i)

    def _as_id_list(self, ids, name):
        if isinstance(ids, np.ndarray):
            if ids.ndim > 1:
                raise ValueError(f"BertTokenizer.{name}: ids must be one sequence (1-D), got an array of "
                                 f"shape {ids.shape}; call it once per row")
            ids = ids.tolist()
        return [self._check_id(i, name) for i in ids]

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """Id (int) -> token, or list/1-D array of ids -> list of tokens. Raises ValueError for an id
        outside ``[0, vocab_size)`` (transformers silently returns [UNK] or None there)."""
        if isinstance(ids, (int, np.integer)) and not isinstance(ids, (bool, np.bool_)):
            return self.ids_to_tokens[self._check_id(ids, "convert_ids_to_tokens")]
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.ids_to_tokens[i] for i in self._as_id_list(ids, "convert_ids_to_tokens")
                if i not in special]

    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=True):
        """Ids -> text: join the tokens with spaces, glue ``##`` pieces to the piece before.

        ``clean_up_tokenization_spaces`` also removes the space BERT put before punctuation and
        inside English contractions ("hello , world" -> "hello, world", "don ' t" -> "don't"),
        as transformers' python tokenizer does by default. The original text is not recovered
        exactly: case, accents and the spacing around other punctuation are gone for good.
        """
        if isinstance(ids, (int, np.integer)) and not isinstance(ids, (bool, np.bool_)):
            ids = [ids]
        self._as_id_list(ids, "decode")              # validate first: a clear error, naming decode
        tokens = self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        text = " ".join(tokens).replace(" ##", "").strip()
        if clean_up_tokenization_spaces:
            for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                                  (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(before, after)
        return text

    # -- model inputs ------------------------------------------------------------------------------

    def __call__(self, text, text_pair=None, max_length=None, truncation=False, padding=False,
                 return_tensors=None):
        """Build BERT's inputs for one text (or pair), or for a batch of them.

        One sequence:  ``[CLS] A [SEP]``          token_type_ids 0 ... 0
        A pair:        ``[CLS] A [SEP] B [SEP]``  token_type_ids 0 ... 0 1 ... 1 (B and its [SEP])

        Args:
            text: a str, or a list of str (a batch).
            text_pair: None, or the second segment(s): a str for a str ``text``, a list of the
                same length for a batch.
            max_length: longest output, special tokens included (defaults to ``model_max_length``
                when truncation or ``padding="max_length"`` needs one). Alone it does nothing, so
                it is refused unless truncation or ``padding="max_length"`` is set (transformers
                would silently truncate).
            truncation: False, True or "longest_first" (remove tokens one at a time from the end of
                the longer segment, the second one on ties: the google-research/bert rule),
                "only_first" or "only_second".
            padding: False, True or "longest" (pad the batch to its longest row), or "max_length".
                Padding uses [PAD] in input_ids and 0 in token_type_ids and attention_mask.
            return_tensors: None (lists of ints) or "np" (int64 arrays of shape (B, T), B = 1 for
                a single text).

        Returns:
            dict with ``input_ids``, ``token_type_ids``, ``attention_mask``.
        """
        batched = isinstance(text, (list, tuple))
        if batched:
            texts = list(text)
            for i, t in enumerate(texts):
                _check_text(f"text[{i}]", t)
            if text_pair is None:
                pairs = [None] * len(texts)
            elif isinstance(text_pair, (list, tuple)) and len(text_pair) == len(texts):
                pairs = list(text_pair)
                for i, t in enumerate(pairs):
                    _check_text(f"text_pair[{i}]", t)
            else:
                raise ValueError(f"BertTokenizer: text is a batch of {len(texts)}, so text_pair must be None "
                                 f"or a list of {len(texts)} str, got {type(text_pair).__name__}"
                                 + (f" of length {len(text_pair)}" if isinstance(text_pair, (list, tuple)) else ""))
        else:
            _check_text("text", text)
            if text_pair is not None:
                _check_text("text_pair", text_pair)
            texts, pairs = [text], [text_pair]

        truncation = self._check_truncation(truncation)
        padding = self._check_padding(padding)
        if return_tensors not in (None, "np"):
            raise ValueError(f"BertTokenizer: return_tensors must be None or 'np' (minibert is NumPy only), "
                             f"got {return_tensors!r}")
        if max_length is None:
            if truncation or padding == "max_length":
                max_length = self.model_max_length
        elif isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
            raise ValueError(f"BertTokenizer: max_length must be a positive int, got {max_length!r}")
        elif not truncation and padding != "max_length":
            raise ValueError(f"BertTokenizer: max_length={max_length} has no effect without truncation=True "
                             "or padding='max_length'; pass truncation=True to cut longer inputs")

        rows = [self._encode_one(a, b, max_length, truncation) for a, b in zip(texts, pairs)]

        if padding == "longest":
            pad_to = max((len(ids) for ids, _ in rows), default=0)
        elif padding == "max_length":
            pad_to = max_length
        else:
            pad_to = 0
        out = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        for ids, types in rows:
            n_pad = max(0, pad_to - len(ids))
            out["input_ids"].append(ids + [self.pad_token_id] * n_pad)
            out["token_type_ids"].append(types + [0] * n_pad)
            out["attention_mask"].append([1] * len(ids) + [0] * n_pad)

        if return_tensors == "np":
            lengths = {len(row) for row in out["input_ids"]}
            if len(lengths) > 1:
                raise ValueError(f"BertTokenizer: return_tensors='np' needs rows of one length, got lengths "
                                 f"{sorted(lengths)}; pass padding=True")
            T = len(out["input_ids"][0]) if rows else 0
            return {key: np.array(value, dtype=np.int64).reshape(len(rows), T) for key, value in out.items()}  # (B, T)
        if not batched:
            out = {key: value[0] for key, value in out.items()}
        return out

    @staticmethod
    def _check_truncation(truncation):
        if truncation is True:
            return "longest_first"
        if truncation is False or truncation == "do_not_truncate":
            return None
        if truncation in ("longest_first", "only_first", "only_second"):
            return truncation
        raise ValueError("BertTokenizer: truncation must be True, False, 'longest_first', 'only_first', "
                         f"'only_second' or 'do_not_truncate', got {truncation!r}")

    @staticmethod
    def _check_padding(padding):
        if padding is True:
            return "longest"
        if padding is False or padding == "do_not_pad":
            return None
        if padding in ("longest", "max_length"):
            return padding
        raise ValueError("BertTokenizer: padding must be True, False, 'longest', 'max_length' or 'do_not_pad', "
                         f"got {padding!r}")

    def _encode_one(self, text, text_pair, max_length, truncation):
        """One example -> (input_ids, token_type_ids), truncated but not padded."""
        ids_a = self.convert_tokens_to_ids(self.tokenize(text))
        ids_b = None if text_pair is None else self.convert_tokens_to_ids(self.tokenize(text_pair))
        if truncation:
            n_special = 2 if ids_b is None else 3
            budget = max_length - n_special                  # room left for real tokens
            if budget < 0:
                raise ValueError(f"BertTokenizer: max_length={max_length} cannot even hold the {n_special} "
                                 "special tokens [CLS] and [SEP]")
            ids_a, ids_b = self._truncate(ids_a, ids_b, budget, truncation)
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if ids_b is None:
            ids = cls + ids_a + sep
            return ids, [0] * len(ids)
        return cls + ids_a + sep + ids_b + sep, [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)

    @staticmethod
    def _truncate(ids_a, ids_b, budget, strategy):
        """Cut tokens from the end so that len(ids_a) + len(ids_b) <= budget."""
        len_b = 0 if ids_b is None else len(ids_b)
        if len(ids_a) + len_b <= budget:
            return ids_a, ids_b
        if ids_b is None or strategy == "only_first":
            keep = budget - len_b
            if keep < 0:
                raise ValueError(f"BertTokenizer: truncation='only_first' cannot fit: the second segment alone "
                                 f"has {len_b} tokens, more than the {budget} that max_length leaves")
            return ids_a[:keep], ids_b
        if strategy == "only_second":
            keep = budget - len(ids_a)
            if keep < 0:
                raise ValueError(f"BertTokenizer: truncation='only_second' cannot fit: the first segment alone "
                                 f"has {len(ids_a)} tokens, more than the {budget} that max_length leaves")
            return ids_a, ids_b[:keep]
        # longest_first: one token at a time from the longer segment, from B on ties.
        len_a = len(ids_a)
        while len_a + len_b > budget:
            if len_a > len_b:
                len_a -= 1
            else:
                len_b -= 1
        return ids_a[:len_a], ids_b[:len_b]
