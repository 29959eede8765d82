"""Pre-training data: masked-LM and next-sentence-prediction instances, then fixed-shape NumPy batches.

This follows google-research/bert's ``create_pretraining_data.py`` step by step (same function names,
same order of random draws), written to be read:

1. ``create_instances_from_document`` packs consecutive sentences of one document into a chunk of about
   ``max_seq_length`` tokens, cuts it into ``A`` and ``B``, and half the time replaces ``B`` with text from
   another document (next-sentence prediction, NSP).  ``[CLS] A [SEP] B [SEP]``, segment ids 0 then 1.
2. ``create_masked_lm_predictions`` picks ~15% of the tokens to predict (never ``[CLS]``/``[SEP]``); of
   those, 80% become ``[MASK]``, 10% a random word, 10% stay unchanged (masked LM, MLM).
3. ``instances_to_arrays`` pads to ``T = max_seq_length`` and returns the arrays ``BertForPreTraining``
   takes, in transformers' conventions: ``labels`` is -100 where nothing is predicted, and
   ``next_sentence_label`` is 0 when B is the actual next segment, 1 when B is random.
4. ``PretrainingDataset`` (``dataset.py``) hands out shuffled, seeded mini-batches of those arrays epoch
   after epoch and can save and restore its position.

    >>> docs = synthetic_corpus(200, seed=0).train                 # from minibert.data.synthetic
    >>> instances = create_training_instances(docs, tokenizer, max_seq_length=32, dupe_factor=1)
    >>> arrays = instances_to_arrays(instances, tokenizer, max_seq_length=32)
    >>> {k: v.shape for k, v in arrays.items()}                    # N instances
    {'input_ids': (N, 32), 'token_type_ids': (N, 32), 'attention_mask': (N, 32), 'labels': (N, 32),
     'next_sentence_label': (N,)}

The tokenizer is duck-typed: anything with ``tokenize(text) -> list[str]``, a ``vocab`` dict
(token -> id) holding ``[CLS] [SEP] [MASK] [PAD]``, and ``convert_tokens_to_ids(tokens) -> list[int]``.
WordPiece continuations start with ``##`` (used by whole-word masking).

Three deliberate differences from google-research/bert, so that the invariants hold exactly:

* a random replacement token is drawn from the vocabulary *without* the bracketed special tokens
  (``[PAD]``, ``[SEP]``, ``[unused0]`` ...), so ``[PAD]`` only ever appears as padding and ``[SEP]`` only
  where a segment ends;
* with whole-word masking, a ``##`` piece left at the start of B by truncation is its own word (the
  original joins it to the last word of A, across the ``[SEP]``);
* a corpus needs two documents or more: with one, every "random" next sentence would come from that same
  document and still be labelled random.
"""
import random
from dataclasses import dataclass

import numpy as np

from ..layers.cross_entropy import IGNORE_INDEX  # -100, transformers' label for "not predicted"

CLS, SEP, MASK, PAD = "[CLS]", "[SEP]", "[MASK]", "[PAD]"
BATCH_KEYS = ("input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label")


# --------------------------------------------------------------------------------------------------
# Validation at the public boundary
# --------------------------------------------------------------------------------------------------

def _check_int(name, value, low, why=""):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}{why}, got {value!r}")


def _check_probability(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_options(max_seq_length, short_seq_prob, masked_lm_prob, max_predictions_per_seq, dupe_factor):
    _check_int("max_seq_length", max_seq_length, 5, " ([CLS] A [SEP] B [SEP] needs 5 tokens)")
    _check_probability("short_seq_prob", short_seq_prob)
    _check_probability("masked_lm_prob", masked_lm_prob)
    _check_int("max_predictions_per_seq", max_predictions_per_seq, 1)
    _check_int("dupe_factor", dupe_factor, 1)


def _check_tokenizer(tokenizer):
    for attr in ("tokenize", "vocab", "convert_tokens_to_ids"):
        if not hasattr(tokenizer, attr):
            raise TypeError(f"tokenizer must have tokenize(), vocab and convert_tokens_to_ids(); "
                            f"{type(tokenizer).__name__} has no {attr!r}")
    missing = [t for t in (CLS, SEP, MASK, PAD) if t not in tokenizer.vocab]
    if missing:
        raise ValueError(f"tokenizer.vocab must contain {[CLS, SEP, MASK, PAD]}, missing {missing}")


# --------------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------------

@dataclass
class TrainingInstance:
    """One pre-training example, still as strings (google-research/bert's ``TrainingInstance``).

    tokens               [CLS] A [SEP] B [SEP] after masking, length <= max_seq_length
    segment_ids          0 for [CLS] A [SEP], 1 for B [SEP]; same length as tokens
    is_random_next       True if B was taken from another document
    masked_lm_positions  sorted positions the model must predict
    masked_lm_labels     the original tokens at those positions
    """
    tokens: list
    segment_ids: list
    is_random_next: bool
    masked_lm_positions: list
    masked_lm_labels: list

    def __str__(self):
        return (f"tokens: {' '.join(self.tokens)}\nsegment_ids: {' '.join(map(str, self.segment_ids))}\n"
                f"is_random_next: {self.is_random_next}\n"
                f"masked_lm_positions: {' '.join(map(str, self.masked_lm_positions))}\n"
                f"masked_lm_labels: {' '.join(self.masked_lm_labels)}\n")


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """Truncate a pair of token lists *in place* until ``len(a) + len(b) <= max_num_tokens``.

    One token at a time from the longer side, from the front or the back at random: always cutting the end
    would teach the model that sentences never start mid-way.
    """
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        assert len(trunc_tokens) >= 1
        if rng.random() < 0.5:
            del trunc_tokens[0]
        else:
            trunc_tokens.pop()


def create_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
                                 whole_word_mask=False):
    """Choose positions to predict and corrupt them; returns (output_tokens, positions, labels).

    * candidates: every position except [CLS], [SEP] and [PAD];  with ``whole_word_mask`` a word's ``##``
      pieces are grouped with it, so a word is predicted whole or not at all;
    * ``num_to_predict = min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob)))`` --
      at least one, even for masked_lm_prob = 0, as in google-research/bert;
    * each chosen position: 80% -> [MASK], 10% -> unchanged, 10% -> a random word of ``vocab_words``.
      (The 10% unchanged keep the model from learning "only [MASK] positions matter"; the 10% random force
      it to keep a good representation of every token.)  With whole-word masking the 80/10/10 draw is
      still per piece, as in google-research/bert.
    """
    cand_indexes = []                                   # [[i], [j, j+1 (a ## piece)], ...]
    for i, token in enumerate(tokens):
        # TODO: never predict a special token: skip [CLS], [SEP] and [PAD] (they are CLS, SEP, PAD here).
        #   hint: `continue` to the next position; every other position is a candidate.
        ### BEGIN SOLUTION
        if token in (CLS, SEP, PAD):
            continue
        ### END SOLUTION
        # A ## piece joins the word just before it.  (google-research/bert also joins a piece that
        # truncation left orphaned right after [SEP] to the last word of A; here it stands alone.)
        if whole_word_mask and token.startswith("##") and cand_indexes and cand_indexes[-1][-1] == i - 1:
            cand_indexes[-1].append(i)
        else:
            cand_indexes.append([i])
    rng.shuffle(cand_indexes)

    output_tokens = list(tokens)
    num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
    masked = []                                         # [(position, original token)]
    covered = set()
    for index_set in cand_indexes:
        if len(masked) >= num_to_predict:
            break
        if len(masked) + len(index_set) > num_to_predict:
            continue                                    # a whole word would overshoot: try a shorter one
        if any(index in covered for index in index_set):
            continue
        for index in index_set:
            covered.add(index)
            # TODO: BERT's 80/10/10 rule: masked_token is [MASK] (MASK) with probability 0.8, the original
            #       token with probability 0.1, a random word of vocab_words with probability 0.1.
            #   hint: draw with rng.random() (and rng.randint(a, b), both ends included, for the word), in
            #         google-research/bert's order: first "< 0.8?", then, for the other 20%, "< 0.5?".
            ### BEGIN SOLUTION
            if rng.random() < 0.8:
                masked_token = MASK
            elif rng.random() < 0.5:
                masked_token = tokens[index]
            else:
                masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            ### END SOLUTION
            output_tokens[index] = masked_token
            masked.append((index, tokens[index]))
    masked.sort()
    return output_tokens, [p for p, _ in masked], [label for _, label in masked]


def create_instances_from_document(all_documents, document_index, max_seq_length, short_seq_prob,
                                   masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
                                   whole_word_mask=False):
    """All training instances of one document (a list of tokenized sentences) -- see the module docstring.

    ``all_documents`` is a list of documents, each a list of sentences, each a list of token strings.
    """
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3                 # room for [CLS], [SEP], [SEP]

    # Usually fill the whole sequence; 10% of the time (short_seq_prob) aim shorter, so the model also
    # sees the short sequences it will meet when fine-tuned.  As in google-research/bert, the target is
    # drawn once per document (per dupe).
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    instances = []
    current_chunk = []                                  # consecutive sentences, whole
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                # A = the first a_end sentences of the chunk (at least one).
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randint(1, len(current_chunk) - 1)
                tokens_a = [t for sentence in current_chunk[:a_end] for t in sentence]

                tokens_b = []
                if len(current_chunk) == 1 or rng.random() < 0.5:
                    # Random next: B is text from a random *other* document (10 tries to avoid this one).
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    for _ in range(10):
                        random_document_index = rng.randint(0, len(all_documents) - 1)
                        if random_document_index != document_index:
                            break
                    random_document = all_documents[random_document_index]
                    random_start = rng.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    # The chunk's sentences after A were not used: put them back, so they are not wasted.
                    num_unused_segments = len(current_chunk) - a_end
                    i -= num_unused_segments
                else:
                    # Actual next: B is the rest of the chunk.
                    is_random_next = False
                    tokens_b = [t for sentence in current_chunk[a_end:] for t in sentence]

                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                assert len(tokens_a) >= 1 and len(tokens_b) >= 1

                tokens = [CLS] + tokens_a + [SEP] + tokens_b + [SEP]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                tokens, positions, labels = create_masked_lm_predictions(
                    tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng, whole_word_mask)
                instances.append(TrainingInstance(tokens, segment_ids, is_random_next, positions, labels))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def tokenize_documents(documents, tokenizer):
    """Documents of sentence strings -> documents of token lists; empty sentences and documents dropped."""
    if hasattr(documents, "train") and hasattr(documents, "heldout"):
        raise TypeError("documents must be a list of documents, got a Corpus: pass corpus.train or corpus.heldout")
    if isinstance(documents, str) or not hasattr(documents, "__iter__"):
        raise TypeError(f"documents must be a list of documents (lists of sentence strings), "
                        f"got {type(documents).__name__}")
    tokenized = []
    for d, doc in enumerate(documents):
        if isinstance(doc, str):
            raise TypeError(f"documents[{d}] must be a list of sentence strings, got a str")
        sentences = [tokens for tokens in (tokenizer.tokenize(s) for s in doc) if tokens]
        if sentences:
            tokenized.append(sentences)
    return tokenized


def vocab_words_for_replacement(vocab):
    """The words a masked position may be replaced with: the vocabulary without bracketed specials
    ([PAD], [CLS], [SEP], [MASK], [UNK], [unused0], ...), in vocabulary order."""
    words = [w for w in vocab if not (len(w) > 2 and w.startswith("[") and w.endswith("]"))]
    if not words:
        raise ValueError("tokenizer.vocab has no ordinary word to use as a random replacement")
    return words


def _instances_from_tokenized(tokenized_documents, vocab_words, max_seq_length, dupe_factor, short_seq_prob,
                              masked_lm_prob, max_predictions_per_seq, whole_word_mask, rng):
    """google-research/bert's ``create_training_instances`` after reading: shuffle documents, make
    ``dupe_factor`` passes over them (each a different NSP split and masking), shuffle the instances."""
    all_documents = list(tokenized_documents)
    rng.shuffle(all_documents)
    instances = []
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            instances.extend(create_instances_from_document(
                all_documents, document_index, max_seq_length, short_seq_prob, masked_lm_prob,
                max_predictions_per_seq, vocab_words, rng, whole_word_mask))
    rng.shuffle(instances)
    return instances


def _check_corpus(tokenized_documents, num_raw_documents):
    if not tokenized_documents:
        raise ValueError(f"the corpus is empty: expected documents with at least one non-empty sentence, "
                         f"got {num_raw_documents} document(s) and no token")
    if len(tokenized_documents) < 2:
        raise ValueError("the corpus is too small: next-sentence prediction needs at least 2 documents "
                         "(separate them with a blank line), got 1")


def create_training_instances(documents, tokenizer, max_seq_length=128, dupe_factor=10, short_seq_prob=0.1,
                              masked_lm_prob=0.15, max_predictions_per_seq=20, whole_word_mask=False, seed=12345):
    """Pre-training instances from documents of sentence strings (google-research/bert's defaults).

    ``seed`` seeds a ``random.Random``, so the same arguments give the same instances.  Returns a list of
    ``TrainingInstance`` in random order.
    """
    _check_options(max_seq_length, short_seq_prob, masked_lm_prob, max_predictions_per_seq, dupe_factor)
    _check_tokenizer(tokenizer)
    tokenized = tokenize_documents(documents, tokenizer)
    _check_corpus(tokenized, len(documents))
    return _instances_from_tokenized(tokenized, vocab_words_for_replacement(tokenizer.vocab), max_seq_length,
                                     dupe_factor, short_seq_prob, masked_lm_prob, max_predictions_per_seq,
                                     whole_word_mask, random.Random(seed))


# --------------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------------

def instances_to_arrays(instances, tokenizer, max_seq_length):
    """Pad instances to ``T = max_seq_length`` and return the model's inputs as int64 arrays.

        input_ids            (N, T)  token ids, [PAD] after the last [SEP]
        token_type_ids       (N, T)  0 for [CLS] A [SEP], 1 for B [SEP], 0 on padding
        attention_mask       (N, T)  1 on real tokens, 0 on padding
        labels               (N, T)  the original token id where predicted, -100 everywhere else
        next_sentence_label  (N,)    0 if B is the actual next segment, 1 if B is random

    Same keys and conventions as transformers' ``BertForPreTraining``, so ``model(**arrays)`` works.
    """
    _check_int("max_seq_length", max_seq_length, 5, " ([CLS] A [SEP] B [SEP] needs 5 tokens)")
    _check_tokenizer(tokenizer)
    N, T = len(instances), max_seq_length
    pad_id = tokenizer.vocab[PAD]
    input_ids = np.full((N, T), pad_id, dtype=np.int64)                 # (N, T)
    token_type_ids = np.zeros((N, T), dtype=np.int64)                   # (N, T)
    attention_mask = np.zeros((N, T), dtype=np.int64)                   # (N, T)
    labels = np.full((N, T), IGNORE_INDEX, dtype=np.int64)              # (N, T)
    next_sentence_label = np.zeros(N, dtype=np.int64)                   # (N,)
    for n, inst in enumerate(instances):
        L = len(inst.tokens)
        if L > T:
            raise ValueError(f"instances[{n}] has {L} tokens, more than max_seq_length={T}")
        input_ids[n, :L] = tokenizer.convert_tokens_to_ids(inst.tokens)
        token_type_ids[n, :L] = inst.segment_ids
        attention_mask[n, :L] = 1
        if inst.masked_lm_positions:
            labels[n, inst.masked_lm_positions] = tokenizer.convert_tokens_to_ids(inst.masked_lm_labels)
        next_sentence_label[n] = int(inst.is_random_next)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "labels": labels, "next_sentence_label": next_sentence_label}


# --------------------------------------------------------------------------------------------------
# The masking exercise's check: statistics over many draws
# --------------------------------------------------------------------------------------------------

MASKING_DRAWS = 4000


def masking_statistics(create=None, draws=MASKING_DRAWS, seed=0):
    """Run ``create`` (``create_masked_lm_predictions`` or yours) ``draws`` times on one sequence,
    ``[CLS]`` + 10 words + ``[SEP]`` + 8 words + ``[SEP]`` + 2 ``[PAD]`` (23 tokens: 3 predictions,
    18 candidates), with ``masked_lm_prob=0.15``, and return one row per property,
    ``(item, ok, message)``:

    * exact, in every draw: ``count`` (``round(0.15 * 23) = 3`` predictions), ``special tokens`` (never
      [CLS]/[SEP]/[PAD]), ``labels`` (the original tokens, positions sorted, nothing else changed);
    * statistics over the ``3 * draws`` predictions: ``80% [MASK]``, ``10% unchanged``, ``10% random``
      (a random word is the original one with probability 1/|V| = 1/40, so "unchanged" expects
      0.1 + 0.1/40 and "random" 0.1 * 39/40), and ``positions uniform`` (each candidate chosen in a
      fraction 3/18 of the draws).  The tolerance is 5 binomial standard errors, ``5 sqrt(p (1 - p) / n)``:
      for 4000 draws 0.018 on the 80%, 0.014 on each 10%, 0.029 on a position's 1/6.  A correct
      implementation drawing differently fails a check with probability about 6e-7 (a normal tail beyond
      5 sigma); a 90/5/5 split or a never-chosen position is off by 3 to 30 of them.
    """
    create = create or create_masked_lm_predictions
    words = [f"w{i}" for i in range(40)]
    tokens = [CLS] + words[:10] + [SEP] + words[10:18] + [SEP] + [PAD, PAD]
    rng = random.Random(seed)
    n_expected = int(round(len(tokens) * 0.15))
    candidates = [i for i, t in enumerate(tokens) if t not in (CLS, SEP, PAD)]
    bad_count = bad_special = bad_labels = 0
    kinds = {"mask": 0, "same": 0, "random": 0}
    chosen = np.zeros(len(tokens))
    for _ in range(draws):
        out, positions, labels = create(list(tokens), 0.15, 20, words, rng)
        positions, out = list(positions), list(out)
        bad_count += len(positions) != n_expected
        bad_special += any(tokens[p] in (CLS, SEP, PAD) for p in positions)
        unchanged_elsewhere = len(out) == len(tokens) and all(
            o == t for i, (o, t) in enumerate(zip(out, tokens)) if i not in positions)
        bad_labels += not (positions == sorted(positions) and list(labels) == [tokens[p] for p in positions]
                           and unchanged_elsewhere)
        for p in positions:
            if 0 <= p < len(tokens):
                chosen[p] += 1
                o = out[p] if p < len(out) else None
                kinds["mask" if o == MASK else "same" if o == tokens[p] else "random"] += 1
    rows = [("count", bad_count == 0, f"{n_expected} predictions in every draw: {draws - bad_count}/{draws} draws"),
            ("special tokens", bad_special == 0,
             f"never [CLS]/[SEP]/[PAD]: {bad_special} of {draws} draws predicted one"),
            ("labels", bad_labels == 0,
             f"labels are the original tokens at sorted positions, the rest unchanged: {bad_labels} draws wrong")]
    n = max(1, sum(kinds.values()))
    for item, kind, p in (("80% [MASK]", "mask", 0.8), ("10% unchanged", "same", 0.1 + 0.1 / 40),
                          ("10% random", "random", 0.1 * 39 / 40)):
        got, tol = kinds[kind] / n, 5 * np.sqrt(p * (1 - p) / n)
        rows.append((item, abs(got - p) <= tol, f"{item}: {got:.4f} of {n} predictions, expected {p:.4f} +- {tol:.4f}"))
    p = n_expected / len(candidates)
    freq, tol = chosen[candidates] / draws, 5 * np.sqrt(p * (1 - p) / draws)
    worst = int(np.argmax(np.abs(freq - p)))
    rows.append(("positions uniform", bool(np.all(np.abs(freq - p) <= tol)) and chosen.sum() == chosen[candidates].sum(),
                 f"each candidate chosen in {p:.4f} +- {tol:.4f} of the draws: the farthest, position "
                 f"{candidates[worst]}, in {freq[worst]:.4f}"))
    return rows


def test_masking():
    """The masking exercise's check: statistics over many draws (``masking_statistics``)."""
    rows = masking_statistics()
    for item, ok, message in rows:
        print(f"  {item:18s} {'ok   ' if ok else 'WRONG'} {message}")
    assert all(ok for _, ok, _ in rows), "wrong: " + ", ".join(item for item, ok, _ in rows if not ok)
    ### BEGIN HIDDEN TESTS
    out, positions, labels = create_masked_lm_predictions([CLS, "a", SEP], 0.0, 20, ["a", "b"], random.Random(0))
    assert positions == [1] and labels == ["a"]  # at least one prediction, even for masked_lm_prob = 0
    ### END HIDDEN TESTS


if __name__ == "__main__":
    test_masking()
