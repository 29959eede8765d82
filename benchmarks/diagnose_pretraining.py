"""Why does a short pretraining plateau?  Diagnose one or more ``minibert pretrain`` outputs.

    minibert pretrain --out runs/pretrain                                # the default job (3000 steps)
    minibert pretrain --out runs/long --max-steps 20000 --eval-every 1000
    python benchmarks/diagnose_pretraining.py runs/pretrain runs/long

For each run it rebuilds the exact held-out batches the run evaluated on and prints:

* held-out MLM accuracy (as in metrics.json) split by the kind of target: punctuation, whole word,
  word piece (``##...``), and for whole words whether the word also appears unmasked elsewhere in its
  sequence;
* the same split for a **neighbour-count model** that needs no training: the most frequent middle token
  for the (left, right) tokens around the mask in the training corpus, backing off to the left or the
  right neighbour alone, then to the most frequent token.  It is what "use the two neighbours" is worth;
* where each attention head looks: its mean probability on the token at offset -1, 0 and +1, against
  the uniform 1/n of a position-blind head;
* how much the position embeddings have learned: the mean cosine between neighbouring positions
  (about 0 at BERT's random initialisation, near 1 when neighbouring positions look alike).
"""
import argparse
import json
import os
import sys
from collections import Counter, defaultdict

import numpy as np

from minibert.training.inference import load_pretraining_model
from minibert.data.pretraining import tokenize_documents
from minibert.training.pretrain import PretrainConfig, heldout_batches, load_corpus

def kind_of(token):
    if token.startswith("##"):
        return "piece"
    return "word" if any(ch.isalnum() for ch in token) else "punctuation"


class NeighbourCounts:
    """argmax over the training corpus of P(middle | left, right), backing off to P(middle | left),
    P(middle | right) and P(middle)."""

    def __init__(self, token_documents, tokenizer):
        both, left, right, uni = defaultdict(Counter), defaultdict(Counter), defaultdict(Counter), Counter()
        for doc in token_documents:
            ids = tokenizer.convert_tokens_to_ids([t for sentence in doc for t in sentence])
            for i, t in enumerate(ids):
                l = ids[i - 1] if i > 0 else None
                r = ids[i + 1] if i + 1 < len(ids) else None
                both[l, r][t] += 1
                left[l][t] += 1
                right[r][t] += 1
                uni[t] += 1
        best = lambda table: {k: c.most_common(1)[0][0] for k, c in table.items()}  # noqa: E731
        self.both, self.left, self.right = best(both), best(left), best(right)
        self.unigram = uni.most_common(1)[0][0]

    def predict(self, l, r):
        """``l``/``r``: the neighbour ids as the model sees them, or None when masked or outside."""
        if l is not None and r is not None and (l, r) in self.both:
            return self.both[l, r]
        if l is not None and l in self.left:
            return self.left[l]
        if r is not None and r in self.right:
            return self.right[r]
        return self.unigram


def diagnose(run_dir, counts_cache):
    """Print the diagnosis of one run; -> dict of its figures (see the module docstring)."""
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    cfg = PretrainConfig.from_metrics(metrics)
    model, tokenizer = load_pretraining_model(run_dir)
    model.eval()
    train_docs, heldout_docs = load_corpus(cfg.corpus, cfg.seed, verbose=False)
    batches = heldout_batches(cfg, tokenizer, heldout_docs)
    key = (cfg.corpus, cfg.seed, os.path.abspath(os.path.join(run_dir, "vocab.txt")))
    if key not in counts_cache:
        counts_cache[key] = NeighbourCounts(tokenize_documents(train_docs, tokenizer), tokenizer)
    counts = counts_cache[key]
    mask_id, pad_id = tokenizer.vocab["[MASK]"], tokenizer.pad_token_id

    hits = {who: Counter() for who in ("model", "counts")}
    totals = Counter()
    num_layers, num_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    offsets = np.zeros((num_layers, num_heads, 3))  # mean attention on the token at offset -1, 0, +1
    pair_count, uniform_sum, uniform_count = np.zeros(3), 0.0, 0.0
    for b in batches:
        out = model(**b, output_attentions=True)
        mask = b["attention_mask"].astype(np.float64)                    # (B, T)
        pairs = mask[:, :, None] * mask[:, None, :]                        # (B, T, T) query and key both real
        for j, o in enumerate((-1, 0, 1)):
            valid = np.diagonal(pairs, offset=o, axis1=1, axis2=2)         # (B, T - |o|)
            for layer, probs in enumerate(out.attentions):                 # (B, A, T, T)
                on_offset = np.diagonal(probs, offset=o, axis1=2, axis2=3)  # (B, A, T - |o|)
                offsets[layer, :, j] += (on_offset * valid[:, None]).sum(axis=(0, 2))
            pair_count[j] += valid.sum()
        n_real = mask.sum(axis=1)
        uniform_sum += np.sum((n_real - 1) / n_real)                       # 1/n on each real neighbour pair
        uniform_count += np.sum(n_real - 1)
        T = b["input_ids"].shape[1]
        positions = np.flatnonzero(b["labels"].reshape(-1) != -100)  # (P,) the labelled rows of B*T
        labels = b["labels"].reshape(-1)[positions]
        guesses = out.prediction_logits.reshape(-1, out.prediction_logits.shape[-1])[positions].argmax(-1)
        for pos, label, guess in zip(positions, labels, guesses):
            row, t = divmod(int(pos), T)
            ids = b["input_ids"][row]
            k = kind_of(tokenizer.convert_ids_to_tokens(int(label)))
            if k == "word":
                k = "word, also elsewhere" if (ids == label).any() else "word, only here"
            neighbour = lambda i: None if i < 0 or i >= T or ids[i] in (mask_id, pad_id) else int(ids[i])  # noqa: E731
            totals[k] += 1
            hits["model"][k] += int(guess == label)
            hits["counts"][k] += int(counts.predict(neighbour(t - 1), neighbour(t + 1)) == label)
    offsets /= pair_count
    uniform = uniform_sum / uniform_count

    n = sum(totals.values())
    print(f"\n== {run_dir}: {metrics['steps']} steps, {metrics['seconds'] / 60:.1f} min of training; "
          f"held-out MLM accuracy {metrics['eval']['mlm_accuracy']:.3f} (unigram "
          f"{metrics['eval']['unigram_mlm_accuracy']:.3f}), {n} held-out predictions")
    print(f"{'target':<22s}{'share':>7s}{'model':>8s}{'neighbour counts':>18s}")
    for k in ("punctuation", "word, also elsewhere", "word, only here", "piece"):
        print(f"{k:<22s}{totals[k] / n:>7.2f}{hits['model'][k] / max(totals[k], 1):>8.3f}"
              f"{hits['counts'][k] / max(totals[k], 1):>18.3f}")
    print(f"{'all':<22s}{1:>7.2f}{sum(hits['model'].values()) / n:>8.3f}{sum(hits['counts'].values()) / n:>18.3f}")
    print(f"attention on offsets -1 / 0 / +1 (a position-blind head: {uniform:.3f} each)")
    for layer in range(num_layers):
        for head in range(num_heads):
            print(f"  layer {layer} head {head}: " + " / ".join(f"{p:.3f}" for p in offsets[layer, head]))
    P = model.bert.params["embeddings.position_embeddings.weight"].astype(np.float64)
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    cos1, cos20 = np.mean(np.sum(P[1:] * P[:-1], axis=1)), np.mean(np.sum(P[20:] * P[:-20], axis=1))
    print(f"position embeddings: mean cos(p_t, p_t+1) = {cos1:.3f}, cos(p_t, p_t+20) = {cos20:.3f}")
    return {"model_accuracy": sum(hits["model"].values()) / n, "counts_accuracy": sum(hits["counts"].values()) / n,
            "attention_offsets": offsets, "uniform_attention": float(uniform), "position_cos": cos1}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="`minibert pretrain` output directories")
    args = p.parse_args(argv)
    cache = {}
    for run in args.runs:
        if not os.path.isfile(os.path.join(run, "metrics.json")):
            sys.exit(f"{run}: no metrics.json (not a finished `minibert pretrain` output)")
    return [diagnose(run, cache) for run in args.runs]


if __name__ == "__main__":
    main()
