"""minibert.data.pretraining and .dataset: google-research/bert's instance creation, the batch arrays, the dataset.

Proportions are checked statistically, with a tolerance of 5 binomial standard deviations computed from
the number of trials n (a false alarm has probability < 1e-6); invariants are checked exactly.
The tokenizer is a stub (whitespace/punctuation split and a vocab dict), so these tests depend on no other
minibert module than synthetic.py for the synthetic text.
"""
import json
import math
import random
import re

import numpy as np
import pytest

from minibert.data.dataset import PretrainingDataset
from minibert.data.pretraining import (CLS, IGNORE_INDEX, MASK, PAD, SEP, create_instances_from_document,
                                       create_masked_lm_predictions,
                                       create_training_instances, instances_to_arrays, truncate_seq_pair,
                                       vocab_words_for_replacement)
from minibert.data.synthetic import synthetic_corpus, synthetic_vocabulary

SPECIALS = [PAD, "[UNK]", CLS, SEP, MASK]


class StubTokenizer:
    """The duck type PretrainingDataset needs.  With ``split_long_words``, words longer than 4 letters are
    cut into WordPiece-style pieces "rock ##et" (for whole-word masking)."""

    def __init__(self, words, split_long_words=False):
        self.split_long_words = split_long_words
        pieces = []
        for w in words:
            pieces += self._pieces(w)
        self.vocab = {t: i for i, t in enumerate(SPECIALS + sorted(set(pieces)))}

    def _pieces(self, word):
        if self.split_long_words and len(word) > 4:
            return [word[:3], "##" + word[3:]]
        return [word]

    def tokenize(self, text):
        out = []
        for w in re.findall(r"\w+|[^\w\s]", text.lower()):
            out += [p if p in self.vocab else "[UNK]" for p in self._pieces(w)]
        return out

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]


def within_binomial(count, n, p, sigmas=5.0):
    """|count - n p| <= sigmas * sqrt(n p (1 - p))."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def tok():
    return StubTokenizer(synthetic_vocabulary())


@pytest.fixture(scope="module")
def docs():
    return synthetic_corpus(300, seed=0, heldout_fraction=0).train


# -- a corpus whose every token says where it comes from ----------------------------------------

def traceable_corpus(num_docs=60, num_sentences=12, words_per_sentence=4):
    """Document d, sentence s, word w is the token "d{d}s{s}w{w}": an instance tells exactly which text
    went into A and B.  Sentences are shorter than the target length, so a chunk holds several."""
    return [[" ".join(f"d{d}s{s}w{w}" for w in range(words_per_sentence)) for s in range(num_sentences)]
            for d in range(num_docs)]


def where(token):
    d, s, w = map(int, re.fullmatch(r"d(\d+)s(\d+)w(\d+)", token).groups())
    return d, s, w


def original_tokens(inst):
    """The tokens before masking: put the labels back at the masked positions."""
    tokens = list(inst.tokens)
    for p, label in zip(inst.masked_lm_positions, inst.masked_lm_labels):
        tokens[p] = label
    return tokens


# -- masked LM ----------------------------------------------------------------------------------

def test_masked_lm_predictions_invariants():
    rng = random.Random(0)
    vocab_words = [f"w{i}" for i in range(50)]
    for _ in range(200):
        n_a, n_b = rng.randint(1, 30), rng.randint(1, 30)
        tokens = [CLS] + [f"a{i}" for i in range(n_a)] + [SEP] + [f"b{i}" for i in range(n_b)] + [SEP]
        out, positions, labels = create_masked_lm_predictions(tokens, 0.15, 7, vocab_words, rng)
        assert positions == sorted(set(positions))
        assert len(positions) == min(7, max(1, int(round(len(tokens) * 0.15))))
        assert all(tokens[p] not in (CLS, SEP) for p in positions)            # never [CLS] / [SEP]
        assert labels == [tokens[p] for p in positions]                        # labels = original tokens
        assert [i for i in range(len(tokens)) if out[i] != tokens[i]] == \
               [p for p in positions if out[p] != tokens[p]]                   # changes only where predicted
        assert all(out[p] in (MASK, tokens[p]) or out[p] in vocab_words for p in positions)


def test_masked_lm_80_10_10_and_15_percent(tok, docs):
    instances = create_training_instances(docs, tok, max_seq_length=48, dupe_factor=4, seed=1)
    vocab_words = vocab_words_for_replacement(tok.vocab)
    n = masked = kept = replaced = 0
    num_tokens = 0
    for inst in instances:
        original = original_tokens(inst)
        num_tokens += len(inst.tokens)
        for p in inst.masked_lm_positions:
            n += 1
            if inst.tokens[p] == MASK:
                masked += 1
            elif inst.tokens[p] == original[p]:
                kept += 1
            else:
                replaced += 1
                assert inst.tokens[p] in vocab_words and inst.tokens[p] not in SPECIALS
    # a random replacement equals the original word with probability 1/|vocab_words|
    p_same = 1 / len(vocab_words)
    assert n > 10_000
    assert within_binomial(masked, n, 0.8), (masked, n)
    assert within_binomial(kept, n, 0.1 + 0.1 * p_same), (kept, n)
    assert within_binomial(replaced, n, 0.1 * (1 - p_same)), (replaced, n)
    # 15% of the tokens ([CLS] and [SEP] included, as in google-research/bert), up to rounding per sequence
    assert abs(n / num_tokens - 0.15) < 0.02, n / num_tokens


def test_max_predictions_per_seq_caps_the_count(tok, docs):
    instances = create_training_instances(docs, tok, max_seq_length=64, dupe_factor=1, masked_lm_prob=0.5,
                                          max_predictions_per_seq=3, seed=2)
    assert max(len(i.masked_lm_positions) for i in instances) == 3


def test_whole_word_masking_masks_every_piece_of_a_word(docs):
    tok = StubTokenizer(synthetic_vocabulary(), split_long_words=True)
    instances = create_training_instances(docs, tok, max_seq_length=48, dupe_factor=2, whole_word_mask=True,
                                          seed=3)
    split_words = 0
    for inst in instances:
        original, predicted = original_tokens(inst), set(inst.masked_lm_positions)
        for i, token in enumerate(original):
            if token.startswith("##") and original[i - 1] not in (CLS, SEP):   # (truncation can orphan a piece)
                split_words += 1                             # piece i belongs with the word at i - 1
                assert (i in predicted) == (i - 1 in predicted), (original, sorted(predicted))
        assert len(predicted) <= min(20, max(1, round(len(original) * 0.15)))
    assert split_words > 1000
    # without whole-word masking, pieces are predicted on their own
    loose = create_training_instances(docs, tok, max_seq_length=48, dupe_factor=2, seed=3)
    assert any((i in set(x.masked_lm_positions)) != (i - 1 in set(x.masked_lm_positions))
               for x in loose for i, t in enumerate(original_tokens(x)) if t.startswith("##"))


# -- next-sentence prediction and packing ----------------------------------------------------------

def test_nsp_pairs_are_actual_or_random_and_half_random():
    documents = traceable_corpus(num_docs=100)
    tok = StubTokenizer({t for doc in documents for s in doc for t in s.split()})
    instances = create_training_instances(documents, tok, max_seq_length=3 + 24, dupe_factor=6,
                                          short_seq_prob=0.0, seed=4)
    last_sentence = len(documents[0]) - 1
    decisions = randoms = 0
    used = set()                                   # (dupe-independent) sentences that went into A or actual B
    for inst in instances:
        tokens = original_tokens(inst)
        sep = tokens.index(SEP)
        a, b = [where(t) for t in tokens[1:sep]], [where(t) for t in tokens[sep + 1:-1]]
        assert len({d for d, _, _ in a}) == 1 and len({d for d, _, _ in b}) == 1    # one document each
        # A and B are contiguous text: word after word, sentence after sentence
        for part in (a, b):
            for (d0, s0, w0), (d1, s1, w1) in zip(part, part[1:]):
                assert (s1, w1) == (s0, w0 + 1) or (s1, w1) == (s0 + 1, 0)
        used.update((d, s) for d, s, _ in a)
        if not inst.is_random_next:
            used.update((d, s) for d, s, _ in b)
            assert b[0][0] == a[-1][0]                       # same document ...
            assert b[0][1] == a[-1][1] + 1                   # ... B starts with the sentence after A's last
        else:
            assert b[0][0] != a[-1][0]                       # another document
        if a[-1][1] == last_sentence:
            # A ends the document, so the chunk had one sentence: B is random by necessity, not by coin
            assert inst.is_random_next
        else:
            decisions += 1
            randoms += inst.is_random_next
    assert decisions > 1000
    assert within_binomial(randoms, decisions, 0.5), (randoms, decisions)
    # segments not used as B are put back (i -= num_unused_segments): every sentence is used
    assert used == {(d, s) for d in range(len(documents)) for s in range(len(documents[0]))}


def test_create_instances_from_document_respects_lengths():
    documents = [[t.split() for t in doc] for doc in traceable_corpus(num_docs=5, words_per_sentence=7)]
    rng = random.Random(5)
    for max_seq_length in (5, 6, 11, 32):
        for d in range(len(documents)):
            for inst in create_instances_from_document(documents, d, max_seq_length, 0.1, 0.15, 20,
                                                       ["x", "y"], rng):
                assert 5 <= len(inst.tokens) <= max_seq_length
                assert inst.tokens.count(SEP) == 2 and inst.tokens[-1] == SEP


def test_short_seq_prob_shortens_about_10_percent_of_document_passes():
    """With 4-token sentences and max_num_tokens = 64, a pass over a document with the full target closes
    every chunk at exactly 64 tokens, so each actual-next pair not at the document's end fills T = 67.  A
    short target t ~ U[2, 64] closes chunks at ceil(t/4)*4 < 64 tokens unless t > 60: a pass is seen to be
    short with probability short_seq_prob * 59/63."""
    documents = [[t.split() for t in doc] for doc in traceable_corpus(num_docs=20, num_sentences=60)]
    rng = random.Random(6)
    passes = short = 0
    for _ in range(100):
        for d in range(len(documents)):
            eligible = [len(inst.tokens) for inst in create_instances_from_document(
                documents, d, 67, 0.1, 0.15, 20, ["x"], rng)
                if not inst.is_random_next and where(original_tokens(inst)[-2])[1] < 59]
            if eligible:
                passes += 1
                short += min(eligible) < 67
                assert min(eligible) == max(eligible)          # one target per pass: all equally long
    assert passes > 1500
    assert within_binomial(short, passes, 0.1 * 59 / 63), (short, passes)


def test_truncate_seq_pair_trims_the_longer_side_from_both_ends():
    rng = random.Random(7)
    fronts = backs = 0
    for _ in range(200):
        a, b = list(range(10)), list(range(100, 103))
        truncate_seq_pair(a, b, 8, rng)
        assert len(a) + len(b) == 8 and b == [100, 101, 102]        # only the longer side was cut
        assert a == list(range(a[0], a[0] + 5))                    # what is left is contiguous
        fronts += a[0] > 0
        backs += a[-1] < 9
    assert fronts > 50 and backs > 50


# -- arrays -------------------------------------------------------------------------------------

def check_batch_invariants(arrays, tok, T):
    ids, types, mask, labels = (arrays[k] for k in ("input_ids", "token_type_ids", "attention_mask", "labels"))
    N = len(ids)
    assert ids.shape == types.shape == mask.shape == labels.shape == (N, T)
    assert arrays["next_sentence_label"].shape == (N,)
    for a in arrays.values():
        assert a.dtype == np.int64
    assert set(np.unique(arrays["next_sentence_label"])) <= {0, 1}
    cls, sep, pad, msk = (tok.vocab[t] for t in (CLS, SEP, PAD, MASK))
    for n in range(N):
        length = int(mask[n].sum())
        assert 5 <= length <= T
        assert (mask[n, :length] == 1).all() and (mask[n, length:] == 0).all()   # padding only at the end
        assert (ids[n, length:] == pad).all() and (ids[n, :length] != pad).all()
        seps = np.flatnonzero(ids[n] == sep)
        assert ids[n, 0] == cls and len(seps) == 2 and seps[1] == length - 1
        expected_types = np.zeros(T, dtype=np.int64)
        expected_types[seps[0] + 1:length] = 1                                     # 0 ... [SEP] 1 ... [SEP]
        assert (types[n] == expected_types).all()
        predicted = np.flatnonzero(labels[n] != IGNORE_INDEX)
        assert len(predicted) >= 1
        assert mask[n, predicted].all()
        assert not np.isin(labels[n, predicted], [cls, sep, pad]).any()
        assert not np.isin(predicted, np.append(seps, 0)).any()
        assert (ids[n] == cls).sum() == 1                                         # no special inserted ...
        not_masked = predicted[ids[n, predicted] != msk]                         # ... by a random word
        assert not np.isin(ids[n, not_masked], [cls, sep, pad]).any()


def test_instances_to_arrays_invariants_and_conventions(tok, docs):
    T = 40
    instances = create_training_instances(docs, tok, max_seq_length=T, dupe_factor=1, seed=8)
    arrays = instances_to_arrays(instances, tok, T)
    check_batch_invariants(arrays, tok, T)
    for n, inst in enumerate(instances):
        L = len(inst.tokens)
        assert arrays["input_ids"][n, :L].tolist() == tok.convert_tokens_to_ids(inst.tokens)
        # labels: the original token id at the predicted positions, -100 everywhere else
        expected = np.full(T, IGNORE_INDEX)
        expected[inst.masked_lm_positions] = tok.convert_tokens_to_ids(inst.masked_lm_labels)
        assert (arrays["labels"][n] == expected).all()
        # transformers' convention: 0 = B is the actual next segment, 1 = B is random
        assert arrays["next_sentence_label"][n] == (1 if inst.is_random_next else 0)


def test_labels_are_the_original_text():
    """Put the labels back into input_ids: the result must be contiguous corpus text (traceable tokens)."""
    documents = traceable_corpus(num_docs=20)
    tok = StubTokenizer({t for doc in documents for s in doc for t in s.split()})
    arrays = instances_to_arrays(create_training_instances(documents, tok, max_seq_length=30, dupe_factor=2,
                                                           seed=9), tok, 30)
    inverse = {i: t for t, i in tok.vocab.items()}
    restored = np.where(arrays["labels"] != IGNORE_INDEX, arrays["labels"], arrays["input_ids"])
    for row, mask in zip(restored, arrays["attention_mask"]):
        tokens = [inverse[i] for i in row[:mask.sum()]]
        sep = tokens.index(SEP)
        for part in (tokens[1:sep], tokens[sep + 1:-1]):
            places = [where(t) for t in part]
            for (d0, s0, w0), (d1, s1, w1) in zip(places, places[1:]):
                assert d0 == d1 and ((s1, w1) == (s0, w0 + 1) or (s1, w1) == (s0 + 1, 0))


def test_instances_are_reproducible_with_a_seed(tok, docs):
    a = create_training_instances(docs, tok, max_seq_length=32, dupe_factor=1, seed=10)
    b = create_training_instances(docs, tok, max_seq_length=32, dupe_factor=1, seed=10)
    c = create_training_instances(docs, tok, max_seq_length=32, dupe_factor=1, seed=11)
    assert a == b and a != c


# -- the dataset --------------------------------------------------------------------------------

def make_dataset(tok, docs, **kw):
    kw = {"batch_size": 8, "max_seq_length": 32, "seed": 0, **kw}
    return PretrainingDataset(docs, tok, **kw)


def test_dataset_batches_shapes_len_and_repr(tok, docs):
    data = make_dataset(tok, docs)
    batches = list(data)
    assert len(batches) == data.num_instances // 8 > 10
    for b in batches:
        check_batch_invariants(b, tok, 32)
        assert b["input_ids"].shape == (8, 32) and b["next_sentence_label"].shape == (8,)
    assert data.epoch == 1 and data.position == 0                  # the loop moved on to the next epoch
    r = repr(data)
    assert r.startswith("PretrainingDataset(documents=300, instances=") and "batch_size=8" in r
    assert "masking=dynamic" in r and "epoch=1" in r


def test_dataset_reproducible_and_shuffled_per_epoch(tok, docs):
    one, two, other = make_dataset(tok, docs), make_dataset(tok, docs), make_dataset(tok, docs, seed=1)
    e0 = [b["input_ids"] for b in one]
    assert all((x == y["input_ids"]).all() for x, y in zip(e0, two))
    assert not all((x == y["input_ids"]).all() for x, y in zip(e0, other))
    e1 = [b["input_ids"] for b in one]
    assert not all((x == y).all() for x, y in zip(e0, e1))           # a new epoch is a new order and masks


def test_static_masking_reuses_instances_dynamic_redraws_them(tok, docs):
    def epoch_rows(data):
        return {tuple(r) for b in data for r in np.hstack([b["input_ids"], b["labels"]])}
    static = make_dataset(tok, docs, dynamic_masking=False, drop_last=False)
    s0, s1 = epoch_rows(static), epoch_rows(static)
    assert s0 == s1                                                 # same instances, other order
    dynamic = make_dataset(tok, docs, drop_last=False)
    d0, d1 = epoch_rows(dynamic), epoch_rows(dynamic)
    assert len(d0 & d1) < 0.1 * len(d0)                             # new masks, new pairs


def test_drop_last_false_serves_every_instance(tok, docs):
    data = make_dataset(tok, docs, batch_size=7, drop_last=False)
    N = data.num_instances
    sizes = [len(b["next_sentence_label"]) for b in data.epoch_batches(0)]
    assert sum(sizes) == N and sizes[:-1] == [7] * (len(sizes) - 1) and len(sizes) == -(-N // 7)
    assert data.position == 0 and data.epoch == 0                   # epoch_batches does not move position


def test_state_dict_round_trip_resumes_at_the_same_batch(tok, docs):
    data = make_dataset(tok, docs)
    n = len(data)
    for _ in range(n - 2):                                          # stop two batches before the epoch ends
        data.next_batch()
    state = json.loads(json.dumps(data.state_dict()))               # plain JSON
    expected = [data.next_batch() for _ in range(5)]                # crosses into epoch 1
    assert data.epoch == 1
    resumed = make_dataset(tok, docs)
    resumed.load_state_dict(state)
    assert (resumed.epoch, resumed.position) == (0, n - 2)
    for want in expected:
        got = resumed.next_batch()
        assert all((got[k] == want[k]).all() for k in want)
    # a dataset built with other options refuses the state
    with pytest.raises(ValueError, match="max_seq_length"):
        make_dataset(tok, docs, max_seq_length=40).load_state_dict(state)



def test_group_by_length_serves_the_same_instances_without_their_common_padding(tok, docs):
    """Grouped batches are a rearrangement of the same epoch: every instance once (drop_last aside), each
    batch cut to its longest sequence.  Sequences of 32 tokens vary in length (documents end, 10% aim
    shorter), so some batches are shorter than 32 and the grouped epoch computes on less padding."""
    def rows(batches):  # each instance as its real tokens (the padding a batch cut is not part of it)
        return sorted(tuple(b["input_ids"][i, :b["attention_mask"][i].sum()]) for b in batches
                      for i in range(len(b["input_ids"])))
    plain = make_dataset(tok, docs, drop_last=False)
    grouped = make_dataset(tok, docs, drop_last=False, group_by_length=True)
    plain_batches, grouped_batches = list(plain.epoch_batches(0)), list(grouped.epoch_batches(0))
    assert rows(plain_batches) == rows(grouped_batches)
    for b in grouped_batches:
        check_batch_invariants(b, tok, b["input_ids"].shape[1])
        assert b["attention_mask"][:, -1].any()                     # no column that is padding in every row
        assert all(v.flags.c_contiguous for v in b.values())        # torch's labels.view(-1) needs this
    cells = lambda batches: sum(b["input_ids"].size for b in batches)
    assert cells(grouped_batches) < 0.95 * cells(plain_batches)
    assert min(b["input_ids"].shape[1] for b in grouped_batches) < 32


def test_group_by_length_batches_are_shuffled_and_resume_exactly(tok, docs):
    data = make_dataset(tok, docs, group_by_length=True)
    longest = [b["input_ids"].shape[1] for b in data.epoch_batches(0)]
    assert longest != sorted(longest, reverse=True)                 # not served longest first
    for _ in range(3):
        data.next_batch()
    state = json.loads(json.dumps(data.state_dict()))
    want = data.next_batch()
    resumed = make_dataset(tok, docs, group_by_length=True)
    resumed.load_state_dict(state)
    got = resumed.next_batch()
    assert all((got[k] == want[k]).all() for k in want)
    with pytest.raises(ValueError, match="group_by_length"):        # a plain dataset refuses a grouped state
        make_dataset(tok, docs).load_state_dict(state)


def test_most_frequent_label(tok, docs):
    data = make_dataset(tok, docs)
    labels = data.arrays["labels"]
    counts = np.bincount(labels[labels != IGNORE_INDEX])
    assert counts[data.most_frequent_label()] == counts.max()


# -- errors -------------------------------------------------------------------------------------

def test_errors_name_the_argument_expected_and_got(tok, docs):
    with pytest.raises(ValueError, match=r"max_seq_length must be an integer >= 5 .*got 4"):
        create_training_instances(docs, tok, max_seq_length=4)
    for name in ("masked_lm_prob", "short_seq_prob"):
        for bad in (-0.1, 1.5):
            with pytest.raises(ValueError, match=rf"{name} must be a probability in \[0, 1\], got {bad}"):
                create_training_instances(docs, tok, **{name: bad})
            with pytest.raises(ValueError, match=name):
                PretrainingDataset(docs, tok, batch_size=2, **{name: bad})
    with pytest.raises(ValueError, match="max_predictions_per_seq must be an integer >= 1, got 0"):
        create_training_instances(docs, tok, max_predictions_per_seq=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        PretrainingDataset(docs, tok, batch_size=0)


def test_errors_for_empty_or_small_corpora(tok, docs):
    with pytest.raises(ValueError, match="corpus is empty"):
        create_training_instances([], tok)
    with pytest.raises(ValueError, match="corpus is empty"):
        PretrainingDataset([[""], []], tok, batch_size=2)
    with pytest.raises(ValueError, match="at least 2 documents"):
        PretrainingDataset([["the red cup sees the blue bowl."] * 5], tok, batch_size=2)
    with pytest.raises(ValueError, match=r"too small for one batch: batch_size=1000"):
        PretrainingDataset(docs[:3], tok, batch_size=1000)


def test_errors_for_a_tokenizer_without_special_tokens(docs):
    tok = StubTokenizer(synthetic_vocabulary())
    del tok.vocab[MASK]
    with pytest.raises(ValueError, match=r"missing \['\[MASK\]'\]"):
        PretrainingDataset(docs, tok, batch_size=2)
    with pytest.raises(TypeError, match="tokenize"):
        PretrainingDataset(docs, object(), batch_size=2)
