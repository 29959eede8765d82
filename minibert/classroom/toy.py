"""A toy language and a BERT small enough to check by hand, trained in seconds (lesson 11).

The language has twelve words.  A sentence names an animal and the sound it makes, with optional
fillers around:

    [now|often|loudly] (the|a) (cat|dog|cow) [now|often|loudly] (meows|barks|moos) .

Each animal makes one sound (cat meows, dog barks, cow moos), and nothing else in the sentence says
which: so a masked sound is decided by the animal, and a masked animal by the sound, wherever the
fillers put them.  To predict it the model must *look* at that one word: after training, the attention
of the ``[MASK]`` position puts most of its weight there (``tests/classroom/test_stepthrough.py`` checks it).

    model, tok = train_toy_bert()                 # C = 8, A = 2 heads, one layer, V = 17; ~2 s
    batch = toy_batch_of(tok, ["the cat often [MASK] ."], answers=["meows"])

The model is float64 (so the numbers a student recomputes by hand agree to many digits) and has no
dropout.  Its tokenizer's vocabulary file is written to a temporary folder that is removed at once (the
tokenizer keeps the vocabulary in memory; ``model.save_pretrained(dir, tok)`` writes it out again).
"""
import os
import tempfile

import numpy as np

from ..config import BertConfig
from ..data.tokenizer import BertTokenizer
from ..layers.cross_entropy import IGNORE_INDEX

__all__ = ["TOY_WORDS", "TOY_SOUNDS", "toy_tokenizer", "toy_sentences", "toy_config", "toy_training_batch",
           "toy_batch_of", "train_toy_bert", "check_by_hand"]

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ANIMALS, SOUNDS = ["cat", "dog", "cow"], ["meows", "barks", "moos"]
TOY_SOUNDS = dict(zip(ANIMALS, SOUNDS))  # the rule of the language
DETERMINERS, FILLERS = ["the", "a"], ["now", "often", "loudly"]
TOY_WORDS = DETERMINERS + ANIMALS + SOUNDS + FILLERS + ["."]  # 12 words
MAX_LEN = 8  # [CLS] filler det animal filler sound . [SEP]


def toy_tokenizer():
    """A ``BertTokenizer`` of the 5 special tokens and the 12 words (ids 0-16).  Its vocabulary file lives
    in a temporary folder only while the tokenizer reads it."""
    with tempfile.TemporaryDirectory(prefix="minibert-toy-") as d:
        path = os.path.join(d, "vocab.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(SPECIAL + TOY_WORDS) + "\n")
        return BertTokenizer(path)


def toy_sentences(n, rng):
    """``n`` random sentences of the language, each a list of words (4 to 6 words)."""
    out = []
    for _ in range(n):
        animal = ANIMALS[rng.integers(3)]
        words = [DETERMINERS[rng.integers(2)], animal, TOY_SOUNDS[animal], "."]
        if rng.random() < 0.5:
            words.insert(2, FILLERS[rng.integers(3)])  # between the animal and its sound
        if rng.random() < 0.5:
            words.insert(0, FILLERS[rng.integers(3)])
        out.append(words)
    return out


def toy_config():
    """BERT with C = 8 numbers per token, 2 heads of 4, one layer, F = 16, V = 17, no dropout."""
    return BertConfig(vocab_size=len(SPECIAL) + len(TOY_WORDS), hidden_size=8, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=16, max_position_embeddings=MAX_LEN,
                      type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _encode(tok, rows):
    """Rows of pieces (with [MASK] already in) -> input_ids, attention_mask (B, T), padded to the longest."""
    T = max(len(r) for r in rows) + 2
    ids = np.zeros((len(rows), T), dtype=np.int64)
    mask = np.zeros((len(rows), T), dtype=np.int64)
    for b, r in enumerate(rows):
        pieces = ["[CLS]"] + r + ["[SEP]"]
        ids[b, :len(pieces)] = [tok.vocab[p] for p in pieces]
        mask[b, :len(pieces)] = 1
    return ids, mask


def toy_training_batch(tok, rng, batch_size=32):
    """A batch of the MLM task: one masked word per sentence, the animal or the sound 80% of the time (the
    words the context decides), any other word else.  -> dict of input_ids, token_type_ids,
    attention_mask, labels (B, T), next_sentence_label (B,) = 0 (single sentences: "B follows A")."""
    rows, targets = [], []
    for words in toy_sentences(batch_size, rng):
        key = [i for i, w in enumerate(words) if w in ANIMALS or w in SOUNDS]
        i = key[rng.integers(2)] if rng.random() < 0.8 else int(rng.integers(len(words)))
        targets.append((i + 1, tok.vocab[words[i]]))  # +1: [CLS] comes first
        rows.append(words[:i] + ["[MASK]"] + words[i + 1:])
    ids, mask = _encode(tok, rows)
    labels = np.full_like(ids, IGNORE_INDEX)
    for b, (t, label) in enumerate(targets):
        labels[b, t] = label
    return dict(input_ids=ids, token_type_ids=np.zeros_like(ids), attention_mask=mask, labels=labels,
                next_sentence_label=np.zeros(len(rows), dtype=np.int64))


def toy_batch_of(tok, texts, answers):
    """The batch for sentences written out, with ``[MASK]`` where a word was and its answer (one per text):
    a dict as ``toy_training_batch``'s plus ``tokens`` (the pieces of each row)."""
    if isinstance(texts, str):
        texts, answers = [texts], [answers] if isinstance(answers, str) else answers
    if len(texts) != len(answers):
        raise ValueError(f"toy_batch_of: {len(texts)} text(s) but {len(answers)} answer(s)")
    rows = [tok.tokenize(t) for t in texts]
    for t, r, a in zip(texts, rows, answers):
        if r.count("[MASK]") != 1:
            raise ValueError(f"toy_batch_of: each text needs exactly one [MASK], got {t!r}")
        bad = [w for w in r + [a] if w not in tok.vocab or w == "[UNK]"]
        if bad:
            raise ValueError(f"toy_batch_of: {bad} not in the toy vocabulary {TOY_WORDS}")
    ids, mask = _encode(tok, rows)
    labels = np.full_like(ids, IGNORE_INDEX)
    for b, (r, a) in enumerate(zip(rows, answers)):
        labels[b, r.index("[MASK]") + 1] = tok.vocab[a]
    tokens = [tok.convert_ids_to_tokens(row.tolist()) for row in ids]
    return dict(input_ids=ids, token_type_ids=np.zeros_like(ids), attention_mask=mask, labels=labels,
                next_sentence_label=np.zeros(len(rows), dtype=np.int64), tokens=tokens)


def train_toy_bert(seed=0, steps=400, lr=2e-2, batch_size=32, verbose=False):
    """-> (BertForPreTraining in eval mode, BertTokenizer, history): the toy BERT, trained with AdamW
    (linear warmup over 10% of the steps, then linear decay) on MLM + NSP.  ``history``: the loss of
    each step.  Runs on the NumPy references (the backend is put back after); about 2 s on one core."""
    from .. import backend
    from ..models.bert import BertForPreTraining
    from ..optim import AdamW, linear_warmup_decay
    tok = toy_tokenizer()
    model = BertForPreTraining(toy_config(), seed=seed, dtype=np.float64).train()
    opt = AdamW(model, lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    history = []
    before = backend.get_backend()
    backend.set_backend("numpy")
    try:
        for step in range(steps):
            batch = toy_training_batch(tok, rng, batch_size)
            model.zero_grad()
            out = model(**batch)
            model.backward()
            opt.lr = linear_warmup_decay(step, steps, max(1, steps // 10), lr)
            opt.step()
            history.append(float(out.loss))
            if verbose and (step + 1) % 100 == 0:
                print(f"step {step + 1}: loss {np.mean(history[-100:]):.3f}")
    finally:
        backend.set_backend(before)
    return model.eval(), tok, history


def check_by_hand(what, mine, truth, hint, rtol=1e-6):
    """Lesson 11's check of a number a student computed by hand: prints "right" when ``mine`` equals
    ``truth`` (the model's, from the step-through) to ``rtol`` relative to its largest entry; else raises an
    AssertionError that says what is wrong in words and gives ``hint``.  It never shows ``truth``."""
    if mine is None or mine is Ellipsis:
        raise AssertionError(f"{what}: not answered yet (replace the ... with your computation)")
    mine, truth = np.asarray(mine, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if mine.shape != truth.shape:
        raise AssertionError(f"{what}: yours has shape {mine.shape}, it should have shape {truth.shape}")
    if not np.isfinite(mine).all():
        raise AssertionError(f"{what}: yours holds inf or nan. Hint: {hint}")
    err = float(np.abs(mine - truth).max() / max(np.abs(truth).max(), 1e-300))
    if err > rtol:
        raise AssertionError(f"{what}: not yet, yours differs from the model's (relative error {err:.1e}). Hint: {hint}")
    print(f"right: your {what} is the model's (relative error {err:.1e}, below {rtol:g})")
