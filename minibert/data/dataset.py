"""Pre-training mini-batches: seeded, shuffled batches of MLM/NSP arrays, epoch after epoch, resumable.

``PretrainingDataset`` runs ``pretraining.py``'s steps (Google's instance creation, then
``instances_to_arrays``) once per epoch and hands out fixed-shape batches, the keyword arguments of
``BertForPreTraining``:

    >>> docs = synthetic_corpus(200, seed=0).train                 # from minibert.data.synthetic
    >>> data = PretrainingDataset(docs, tokenizer, batch_size=8, max_seq_length=32, seed=0)
    >>> batch = next(iter(data))
    >>> {k: v.shape for k, v in batch.items()}
    {'input_ids': (8, 32), 'token_type_ids': (8, 32), 'attention_mask': (8, 32), 'labels': (8, 32),
     'next_sentence_label': (8,)}
    >>> out = model(**batch)                                       # BertForPreTraining
"""
import random

import numpy as np

from ..layers.cross_entropy import IGNORE_INDEX  # -100, transformers' label for "not predicted"
from .pretraining import (BATCH_KEYS, _check_corpus, _check_int, _check_options, _check_tokenizer,
                          _instances_from_tokenized, instances_to_arrays, tokenize_documents,
                          vocab_words_for_replacement)



def _epoch_seed(seed, epoch):
    """A 32-bit seed for epoch ``epoch``, derived from (seed, epoch) by NumPy's SeedSequence (seed + epoch
    would make seed 0's epoch 1 equal seed 1's epoch 0)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class PretrainingDataset:
    """Seeded, shuffled mini-batches of pre-training arrays, epoch after epoch.

        data = PretrainingDataset(docs, tokenizer, batch_size=32, max_seq_length=128, seed=0)
        for epoch in range(3):
            for batch in data:                  # dicts of arrays, see instances_to_arrays; B = batch_size
                out = model(**batch)
        batch = data.next_batch()               # or one batch at a time, crossing epochs by itself
        state = data.state_dict()               # JSON-able: save it with the model's checkpoint
        data.load_state_dict(state)             # ... and resume at the same batch

    **Static or dynamic masking.**  google-research/bert masks once, when the data is written
    (``dynamic_masking=False``): ``dupe_factor`` copies of the corpus with different masks and NSP pairs, the
    same every epoch, only reshuffled.  RoBERTa showed that drawing new masks for every epoch
    (``dynamic_masking=True``) is as good or better and needs no duplicates; on the small corpora minibert
    trains on, it also keeps a model from memorizing its few masks.  So the default is dynamic: each epoch
    rebuilds its instances (new short-sequence targets, NSP pairs and masks) with a seed derived from
    ``(seed, epoch)``; this costs a pass over the tokenized corpus per epoch.  Use static masking for a
    fixed evaluation set.

    **What is stored.**  The corpus is tokenized once.  The current epoch's instances are kept as arrays
    ``(N, T)`` and served in the order of a seeded permutation.  With ``drop_last=True`` (the default, for
    training) every batch has exactly ``batch_size`` rows and the last ``N % batch_size`` instances of an
    epoch are skipped (the permutation changes every epoch, so different ones); with ``drop_last=False``
    (for evaluation) the last batch is smaller.

    **Grouped by length** (``group_by_length=True``, what pretraining uses).  About a fifth of a 128-token
    epoch is padding: documents end, and 10% of the sequences aim shorter (``short_seq_prob``).  A
    product computes on padding as on text, so the epoch's shuffled order is cut into megabatches of 50
    batches, each sorted by length and cut into batches, and the batches are shuffled (transformers'
    ``LengthGroupedSampler``).  Each batch is then cut to its longest sequence, (B, T) -> (B, T_batch):
    the padding every row of it has is not computed at all, and what the model computes on the other
    positions is unchanged (padding is masked out of attention and never labelled).

    **Resuming.**  All randomness of epoch ``e`` is a function of ``(seed, e)``, so the complete state is
    ``{"epoch", "position", "seed"}`` (plain ints): ``load_state_dict`` rebuilds that epoch's arrays and
    permutation and continues after the last batch handed out.  ``len(data)`` is the number of batches in
    the current epoch (with dynamic masking, N varies a little from epoch to epoch).
    """

    def __init__(self, documents, tokenizer, batch_size, max_seq_length=128, masked_lm_prob=0.15,
                 max_predictions_per_seq=20, short_seq_prob=0.1, dupe_factor=1, whole_word_mask=False,
                 dynamic_masking=True, drop_last=True, group_by_length=False, seed=0):
        _check_int("batch_size", batch_size, 1)
        _check_options(max_seq_length, short_seq_prob, masked_lm_prob, max_predictions_per_seq, dupe_factor)
        _check_int("seed", seed, 0)
        _check_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.max_seq_length = int(max_seq_length)
        self.masked_lm_prob = float(masked_lm_prob)
        self.max_predictions_per_seq = int(max_predictions_per_seq)
        self.short_seq_prob = float(short_seq_prob)
        self.dupe_factor = int(dupe_factor)
        self.whole_word_mask = bool(whole_word_mask)
        self.dynamic_masking = bool(dynamic_masking)
        self.drop_last = bool(drop_last)
        self.group_by_length = bool(group_by_length)
        self.seed = int(seed)
        self.documents = tokenize_documents(documents, tokenizer)      # tokenized once
        _check_corpus(self.documents, len(documents))
        self.vocab_words = vocab_words_for_replacement(tokenizer.vocab)
        self.epoch = 0
        self.position = 0                # batches of the current epoch already handed out
        self._static_arrays = None
        self._current = None             # (epoch, arrays, order) of the current epoch
        if len(self) == 0:
            raise ValueError(f"the corpus is too small for one batch: batch_size={self.batch_size}, but it "
                             f"gives only {self.num_instances} instances of max_seq_length={self.max_seq_length}; "
                             "use a smaller batch_size, a larger dupe_factor or more text")

    # -- building an epoch ------------------------------------------------------------------------
    def _epoch_data(self, epoch):
        """(arrays, order) of epoch ``epoch``: the instances as arrays (N, T) and the order to serve them."""
        if self._current is not None and self._current[0] == epoch:
            return self._current[1:]
        if not self.dynamic_masking and self._static_arrays is not None:
            arrays = self._static_arrays
        else:
            rng = random.Random(_epoch_seed(self.seed, epoch if self.dynamic_masking else 0))
            instances = _instances_from_tokenized(
                self.documents, self.vocab_words, self.max_seq_length, self.dupe_factor, self.short_seq_prob,
                self.masked_lm_prob, self.max_predictions_per_seq, self.whole_word_mask, rng)
            arrays = instances_to_arrays(instances, self.tokenizer, self.max_seq_length)
            if not self.dynamic_masking:
                self._static_arrays = arrays
        # The order is a permutation drawn from (seed, epoch); the instances come from a separate
        # random.Random, so changing one never shifts the other.
        order = np.random.default_rng([self.seed, epoch]).permutation(len(arrays["next_sentence_label"]))
        if self.group_by_length:
            order = self._grouped(order, arrays["attention_mask"].sum(1), np.random.default_rng([self.seed, epoch, 1]))
        return arrays, order

    def _grouped(self, order, lengths, rng):
        """``order`` rearranged so that each batch holds sequences of similar length (transformers'
        ``LengthGroupedSampler``): cut the shuffled order into megabatches of 50 batches, sort each by
        length, longest first, cut it into batches, then shuffle the batches.  Every instance is still
        served once per epoch, in batches whose members are a random draw of similar length."""
        B, mega = self.batch_size, 50 * self.batch_size
        grouped = np.concatenate([chunk[np.argsort(-lengths[chunk], kind="stable")]
                                  for chunk in np.split(order, range(mega, len(order), mega))])
        n_full = len(grouped) // B
        batches = grouped[:n_full * B].reshape(n_full, B)[rng.permutation(n_full)]
        return np.concatenate([batches.reshape(-1), grouped[n_full * B:]])

    def _current_epoch(self):
        """(epoch, arrays, order) of ``self.epoch``, built on first use and kept until the epoch changes."""
        if self._current is None or self._current[0] != self.epoch:
            self._current = (self.epoch, *self._epoch_data(self.epoch))
        return self._current

    @property
    def arrays(self):
        """The current epoch's instances: dict of arrays (N, T) and (N,), in instance order (not shuffled)."""
        return self._current_epoch()[1]

    @property
    def order(self):
        """The current epoch's permutation of the N instances: batch i is rows order[i*B:(i+1)*B]."""
        return self._current_epoch()[2]

    @property
    def num_instances(self):
        """N, the number of instances in the current epoch."""
        return len(self.arrays["next_sentence_label"])

    def _num_batches(self, num_instances):
        B = self.batch_size
        return num_instances // B if self.drop_last else -(-num_instances // B)

    def __len__(self):
        """Batches in the current epoch: N // batch_size (ceil with drop_last=False)."""
        return self._num_batches(self.num_instances)

    # -- batches ----------------------------------------------------------------------------------
    def _take(self, arrays, order, index, batch_size):
        rows = order[index * batch_size:(index + 1) * batch_size]                  # (B,)
        batch = {key: arrays[key][rows] for key in BATCH_KEYS}
        if self.group_by_length:  # cut the padding every row of the batch has: (B, T) -> (B, longest)
            longest = int(batch["attention_mask"].sum(1).max())
            batch = {key: np.ascontiguousarray(v[:, :longest]) if v.ndim == 2 else v  # a view would not
                     for key, v in batch.items()}  # be C-contiguous: torch's labels.view(-1) refuses it
        return batch

    def batch(self, index):
        """Batch ``index`` of the current epoch, a dict of arrays (B, T) and (B,); does not move position."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index must be in [0, {len(self)}), got {index}")
        return self._take(self.arrays, self.order, index, self.batch_size)

    def __iter__(self):
        """Yield the remaining batches of the current epoch, then move on to the next epoch.

        ``position`` counts a batch as consumed when it is handed out, so a ``state_dict()`` taken while
        processing a batch resumes with the next one.
        """
        while self.position < len(self):
            self.position += 1
            yield self.batch(self.position - 1)
        self.epoch += 1
        self.position = 0

    def next_batch(self):
        """The next batch of the endless stream: the rest of this epoch, then the next epoch, and so on."""
        if self.position >= len(self):
            self.epoch += 1
            self.position = 0
        self.position += 1
        return self.batch(self.position - 1)

    def epoch_batches(self, epoch):
        """Every batch of epoch ``epoch``, in order, without moving this dataset's position (for evaluation:
        with ``dynamic_masking=False`` and a fixed epoch, the same batches every time)."""
        _check_int("epoch", epoch, 0)
        arrays, order = self._epoch_data(epoch)
        for index in range(self._num_batches(len(order))):
            yield self._take(arrays, order, index, self.batch_size)

    def most_frequent_label(self):
        """The token id most often predicted in the current epoch (the unigram baseline's constant guess)."""
        labels = self.arrays["labels"]
        return int(np.bincount(labels[labels != IGNORE_INDEX]).argmax())

    # -- checkpointing ----------------------------------------------------------------------------
    def _config(self):
        return {"batch_size": self.batch_size, "max_seq_length": self.max_seq_length,
                "masked_lm_prob": self.masked_lm_prob, "max_predictions_per_seq": self.max_predictions_per_seq,
                "short_seq_prob": self.short_seq_prob, "dupe_factor": self.dupe_factor,
                "whole_word_mask": self.whole_word_mask, "dynamic_masking": self.dynamic_masking,
                "drop_last": self.drop_last, "num_documents": len(self.documents),
                **({"group_by_length": True} if self.group_by_length else {})}  # older states resume

    def state_dict(self):
        """Where the iterator is, as plain JSON-able data: epoch, position (batches handed out in this epoch),
        seed (all randomness derives from (seed, epoch)) and the options it was built with (checked on load)."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "config": self._config()}

    def load_state_dict(self, state):
        """Continue from a ``state_dict()``: rebuilds that epoch's instances and order exactly."""
        for key in ("epoch", "position", "seed"):
            if key not in state:
                raise KeyError(f"state is missing {key!r}; expected the keys of PretrainingDataset.state_dict()")
        config = state.get("config")
        if config is not None and config != self._config():
            mine = self._config()
            diff = {k: (config.get(k), mine.get(k)) for k in {**config, **mine} if config.get(k) != mine.get(k)}
            raise ValueError(f"state was saved by a PretrainingDataset built differently: (saved, this) = {diff}")
        _check_int("state['epoch']", state["epoch"], 0)
        _check_int("state['position']", state["position"], 0)
        _check_int("state['seed']", state["seed"], 0)
        if int(state["seed"]) != self.seed:
            self.seed, self._static_arrays, self._current = int(state["seed"]), None, None
        self.epoch = int(state["epoch"])
        if state["position"] > len(self):
            raise ValueError(f"state['position'] must be <= {len(self)} (the batches in epoch {self.epoch}), "
                             f"got {state['position']}")
        self.position = int(state["position"])

    def __repr__(self):
        return (f"PretrainingDataset(documents={len(self.documents):,}, instances={self.num_instances:,}, "
                f"batch_size={self.batch_size}, max_seq_length={self.max_seq_length}, "
                f"masking={'dynamic' if self.dynamic_masking else 'static'}, epoch={self.epoch}, "
                f"batch={self.position}/{len(self)})")
