"""The seed's applications as built-in tasks: tagging, span QA and sentence pairs, from the bundled corpus.

Three labelled tasks made from the default corpus (CPython's pydoc topics and docstrings, no download),
each with a rule the text itself supports, so every label can be checked by reading the sentence:

* ``stdlib-code-tags`` (token tagging, ``BertForTokenClassification``): CPython's documentation writes
  code in double quotes (``the "assert" statement``).  Each word piece is labelled ``code`` when it lies
  between a pair of quotes, ``prose`` otherwise; the quote marks themselves and ``[CLS]``/``[SEP]`` are
  ``-100``.  The same word is code in one sentence and prose in the next (``"expression"``), so a
  per-word lookup is not enough: the model has to see where the quotes are.
  Trivial baselines: always ``prose`` (majority), and each piece's most frequent training tag (lookup).
* ``stdlib-quoted-qa`` (span QA, ``BertForQuestionAnswering``): a sentence with at least two quoted
  spans is the context; the question is one word that occurs in exactly one of them (nowhere else in
  the sentence); the answer is the whole quoted span around it (the pieces between the quotes).
  Decoded with ``best_spans`` (start <= end, a length cap, inside the context), scored by exact match
  and token F1 (SQuAD's, over token positions).  Trivial baselines: the first context token, and the
  first quoted span of the context (which ignores the question).
* ``stdlib-same-doc`` (sentence pairs, ``BertForSequenceClassification`` with ``token_type_ids``):
  ``[CLS] A [SEP] B [SEP]``: do the two sentences come from the same module/topic?  Half the pairs do
  (another sentence of A's document), half do not (a sentence of another document).  Trivial
  baselines: the majority class (0.5), and a threshold on the two sentences' word overlap (Jaccard)
  fitted on the training pairs.

Every split is **by document** (a hash of its title orders them; about a quarter of the sentences go to
the test side), so the test asks about modules and topics never trained on.  Deterministic: the same
corpus gives the same task on every machine.

A task turns text into *examples* (one dict of token-level lists per example, ``examples``), knows its
baselines (``baselines``) and evaluates a model (``evaluate``): the protocol ``minibert.training.finetune``
states, and its one pipeline trains these three and the classification task alike.  Shapes: ``B`` batch, ``T`` sequence, ``K`` labels.
"""
import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

from ..layers.cross_entropy import IGNORE_INDEX

QUOTE = '"'
MAX_ANSWER_LENGTH = 20  # tokens; the quoted spans of the QA task are at most this long


def _hash(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _documents(corpus):
    """[(title, sentences)] of both splits of the corpus, in the corpus's order."""
    return ([(t, d) for d, t in zip(corpus.train, corpus.train_titles)]
            + [(t, d) for d, t in zip(corpus.heldout, corpus.heldout_titles)])


def split_documents(docs, test_fraction=0.25):
    """[(title, sentences)] -> (train, test) lists of the same, split by document: documents in a fixed
    pseudo-random order (a hash of the title) go to the test side until it holds ``test_fraction`` of
    the sentences."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    total, held, train, test = sum(len(d) for _, d in docs), 0, [], []
    for title, doc in sorted(docs, key=lambda td: _hash(td[0])):
        to_test = held < test_fraction * total
        held += len(doc) if to_test else 0
        (test if to_test else train).append((title, doc))
    return train, test


def _balanced_quotes(sentence, min_spans=1):
    return sentence.count(QUOTE) % 2 == 0 and sentence.count(QUOTE) >= 2 * min_spans


def tag_words(tokenizer, text):
    """Word pieces of ``text`` with their quote tags: -> (pieces, tags, words) where ``tags[i]`` is 1
    for a piece between two quote marks, 0 outside, -100 for a quote mark itself, and ``words[i]`` is
    the index of the (basic-tokenizer) word the piece belongs to."""
    pieces, tags, words, inside = [], [], [], False
    for w, word in enumerate(tokenizer.basic_tokenizer.tokenize(text)):
        if word == QUOTE:
            inside = not inside
            pieces.append(word)
            tags.append(IGNORE_INDEX)
            words.append(w)
            continue
        for piece in tokenizer.wordpiece_tokenizer.tokenize(word):
            pieces.append(piece)
            tags.append(int(inside))
            words.append(w)
    return pieces, tags, words


def _quoted_spans(tags):
    """[(first, last)] piece indices of each maximal run of tag 1 (the inside of one pair of quotes)."""
    spans, start = [], None
    for i, t in enumerate(list(tags) + [IGNORE_INDEX]):
        if t == 1 and start is None:
            start = i
        elif t != 1 and start is not None:
            spans.append((start, i - 1))
            start = None
    return spans


# -- decoding a span -------------------------------------------------------------------------------
def best_spans(start_logits, end_logits, allowed, max_answer_length=MAX_ANSWER_LENGTH):
    """The answer span of each row: the (start, end) maximising ``start_logits[start] + end_logits[end]``
    with ``start <= end``, ``end - start < max_answer_length`` and both positions ``allowed`` (the context
    segment: not the question, not ``[CLS]``/``[SEP]``/padding).

    start_logits, end_logits: (B, T) or (T,); allowed: bool, same shape.
    -> (starts, ends, scores), each (B,) (or scalars for one row).  A row with no allowed position
    raises ValueError.  Cost O(B T^2): every pair is scored, then the forbidden ones are set to -inf.
    """
    s, e, ok = np.asarray(start_logits, np.float64), np.asarray(end_logits, np.float64), np.asarray(allowed, bool)
    one = s.ndim == 1
    s, e, ok = np.atleast_2d(s), np.atleast_2d(e), np.atleast_2d(ok)
    if s.shape != e.shape or s.shape != ok.shape:
        raise ValueError(f"start_logits, end_logits and allowed must have one shape, got {s.shape}, {e.shape}, "
                         f"{ok.shape}")
    if isinstance(max_answer_length, bool) or not isinstance(max_answer_length, (int, np.integer)) \
            or max_answer_length < 1:
        raise ValueError(f"max_answer_length must be a positive integer, got {max_answer_length!r}")
    if not ok.any(axis=1).all():
        raise ValueError(f"row {int(np.argmin(ok.any(axis=1)))} of allowed has no allowed position")
    T = s.shape[1]
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    legal = (j >= i) & (j - i < max_answer_length)                      # (T, T): start i, end j
    legal = legal[None] & ok[:, :, None] & ok[:, None, :]               # (B, T, T)
    score = np.where(legal, s[:, :, None] + e[:, None, :], -np.inf)     # (B, T, T)
    flat = score.reshape(len(s), -1).argmax(axis=1)                     # (B,)
    starts, ends = flat // T, flat % T
    scores = score.reshape(len(s), -1)[np.arange(len(s)), flat]
    return (starts[0], ends[0], scores[0]) if one else (starts, ends, scores)


def span_scores(pred, gold):
    """SQuAD's exact match and token F1 of one predicted (start, end) against the gold one, over token
    positions (inclusive ends): -> (em, f1)."""
    (ps, pe), (gs, ge) = pred, gold
    overlap = max(0, min(pe, ge) - max(ps, gs) + 1)
    if overlap == 0:
        return float((ps, pe) == (gs, ge)), 0.0
    precision, recall = overlap / (pe - ps + 1), overlap / (ge - gs + 1)
    return float((ps, pe) == (gs, ge)), 2 * precision * recall / (precision + recall)


# -- padding ---------------------------------------------------------------------------------------
PAD_VALUES = {"labels": IGNORE_INDEX, "token_type_ids": 0}


def pad_examples(examples, pad_id=0):
    """Examples (dicts of lists, or of ints for per-sequence values) -> one batch of arrays: token-level
    keys padded to the longest row of *this* batch (``input_ids`` with ``pad_id``, ``labels`` with -100,
    the rest with 0), plus ``attention_mask``; an int per example becomes a (b,) array."""
    T = max(len(ex["input_ids"]) for ex in examples)
    batch = {}
    for key, value in examples[0].items():
        if np.ndim(value) == 0:
            batch[key] = np.array([ex[key] for ex in examples], dtype=np.int64)  # (b,)
            continue
        fill = pad_id if key == "input_ids" else PAD_VALUES.get(key, 0)
        arr = np.full((len(examples), T), fill, dtype=np.int64)  # (b, T)
        for r, ex in enumerate(examples):
            arr[r, :len(ex[key])] = ex[key]
        batch[key] = arr
    mask = np.zeros((len(examples), T), dtype=np.int64)  # (b, T)
    for r, ex in enumerate(examples):
        mask[r, :len(ex["input_ids"])] = 1
    batch["attention_mask"] = mask
    return batch


class ExampleBatches:
    """Shuffled batches of examples (the model's keyword arguments), a new order every epoch; its
    position is checkpointed."""

    def __init__(self, examples, batch_size, seed=0, pad_id=0):
        if not examples:
            raise ValueError("no training examples")
        self.examples, self.batch_size, self.seed, self.pad_id = examples, batch_size, seed, pad_id
        self.epoch, self.index = 0, 0

    def __repr__(self):
        return (f"ExampleBatches({len(self.examples)} examples, batch_size={self.batch_size}, "
                f"epoch {self.epoch}, batch {self.index})")

    def next_batch(self):
        n_batches = max(1, len(self.examples) // self.batch_size)  # drop the last partial batch
        if self.index >= n_batches:
            self.epoch, self.index = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.examples))
        take = order[self.index * self.batch_size:(self.index + 1) * self.batch_size]
        self.index += 1
        return pad_examples([self.examples[i] for i in take], self.pad_id)

    def state_dict(self):
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state):
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def run_eval(model, examples, pad_id, batch_size=64, keys=None):
    """Forward every example in eval mode (restored afterwards): -> (list of (batch, output))."""
    outs = []
    with model.eval_mode():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            batch = pad_examples([{k: ex[k] for k in (keys or ex)} for ex in chunk], pad_id)
            outs.append((batch, model(**batch)))
    return outs


# -- the three tasks -------------------------------------------------------------------------------
@dataclass
class ApplicationTask:
    """A task over sentences split by document; subclasses say how to encode, score and evaluate."""
    name: str
    train_docs: list            # [(title, sentences)]
    test_docs: list
    kind: str = ""              # "token", "qa" or "sequence": which head trains on it
    label_names: list = field(default_factory=list)
    metric: str = ""            # the headline metric of evaluate()

    @property
    def num_labels(self):
        return len(self.label_names)

    def _counts(self, docs):
        return f"{sum(len(d) for _, d in docs)} sentences from {len(docs)} documents"

    def __repr__(self):
        return (f"{type(self).__name__}({self.name!r}, {self.kind}; train {self._counts(self.train_docs)}; "
                f"test {self._counts(self.test_docs)}, other documents)")

    progress = ()  # keys of record() shown in the progress bar

    def examples(self, tokenizer, max_length):
        """-> (train examples, test examples): the task's ``encode`` of each side."""
        return self.encode(tokenizer, self.train_docs, max_length), self.encode(tokenizer, self.test_docs, max_length)

    def model_inputs(self, examples):
        """The examples as the model takes them (QA drops what only decoding needs)."""
        return examples

    def record(self, result):
        """Extra per-step log values of a training step (a ``loop.StepResult``): none."""
        return {}


class CodeTaggingTask(ApplicationTask):
    """``stdlib-code-tags``: each word piece is ``code`` (between double quotes) or ``prose``."""

    def __init__(self, name, train_docs, test_docs):
        super().__init__(name, train_docs, test_docs, "token", ["prose", "code"], "f1")

    def encode(self, tokenizer, docs, max_length):
        """-> [{"input_ids", "labels"}]: ``[CLS] pieces [SEP]`` truncated to ``max_length``, labels 0/1 and
        -100 on the quote marks and the special tokens."""
        out = []
        for _, doc in docs:
            for sentence in doc:
                pieces, tags, _ = tag_words(tokenizer, sentence)
                pieces, tags = pieces[:max_length - 2], tags[:max_length - 2]
                ids = [tokenizer.cls_token_id] + tokenizer.convert_tokens_to_ids(pieces) + [tokenizer.sep_token_id]
                out.append({"input_ids": ids, "labels": [IGNORE_INDEX] + tags + [IGNORE_INDEX]})
        return out

    @staticmethod
    def scores(pred, gold):
        """Token accuracy and the precision/recall/F1 of the ``code`` class over labelled positions."""
        keep = gold != IGNORE_INDEX
        p, g = pred[keep], gold[keep]
        tp, fp, fn = int(((p == 1) & (g == 1)).sum()), int(((p == 1) & (g == 0)).sum()), int(((p == 0) & (g == 1)).sum())
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"token_accuracy": float((p == g).mean()), "precision": precision, "recall": recall, "f1": f1,
                "tokens": int(keep.sum())}

    def baselines(self, train, test):
        """Always ``prose``; and each piece's most frequent training tag (unseen pieces: prose)."""
        gold = np.concatenate([ex["labels"] for ex in test])
        counts = {}
        for ex in train:
            for i, t in zip(ex["input_ids"], ex["labels"]):
                if t != IGNORE_INDEX:
                    counts.setdefault(i, [0, 0])[t] += 1
        lookup = np.concatenate([[int(counts.get(i, [1, 0])[1] > counts.get(i, [1, 0])[0]) for i in ex["input_ids"]]
                                 for ex in test])
        return {"majority": self.scores(np.zeros_like(gold), gold), "word_lookup": self.scores(lookup, gold)}

    def evaluate(self, model, examples, pad_id=0):
        loss, n, preds, golds = 0.0, 0, [], []
        for batch, out in run_eval(model, examples, pad_id):
            count = int((batch["labels"] != IGNORE_INDEX).sum())
            loss, n = loss + float(out.loss) * count, n + count
            m = batch["labels"] != IGNORE_INDEX
            preds.append(out.logits.argmax(-1)[m])
            golds.append(batch["labels"][m])
        return {"loss": loss / max(n, 1), **self.scores(np.concatenate(preds), np.concatenate(golds))}

    def describe(self, ev):
        return f"f1={ev['f1']:.4f} token_accuracy={ev['token_accuracy']:.4f} loss={ev['loss']:.4f}"


class QuotedSpanQATask(ApplicationTask):
    """``stdlib-quoted-qa``: question = a word found in exactly one quoted span of the sentence; answer =
    that whole quoted span."""

    def __init__(self, name, train_docs, test_docs, max_answer_length=MAX_ANSWER_LENGTH):
        super().__init__(name, train_docs, test_docs, "qa", ["start", "end"], "f1")
        self.max_answer_length = max_answer_length

    def questions(self, tokenizer, sentence):
        """[(question word, pieces, tags, (first, last) answer piece)] of one sentence: one per quoted
        span that holds a word (letters/digits, 2+ characters) found nowhere else in the sentence; the
        longest such word (the first on ties) is the question."""
        pieces, tags, words = tag_words(tokenizer, sentence)
        spans = _quoted_spans(tags)
        if len(spans) < 2:
            return []
        basic = tokenizer.basic_tokenizer.tokenize(sentence)
        out = []
        for first, last in spans:
            inside = sorted(set(words[first:last + 1]))
            unique = [basic[w] for w in inside if re.fullmatch(r"\w{2,}", basic[w]) and basic.count(basic[w]) == 1]
            if unique:
                out.append((max(unique, key=len), pieces, tags, (first, last)))
        return out

    def encode(self, tokenizer, docs, max_length):
        """-> [{"input_ids", "token_type_ids", "start_positions", "end_positions", "context",
        "spans"}]: ``[CLS] question [SEP] context [SEP]``; ``context`` marks the context's pieces (where an
        answer may be), ``spans`` every quoted span of the context (for the first-span baseline), in
        absolute positions.  Examples whose answer is truncated away, or whose truncated context keeps only
        one quoted span, are dropped."""
        out = []
        for _, doc in docs:
            for sentence in doc:
                if not _balanced_quotes(sentence, 2):
                    continue
                for word, pieces, tags, (first, last) in self.questions(tokenizer, sentence):
                    q = tokenizer.convert_tokens_to_ids(tokenizer.wordpiece_tokenizer.tokenize(word))
                    offset = len(q) + 2  # [CLS] q [SEP]
                    room = max_length - offset - 1
                    if last + 1 >= room or last - first + 1 > self.max_answer_length:  # keep its closing quote
                        continue
                    spans = _quoted_spans(tags[:room])
                    if len(spans) < 2:  # truncation left one quoted span: no choice to make
                        continue
                    ctx = tokenizer.convert_tokens_to_ids(pieces[:room])
                    ids = [tokenizer.cls_token_id] + q + [tokenizer.sep_token_id] + ctx + [tokenizer.sep_token_id]
                    out.append({"input_ids": ids, "token_type_ids": [0] * offset + [1] * (len(ctx) + 1),
                                "start_positions": offset + first, "end_positions": offset + last,
                                "context": [0] * offset + [1] * len(ctx) + [0],
                                "spans": [(offset + a, offset + b) for a, b in spans]})
        return out

    MODEL_KEYS = ("input_ids", "token_type_ids", "start_positions", "end_positions")

    def model_inputs(self, examples):
        return [{k: ex[k] for k in self.MODEL_KEYS} for ex in examples]

    @staticmethod
    def scores(preds, golds):
        em, f1 = zip(*(span_scores(p, g) for p, g in zip(preds, golds)))
        return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1)), "examples": len(golds)}

    def baselines(self, train, test):
        """The first context token; the first quoted span of the context (ignores the question)."""
        golds = [(ex["start_positions"], ex["end_positions"]) for ex in test]
        first_token = [(ex["context"].index(1),) * 2 for ex in test]
        return {"first_token": self.scores(first_token, golds),
                "first_quoted_span": self.scores([ex["spans"][0] for ex in test], golds)}

    def evaluate(self, model, examples, pad_id=0):
        loss, preds, golds = 0.0, [], []
        for i in range(0, len(examples), 64):
            chunk = examples[i:i + 64]
            (batch, out), = run_eval(model, self.model_inputs(chunk), pad_id, batch_size=len(chunk))
            loss += float(out.loss) * len(chunk)
            allowed = pad_examples([{"input_ids": ex["input_ids"], "context": ex["context"]} for ex in chunk])["context"]
            s, e, _ = best_spans(out.start_logits, out.end_logits, allowed.astype(bool), self.max_answer_length)
            preds += list(zip(s.tolist(), e.tolist()))
            golds += [(ex["start_positions"], ex["end_positions"]) for ex in chunk]
        return {"loss": loss / len(examples), **self.scores(preds, golds)}

    def describe(self, ev):
        return f"f1={ev['f1']:.4f} exact_match={ev['exact_match']:.4f} loss={ev['loss']:.4f}"


def _words(sentence):
    return set(re.findall(r"\w+", sentence.lower()))


def _jaccard(a, b):
    a, b = _words(a), _words(b)
    return len(a & b) / max(len(a | b), 1)


class SameDocumentTask(ApplicationTask):
    """``stdlib-same-doc``: are sentences A and B from the same module/topic?  (1: yes, 0: no.)"""

    def __init__(self, name, train_docs, test_docs, max_pairs=(4000, 1000)):
        super().__init__(name, train_docs, test_docs, "sequence", ["different", "same"], "accuracy")
        self.train_pairs = self.make_pairs(train_docs, max_pairs[0], seed=0)
        self.test_pairs = self.make_pairs(test_docs, max_pairs[1], seed=1)

    @staticmethod
    def make_pairs(docs, n, seed):
        """``n`` (A, B, label) triples, half positive (B: another sentence of A's document), half
        negative (B: a sentence of another document), from documents of 2+ sentences; seeded."""
        rng = np.random.default_rng(seed)
        docs = [d for _, d in docs if len(d) >= 2]
        sizes = np.array([len(d) for d in docs], dtype=float)
        pairs = []
        for k in range(n):
            a_doc = rng.choice(len(docs), p=sizes / sizes.sum())  # each sentence about equally likely as A
            i = rng.integers(len(docs[a_doc]))
            if k % 2 == 0:
                j = (i + 1 + rng.integers(len(docs[a_doc]) - 1)) % len(docs[a_doc])
                pairs.append((docs[a_doc][i], docs[a_doc][j], 1))
            else:
                b_doc = (a_doc + 1 + rng.integers(len(docs) - 1)) % len(docs)
                pairs.append((docs[a_doc][i], docs[b_doc][rng.integers(len(docs[b_doc]))], 0))
        return pairs

    def encode(self, tokenizer, pairs, max_length):
        """-> [{"input_ids", "token_type_ids", "labels"}]: ``[CLS] A [SEP] B [SEP]``, longest-first
        truncation to ``max_length``."""
        enc = tokenizer([a for a, _, _ in pairs], [b for _, b, _ in pairs], truncation=True, max_length=max_length)
        return [{"input_ids": ids, "token_type_ids": tt, "labels": y}
                for ids, tt, (_, _, y) in zip(enc["input_ids"], enc["token_type_ids"], pairs)]

    def examples(self, tokenizer, max_length):
        return self.encode(tokenizer, self.train_pairs, max_length), self.encode(tokenizer, self.test_pairs, max_length)

    def baselines(self, train=None, test=None):
        """The majority class; a word-overlap (Jaccard) threshold fitted on the training pairs."""
        y_train = np.array([y for _, _, y in self.train_pairs])
        y_test = np.array([y for _, _, y in self.test_pairs])
        j_train = np.array([_jaccard(a, b) for a, b, _ in self.train_pairs])
        j_test = np.array([_jaccard(a, b) for a, b, _ in self.test_pairs])
        cands = np.unique(j_train)
        best = max(cands, key=lambda c: ((j_train >= c) == y_train).mean())
        majority = int(np.bincount(y_train, minlength=2).argmax())
        return {"majority": {"accuracy": float((y_test == majority).mean())},
                "word_overlap": {"accuracy": float(((j_test >= best) == y_test).mean()), "threshold": float(best)}}

    def evaluate(self, model, examples, pad_id=0):
        loss, preds, golds = 0.0, [], []
        for batch, out in run_eval(model, examples, pad_id):
            loss += float(out.loss) * len(batch["labels"])
            preds.append(out.logits.argmax(-1))
            golds.append(batch["labels"])
        p, g = np.concatenate(preds), np.concatenate(golds)
        return {"loss": loss / len(g), "accuracy": float((p == g).mean()), "examples": len(g)}

    def describe(self, ev):
        return f"accuracy={ev['accuracy']:.4f} loss={ev['loss']:.4f}"


APPLICATION_TASKS = ("stdlib-code-tags", "stdlib-quoted-qa", "stdlib-same-doc")


def load_application_task(name, corpus=None, test_fraction=0.25):
    """Build one of ``APPLICATION_TASKS`` from ``corpus`` (default: the bundled CPython documentation)."""
    from ..data.cpython_docs import load_default_corpus
    if name not in APPLICATION_TASKS:
        raise ValueError(f"task must be one of {APPLICATION_TASKS}, got {name!r}")
    corpus = corpus if corpus is not None else load_default_corpus()
    docs = _documents(corpus)
    if not docs or len(docs[0]) != 2 or not corpus.train_titles:
        raise ValueError("the corpus needs document titles (train_titles) to split by document")
    if name == "stdlib-same-doc":
        train, test = split_documents(docs, test_fraction)
        return SameDocumentTask(name, train, test)
    min_spans = 2 if name == "stdlib-quoted-qa" else 1
    quoted = [(t, [s for s in d if _balanced_quotes(s, min_spans)]) for t, d in docs]
    train, test = split_documents([(t, d) for t, d in quoted if d], test_fraction)
    return CodeTaggingTask(name, train, test) if name == "stdlib-code-tags" else QuotedSpanQATask(name, train, test)


def encode_task(task, tokenizer, max_length):
    """-> (train examples, test examples) of a task (the QA test examples keep the context mask and quoted
    spans that evaluation and the baselines need): ``task.examples``."""
    return task.examples(tokenizer, max_length)
