"""Pretraining end to end: corpus -> WordPiece vocab -> MLM/NSP instances -> BERT -> AdamW.

    from minibert.train import PretrainConfig, pretrain
    metrics = pretrain(PretrainConfig(preset="tiny", max_steps=500, out="runs/tiny"))

Writes into ``out``: ``vocab.txt``, ``log.jsonl`` (one line per step), ``checkpoint.safetensors``
(atomic, checksummed; ``resume=True`` continues from it exactly), ``metrics.json``, ``curves.png``
and ``model/`` (config.json + model.safetensors + vocab.txt, loadable by minibert and transformers).
"""
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import backend
from .checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from .config import BertConfig
from .model import IGNORE_INDEX, BertForPreTraining
from .optim import AdamW, clip_grad_norm, linear_warmup_decay
from .progress import Progress

PRESETS = {
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
}
# The default peak learning rate of each preset (measured, docs/pretraining.md): tiny learns fastest at
# 2e-3 and loses its positional heads at 3e-3; mini, without dropout, stays at the unigram level at 2e-3.
PRESET_LR = {"tiny": 2e-3, "mini": 1e-3}


@dataclass
class PretrainConfig:
    preset: str = "tiny"
    corpus: str = "default"          # "default" (CPython docs), "synthetic", or a text file path
    out: str = "runs/pretrain"
    max_steps: int = 3600            # ~12 min on 2 quiet cores (numba backend); see README for what it reaches
    minutes: Optional[float] = None  # stop earlier when this wall-clock budget is spent
    seed: int = 0
    batch_size: int = 32
    max_seq_length: int = 128
    vocab_size: int = 8192
    lr: Optional[float] = None       # peak learning rate; None: the preset's, PRESET_LR
    warmup_steps: int = 60
    short_seq_length: int = 16       # sequence-length warmup: the first short_seq_fraction of the steps
    short_seq_fraction: float = 0.25  # train on short sequences (same tokens per batch); 0 turns it off
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    dropout: float = 0.0             # BERT pretrained with 0.1; a tiny model learns faster without (fine-tuning uses 0.1)
    eval_every: int = 250
    eval_batches: int = 8
    checkpoint_every: int = 250
    resume: bool = False
    backend: Optional[str] = None
    debug: bool = False              # name the first kernel that produces a NaN/Inf (slower)
    verbose: bool = True

    def __post_init__(self):
        if self.lr is None and self.preset in PRESET_LR:
            self.lr = PRESET_LR[self.preset]

    def validate(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        for name in ("max_steps", "batch_size", "vocab_size", "eval_every", "checkpoint_every", "eval_batches"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.max_seq_length, int) or self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be an integer >= 8, got {self.max_seq_length!r}")
        if not isinstance(self.short_seq_length, int) or self.short_seq_length < 8:
            raise ValueError(f"short_seq_length must be an integer >= 8, got {self.short_seq_length!r}")
        if not 0 <= self.short_seq_fraction < 1:
            raise ValueError(f"short_seq_fraction must be in [0, 1), got {self.short_seq_fraction!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.corpus not in ("default", "synthetic") and not os.path.isfile(self.corpus):
            raise FileNotFoundError(f"corpus file not found: {self.corpus!r} "
                                    "(use 'default', 'synthetic', or a text file: one sentence per line, "
                                    "a blank line between documents)")

    @property
    def short_seq_steps(self):
        """Steps of the sequence-length warmup (0 when it is off or the sequences are short anyway)."""
        if self.short_seq_length >= self.max_seq_length:
            return 0
        return int(self.short_seq_fraction * self.max_steps)

    def model_config(self, vocab_size):
        return BertConfig(vocab_size=vocab_size, max_position_embeddings=self.max_seq_length,
                          hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
                          **PRESETS[self.preset])


# -- data ------------------------------------------------------------------------------------------
def load_corpus(name, seed=0, verbose=True):
    """-> (train documents, held-out documents); a document is a list of sentences."""
    from . import corpus as corpora
    if name == "default":
        c = corpora.load_default_corpus(verbose=verbose)
        return c.train, c.heldout
    if name == "synthetic":
        c = corpora.synthetic_corpus(num_docs=400, seed=seed)
        return c.train, c.heldout
    docs = corpora.read_text_corpus(name)
    docs = docs.train + docs.heldout if hasattr(docs, "train") else docs
    if len(docs) < 2:
        raise ValueError(f"corpus {name!r} has {len(docs)} document(s); NSP needs at least 2 "
                         "(separate documents with a blank line)")
    n_held = max(1, len(docs) // 20)
    return docs[n_held:], docs[:n_held]


def build_vocab(train_docs, vocab_size, path, verbose=True):
    from .wordpiece import train_wordpiece
    if not os.path.isfile(path):
        t = time.perf_counter()
        train_wordpiece((s for doc in train_docs for s in doc), vocab_size, out_file=path)
        if verbose:
            print(f"trained a {vocab_size}-piece WordPiece vocabulary in {time.perf_counter() - t:.1f}s -> {path}")
    from .tokenizer import BertTokenizer
    return BertTokenizer(path)


class SequenceLengthWarmup:
    """Pretraining batches whose sequence length grows: ``short`` batches for the first ``short_steps``
    steps, then ``full`` ones (both are ``PretrainingDataset``).

    Why: at BERT's random initialisation every attention head is position-blind, and over a 128-token
    sequence the gradient that would teach a head to look at its neighbours is diluted 1/128.  On
    16-token sequences (8x as many per batch, so the same tokens per step) heads learn to look at the
    next and the previous token, and once the sequences are full length the model builds on them.
    google-research/bert also trains short sequences first (128 tokens for 90% of the steps, then 512).
    The masking is BERT's at both lengths; see docs/pretraining.md for what it buys.
    """

    def __init__(self, short, full, short_steps):
        self.short, self.full, self.short_steps = short, full, int(short_steps)

    def batch(self, step):
        """The batch for 0-based ``step``."""
        return (self.short if step < self.short_steps else self.full).next_batch()

    def most_frequent_label(self):
        return self.full.most_frequent_label()

    def state_dict(self):
        return {"short": self.short.state_dict() if self.short is not None else None,
                "full": self.full.state_dict()}

    def load_state_dict(self, state):
        """Continue both streams where they were.  The number of short steps is this run's (like the learning
        rate schedule, it follows ``--max-steps``), so a finished run can be resumed for longer."""
        if not isinstance(state, dict) or not {"short", "full"} <= set(state):
            raise ValueError("the checkpoint's data state has no 'short' and 'full' streams: it was written by "
                             "an older minibert; start a new run")
        self.full.load_state_dict(state["full"])
        if self.short is not None and state["short"] is not None:
            self.short.load_state_dict(state["short"])

    def __repr__(self):
        return (f"SequenceLengthWarmup(steps 1-{self.short_steps}: {self.short!r}; then: {self.full!r})"
                if self.short_steps else repr(self.full))


def pretraining_data(cfg, train_docs, tokenizer):
    """The training stream of ``cfg``: full-length batches, after ``cfg.short_seq_steps`` short ones."""
    from .pretraining_data import PretrainingDataset
    full = PretrainingDataset(train_docs, tokenizer, max_seq_length=cfg.max_seq_length,
                              batch_size=cfg.batch_size, seed=cfg.seed)
    short = None
    if cfg.short_seq_steps:
        T = cfg.short_seq_length
        short = PretrainingDataset(train_docs, tokenizer, max_seq_length=T,
                                   batch_size=cfg.batch_size * cfg.max_seq_length // T, seed=cfg.seed,
                                   max_predictions_per_seq=math.ceil(full.masked_lm_prob * T))  # never caps 15%
    return SequenceLengthWarmup(short, full, cfg.short_seq_steps)


# -- evaluation ------------------------------------------------------------------------------------
def heldout_batches(cfg, tokenizer, heldout_docs):
    """The fixed held-out set of a run: the first ``cfg.eval_batches`` batches of the held-out documents,
    masked once (static masking, seed ``cfg.seed + 1``), the same at every evaluation."""
    from .pretraining_data import PretrainingDataset
    heldout = PretrainingDataset(heldout_docs, tokenizer, max_seq_length=cfg.max_seq_length,
                                 batch_size=cfg.batch_size, seed=cfg.seed + 1, dynamic_masking=False,
                                 drop_last=False)
    return [b for _, b in zip(range(cfg.eval_batches), heldout.epoch_batches(0))]


def evaluate(model, batches, unigram_token=None):
    """Held-out MLM loss/accuracy and NSP loss/accuracy (eval mode, dropout off), averaged per
    prediction.  ``unigram_mlm_accuracy``: always guessing ``unigram_token`` at the same positions."""
    was_training = model.training
    model.eval()
    mlm_loss = mlm_correct = n_mlm = nsp_loss = nsp_correct = n_nsp = uni = 0.0
    for b in batches:
        out = model(**b)
        labels = b["labels"].reshape(-1)[out.masked_positions]
        n = len(labels)
        mlm_loss += float(out.mlm_loss) * n
        mlm_correct += int((out.prediction_logits.argmax(-1) == labels).sum())
        uni += int((labels == unigram_token).sum()) if unigram_token is not None else 0
        n_mlm += n
        nsp_loss += float(out.nsp_loss) * len(b["next_sentence_label"])
        nsp_correct += int((out.seq_relationship_logits.argmax(-1) == b["next_sentence_label"]).sum())
        n_nsp += len(b["next_sentence_label"])
    model.train(was_training)
    return {"mlm_loss": mlm_loss / n_mlm, "mlm_accuracy": mlm_correct / n_mlm,
            "nsp_loss": nsp_loss / n_nsp, "nsp_accuracy": nsp_correct / n_nsp,
            "unigram_mlm_accuracy": uni / n_mlm}


def probe_sentence(corpus, heldout_docs):
    """A held-out sentence with one word masked, to watch fill-mask improve."""
    if corpus == "default":
        return "the [MASK] statement raises an exception if the condition is false ."
    words = heldout_docs[0][0].split()[:12]
    words[min(2, len(words) - 1)] = "[MASK]"
    return " ".join(words)


def batch_metrics(out, batch):
    labels = batch["labels"].reshape(-1)[out.masked_positions]
    return {"mlm_acc": float((out.prediction_logits.argmax(-1) == labels).mean()) if len(labels) else 0.0,
            "nsp_acc": float((out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).mean())}


def fill_mask(model, tokenizer, text, top_k=5):
    """[(position, [(token, probability), ...])] for every [MASK] in ``text``."""
    enc = tokenizer(text, truncation=True, max_length=model.config.max_position_embeddings, return_tensors="np")
    was_training = model.training
    model.eval()
    out = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
    model.train(was_training)
    ids = enc["input_ids"][0]
    results = []
    for t in np.flatnonzero(ids == tokenizer.mask_token_id):
        z = out.prediction_logits[0, t].astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        top = np.argsort(-p)[:top_k]
        results.append((int(t), [(tokenizer.convert_ids_to_tokens(int(i)), float(p[i])) for i in top]))
    return results


# -- checkpoints -----------------------------------------------------------------------------------
def _rng_state(rng):
    return rng.bit_generator.state


def _set_rng_state(rng, state):
    rng.bit_generator.state = state


def save_training_state(path, model, opt, step, data_state, history):
    arrays = {"param/" + n: p for n, p, _ in model.named_parameters()}
    arrays.update({"adam_m/" + n: a for n, a in opt.m.items()})
    arrays.update({"adam_v/" + n: a for n, a in opt.v.items()})
    meta = {"step": step, "adam_t": opt.t, "lr": opt.lr, "dropout_rng": _rng_state(model.dropout_rng),
            "data": data_state, "history": history, "config": model.config.to_dict()}
    save_checkpoint(path, arrays, meta)


def load_training_state(path, model, opt):
    arrays, meta = load_checkpoint(path)
    params = {n[len("param/"):]: a for n, a in arrays.items() if n.startswith("param/")}
    model.load_state_dict(params)
    opt.load_state_dict({"t": meta["adam_t"], "lr": meta["lr"],
                         "m": {n[len("adam_m/"):]: a for n, a in arrays.items() if n.startswith("adam_m/")},
                         "v": {n[len("adam_v/"):]: a for n, a in arrays.items() if n.startswith("adam_v/")}})
    _set_rng_state(model.dropout_rng, meta["dropout_rng"])
    return meta


# -- the loop --------------------------------------------------------------------------------------
def start_or_resume(out, resume, model, opt, data, log=print):
    """-> (checkpoint path, log path, step, history) of a run in ``out``.

    With ``resume`` and a checkpoint there, the model, the optimizer and the data stream are restored to
    it, and log lines written after it (by a run that was killed) are dropped; otherwise a fresh start
    at step 0 (an old log is removed).  Shared by pretraining and fine-tuning.
    """
    ckpt_path, log_path = os.path.join(out, "checkpoint.safetensors"), os.path.join(out, "log.jsonl")
    if resume and os.path.isfile(ckpt_path):
        meta = load_training_state(ckpt_path, model, opt)
        data.load_state_dict(meta["data"])
        _truncate_log(log_path, meta["step"])
        log(f"resumed from {ckpt_path} at step {meta['step']}")
        return ckpt_path, log_path, meta["step"], meta["history"]
    if os.path.exists(log_path):
        os.remove(log_path)
    return ckpt_path, log_path, 0, {"eval": []}


def training_step(model, opt, batch, step, cfg, ckpt_path):
    """One update (shared by pretraining and fine-tuning): forward, backward, clip the gradient norm
    to ``cfg.max_grad_norm``, set the scheduled learning rate, AdamW.  -> (output, gradient norm).

    A NaN/Inf loss or gradient stops the run here, naming the update (``step + 1``) and the last good
    checkpoint, before the optimizer can write it into the weights."""
    out = model(**batch)
    if not np.isfinite(out.loss):
        raise FloatingPointError(f"non-finite loss {out.loss} at step {step + 1}; " + _last_good(ckpt_path))
    model.backward()
    grad_norm = clip_grad_norm(model, cfg.max_grad_norm)
    if not math.isfinite(grad_norm):
        raise FloatingPointError(f"non-finite gradient norm at step {step + 1}; "
                                 + _last_good(ckpt_path) + " (--debug names the kernel that made it)")
    opt.lr = linear_warmup_decay(step, cfg.max_steps, cfg.warmup_steps, cfg.lr)
    opt.step()
    return out, grad_norm


def pretrain(cfg: PretrainConfig):
    """Run (or resume) a pretraining job; returns the metrics dict also written to metrics.json."""
    cfg.validate()
    if cfg.backend:
        backend.set_backend(cfg.backend)
    if cfg.debug:
        backend.set_debug(True)
    os.makedirs(cfg.out, exist_ok=True)
    log = print if cfg.verbose else (lambda *a, **k: None)
    log(f"minibert pretrain: preset={cfg.preset} corpus={cfg.corpus} backend={backend.get_backend()} out={cfg.out}")
    train_docs, heldout_docs = load_corpus(cfg.corpus, cfg.seed, cfg.verbose)
    tokenizer = build_vocab(train_docs, cfg.vocab_size, os.path.join(cfg.out, "vocab.txt"), cfg.verbose)
    data = pretraining_data(cfg, train_docs, tokenizer)
    eval_batches = heldout_batches(cfg, tokenizer, heldout_docs)
    unigram_token = data.most_frequent_label()
    log(f"data: {data!r}\nheld-out: {len(eval_batches)} batches; most frequent token "
        f"{tokenizer.convert_ids_to_tokens(int(unigram_token))!r}")

    model = BertForPreTraining(cfg.model_config(len(tokenizer.vocab)), seed=cfg.seed).train()
    opt = AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    log(repr(model))
    ckpt_path, log_path, step, history = start_or_resume(cfg.out, cfg.resume, model, opt, data, log)

    probe = probe_sentence(cfg.corpus, heldout_docs)
    before = fill_mask(model, tokenizer, probe) if step == 0 else None
    progress = Progress(cfg.max_steps, "pretrain", log_every=10.0 if cfg.verbose else 1e9)
    start, tokens_seen, ema = time.perf_counter(), 0, None
    stopped_early = False
    with open(log_path, "a") as log_file:
        while step < cfg.max_steps:
            if cfg.minutes is not None and time.perf_counter() - start > 60 * cfg.minutes:
                stopped_early = True
                break
            batch = data.batch(step)
            out, grad_norm = training_step(model, opt, batch, step, cfg, ckpt_path)
            step += 1
            tokens_seen += int(batch["attention_mask"].sum())
            m = batch_metrics(out, batch)
            rec = {"step": step, "loss": float(out.loss), "mlm_loss": float(out.mlm_loss),
                   "nsp_loss": float(out.nsp_loss), "lr": opt.lr, "grad_norm": grad_norm,
                   "seq_len": batch["input_ids"].shape[1], **m}
            log_file.write(json.dumps(rec) + "\n")
            ema = rec["loss"] if ema is None else 0.95 * ema + 0.05 * rec["loss"]
            tps = tokens_seen / (time.perf_counter() - start)
            progress.update(step, loss=ema, mlm_acc=m["mlm_acc"], nsp_acc=m["nsp_acc"], tok_s=int(tps))
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                ev = evaluate(model, eval_batches, unigram_token)
                history["eval"].append({"step": step, **ev})
                log(f"\n[eval @ {step}] " + " ".join(f"{k}={v:.4f}" for k, v in ev.items()))
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                log_file.flush()
                save_training_state(ckpt_path, model, opt, step, data.state_dict(), history)
    progress.close()
    elapsed = time.perf_counter() - start
    if not history["eval"] or history["eval"][-1]["step"] != step:
        history["eval"].append({"step": step, **evaluate(model, eval_batches, unigram_token)})
        save_training_state(ckpt_path, model, opt, step, data.state_dict(), history)

    model.save_pretrained(os.path.join(cfg.out, "model"), tokenizer)
    metrics = {"eval": {k: v for k, v in history["eval"][-1].items() if k != "step"},
               "steps": step, "tokens_per_second": tokens_seen / max(elapsed, 1e-9),
               "seconds": elapsed, "stopped_by_time_budget": stopped_early,
               "config": {"pretrain": dataclasses.asdict(cfg), "model": model.config.to_dict()},
               "backend": backend.get_backend(), "peak_memory_mb": peak_memory_mb(),
               "eval_history": history["eval"]}
    atomic_write_bytes(os.path.join(cfg.out, "metrics.json"), json.dumps(metrics, indent=2).encode())
    from .plots import plot_curves
    plot_curves(log_path, history["eval"], os.path.join(cfg.out, "curves.png"),
                unigram=metrics["eval"]["unigram_mlm_accuracy"])
    after = fill_mask(model, tokenizer, probe)
    if cfg.verbose:
        ev = metrics["eval"]
        print(f"\ndone: {step} steps in {elapsed / 60:.1f} min, {metrics['tokens_per_second']:.0f} tokens/s, "
              f"peak memory {metrics['peak_memory_mb']:.0f} MB")
        print(f"held-out MLM accuracy {ev['mlm_accuracy']:.3f} (always-most-frequent-token baseline "
              f"{ev['unigram_mlm_accuracy']:.3f}), MLM loss {ev['mlm_loss']:.3f} (uniform guess "
              f"{math.log(len(tokenizer.vocab)):.3f}); NSP accuracy {ev['nsp_accuracy']:.3f} (chance 0.5)")
        print(f"fill-mask: {probe!r}")
        if before:
            print("  before training: " + ", ".join(f"{t} {p:.3f}" for t, p in before[0][1]))
        print("  after training:  " + ", ".join(f"{t} {p:.3f}" for t, p in after[0][1]))
        print(f"wrote {cfg.out}/metrics.json, curves.png, log.jsonl, model/")
    return metrics


def _last_good(ckpt_path):
    if os.path.isfile(ckpt_path):
        return f"the last good checkpoint is {ckpt_path} (continue with --resume, e.g. with a lower --lr)"
    return "no checkpoint was written yet"


def peak_memory_mb():
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KB)."""
    import resource
    import sys
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _truncate_log(path, step):
    """Drop log lines written after the checkpoint we resume from (a killed run wrote them)."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = [l for l in f if l.strip() and json.loads(l)["step"] <= step]
    atomic_write_bytes(path, "".join(lines).encode())
