"""Fine-tuning: a pretrained encoder, a new classification layer, a few hundred steps on labelled text.

    from minibert.finetune import FinetuneConfig, finetune, compare_starts
    metrics = finetune(FinetuneConfig(model="runs/pretrain", out="runs/finetune"))        # pretrained start
    metrics = finetune(FinetuneConfig(model="runs/pretrain", random_init=True, out=...))  # same net, random
    both = compare_starts(FinetuneConfig(model="runs/pretrain", out="runs/compare"))      # both + a plot

The built-in task, ``stdlib-packages``, needs no download: *which standard-library package does this
docstring sentence come from?*  The sentences are those of the default pretraining corpus (CPython's
own documentation), labelled by the package of their module (``asyncio``, ``email``, ``idlelib``,
``distutils``, ``xml``, ``importlib``).  The split is **by module**: every sentence of
``asyncio.locks`` is either for training or for testing, so the test asks "have you learned what
asyncio is about?", not "have you seen this module?".  (Pretraining saw the text of the test modules,
without labels, as BERT's Wikipedia saw the text of many of its benchmarks; the pretrained and the
random start are trained and tested on exactly the same labelled data.)

``model`` is a minibert pretraining output (``OUT`` or ``OUT/model``) or any transformers-format
directory with ``config.json``, ``model.safetensors`` and ``vocab.txt`` (all-MiniLM-L6-v2, say).
Without ``model`` the network is the ``preset`` architecture with a vocabulary trained on the corpus.

Writes into ``out``, as pretraining does: ``log.jsonl`` (one line per step), ``checkpoint.safetensors``
(``resume=True`` continues from it exactly), ``metrics.json``, ``curves.png`` and ``model/`` (loadable by
``minibert.BertForSequenceClassification.from_pretrained`` and by transformers).
"""
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import backend
from .checkpoint import atomic_write_bytes
from .heads import BertForSequenceClassification
from .optim import AdamW
from .progress import Progress
from .train import PRESETS, build_vocab, save_training_state, start_or_resume, training_step

TASKS = ("stdlib-packages",)
STDLIB_PACKAGES = ("asyncio", "email", "idlelib", "distutils", "xml", "importlib")


# -- the task --------------------------------------------------------------------------------------
@dataclass
class ClassificationTask:
    """Labelled sentences, split into train and test; ``label_names[i]`` names class i."""
    name: str
    label_names: list
    train_texts: list
    train_labels: np.ndarray   # (N_train,) int
    test_texts: list
    test_labels: np.ndarray    # (N_test,) int
    train_groups: list         # the module of every training sentence (the unit of the split)
    test_groups: list

    def __repr__(self):
        def counts(y):
            return ", ".join(f"{n} {int((y == i).sum())}" for i, n in enumerate(self.label_names))
        return (f"ClassificationTask({self.name!r}, {len(self.label_names)} classes; "
                f"train {len(self.train_texts)} sentences from {len(set(self.train_groups))} modules ({counts(self.train_labels)}); "
                f"test {len(self.test_texts)} sentences from {len(set(self.test_groups))} other modules "
                f"({counts(self.test_labels)}))")

    def majority_baseline(self):
        """Test accuracy of always answering the most frequent training class."""
        top = np.bincount(self.train_labels, minlength=len(self.label_names)).argmax()
        return float((self.test_labels == top).mean())


def _hash(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stdlib_package_task(corpus=None, packages=STDLIB_PACKAGES, test_fraction=0.25):
    """The built-in task: docstring sentence -> its standard-library package, held out by module.

    For each package its modules are put in a fixed pseudo-random order (a hash of the name) and
    moved to the test side until it holds ``test_fraction`` of the package's sentences; the rest
    train.  Deterministic: the same Python gives the same split on every machine.
    """
    from .corpus import load_default_corpus
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    corpus = corpus if corpus is not None else load_default_corpus()
    by_package = {p: [] for p in packages}  # package -> [(module, sentences)]
    for docs, titles in ((corpus.train, corpus.train_titles), (corpus.heldout, corpus.heldout_titles)):
        for doc, title in zip(docs, titles):
            module = title[len("module:"):] if title.startswith("module:") else None
            if module and "." in module and module.split(".")[0] in by_package:
                by_package[module.split(".")[0]].append((module, doc))
    task = ClassificationTask("stdlib-packages", list(packages), [], [], [], [], [], [])
    for label, package in enumerate(packages):
        modules = sorted(by_package[package], key=lambda m: _hash(m[0]))
        if len(modules) < 2:
            raise ValueError(f"package {package!r} has {len(modules)} documented submodule(s) in the corpus; "
                             "a split by module needs at least 2")
        total = sum(len(doc) for _, doc in modules)
        held = 0
        for i, (module, doc) in enumerate(modules):
            to_test = held < test_fraction * total and i < len(modules) - 1  # keep >= 1 training module
            held += len(doc) if to_test else 0
            texts, labels, groups = ((task.test_texts, task.test_labels, task.test_groups) if to_test else
                                     (task.train_texts, task.train_labels, task.train_groups))
            texts.extend(doc)
            labels.extend([label] * len(doc))
            groups.extend([module] * len(doc))
    task.train_labels = np.array(task.train_labels, dtype=np.int64)
    task.test_labels = np.array(task.test_labels, dtype=np.int64)
    return task


def load_task(name, corpus=None):
    if name not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {name!r}")
    return stdlib_package_task(corpus)


# -- data ------------------------------------------------------------------------------------------
def encode(tokenizer, texts, max_length):
    """Token ids of each text, ``[CLS] ... [SEP]``, truncated to ``max_length``: a list of lists."""
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def pad_batch(rows, pad_id=0):
    """Lists of ids -> ``input_ids`` and ``attention_mask`` (b, T), T = the longest row of *this* batch
    (short batches cost less: attention is O(T^2))."""
    T = max(len(r) for r in rows)
    ids = np.full((len(rows), T), pad_id, dtype=np.int64)  # (b, T)
    mask = np.zeros((len(rows), T), dtype=np.int64)  # (b, T)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return ids, mask


class ClassificationBatches:
    """Shuffled batches of (ids, labels), a new order every epoch; its position is checkpointed."""

    def __init__(self, rows, labels, batch_size, seed=0, pad_id=0):
        self.rows, self.labels = rows, np.asarray(labels)
        self.batch_size, self.seed, self.pad_id = batch_size, seed, pad_id
        self.epoch, self.index = 0, 0

    def __repr__(self):
        return (f"ClassificationBatches({len(self.rows)} examples, batch_size={self.batch_size}, "
                f"epoch {self.epoch}, batch {self.index})")

    def _order(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))

    def next_batch(self):
        n_batches = max(1, len(self.rows) // self.batch_size)  # drop the last partial batch
        if self.index >= n_batches:
            self.epoch, self.index = self.epoch + 1, 0
        take = self._order(self.epoch)[self.index * self.batch_size:(self.index + 1) * self.batch_size]
        self.index += 1
        ids, mask = pad_batch([self.rows[i] for i in take], self.pad_id)
        return dict(input_ids=ids, attention_mask=mask, labels=self.labels[take])

    def state_dict(self):
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state):
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


# -- evaluation ------------------------------------------------------------------------------------
def predict_logits(model, tokenizer, texts, max_length=128, batch_size=64):
    """(N, K) logits for ``texts`` (eval mode, restored afterwards)."""
    rows = encode(tokenizer, texts, max_length)
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(rows), batch_size):
        ids, mask = pad_batch(rows[i:i + batch_size], tokenizer.pad_token_id)
        out.append(model(ids, attention_mask=mask).logits)
    model.train(was_training)
    return np.concatenate(out)


def classify(model, tokenizer, texts, label_names, max_length=128):
    """[(label, probability)] of the most likely class for every text."""
    z = predict_logits(model, tokenizer, texts, max_length).astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return [(label_names[int(k)], float(p[i, k])) for i, k in enumerate(p.argmax(-1))]


def evaluate_classifier(model, rows, labels, num_labels, pad_id=0, batch_size=64):
    """Held-out loss, accuracy, per-class accuracy and the confusion matrix (rows: truth)."""
    was_training = model.training
    model.eval()
    loss, preds = 0.0, []
    for i in range(0, len(rows), batch_size):
        ids, mask = pad_batch(rows[i:i + batch_size], pad_id)
        out = model(ids, attention_mask=mask, labels=labels[i:i + batch_size])
        loss += float(out.loss) * len(ids)
        preds.append(out.logits.argmax(-1))
    model.train(was_training)
    preds = np.concatenate(preds)
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {"loss": loss / len(rows), "accuracy": float((preds == labels).mean()),
            "balanced_accuracy": float(per_class.mean()), "per_class_accuracy": per_class.tolist(),
            "confusion": confusion.tolist()}


# -- configuration ---------------------------------------------------------------------------------
@dataclass
class FinetuneConfig:
    task: str = "stdlib-packages"
    model: Optional[str] = None      # pretraining output (OUT or OUT/model) or a transformers-format dir
    random_init: bool = False        # same architecture and vocabulary as ``model``, random weights
    preset: str = "tiny"             # the architecture when there is no ``model``
    out: str = "runs/finetune"
    max_steps: int = 300
    minutes: Optional[float] = None  # stop earlier when this wall-clock budget is spent
    seed: int = 0
    batch_size: int = 32
    max_seq_length: int = 64
    lr: float = 1e-3                 # right for minibert's tiny models; a full-size BERT wants ~5e-5
    warmup_steps: int = 30
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    dropout: Optional[float] = 0.1   # BERT's fine-tuning dropout, whatever the pretraining used; None: the model's
    max_train_per_class: Optional[int] = None  # fewer labels: where pretraining matters most
    vocab_size: int = 8192           # of the vocabulary trained when there is no ``model``
    eval_every: int = 50
    checkpoint_every: int = 100
    resume: bool = False
    backend: Optional[str] = None
    verbose: bool = True

    def validate(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for name in ("max_steps", "batch_size", "eval_every", "checkpoint_every", "vocab_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.max_seq_length, int) or self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be an integer >= 8, got {self.max_seq_length!r}")
        if self.max_train_per_class is not None and (not isinstance(self.max_train_per_class, int)
                                                     or self.max_train_per_class <= 0):
            raise ValueError(f"max_train_per_class must be None or a positive integer, got {self.max_train_per_class!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be None or in [0, 1), got {self.dropout!r}")
        if self.model is not None:
            resolve_model_dir(self.model)


def resolve_model_dir(path):
    """The transformers-format directory in ``path``: ``path`` itself or ``path/model`` (a pretraining
    output).  It needs config.json, model.safetensors and vocab.txt."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    for d in (path, os.path.join(path, "model")):
        if os.path.isfile(os.path.join(d, "config.json")):
            for name in ("model.safetensors", "vocab.txt"):
                if not os.path.isfile(os.path.join(d, name)):
                    raise FileNotFoundError(f"{os.path.join(d, name)} not found: a model to fine-tune needs "
                                            "config.json, model.safetensors and vocab.txt")
            return d
    raise FileNotFoundError(f"no model in {path}: expected config.json, model.safetensors and vocab.txt there or in "
                            f"{os.path.join(path, 'model')} (the model/ folder of a `minibert pretrain` output)")


def build_model(cfg, num_labels, log=print):
    """-> (model, tokenizer, start) with start "pretrained" or "random"."""
    from .config import BertConfig
    from .pretrained import read_config
    from .tokenizer import BertTokenizer
    overrides = {"num_labels": num_labels}
    if cfg.dropout is not None:
        overrides.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    if cfg.model is not None:
        d = resolve_model_dir(cfg.model)
        tokenizer = BertTokenizer(os.path.join(d, "vocab.txt"))
        if cfg.random_init:
            model = BertForSequenceClassification(read_config(d, **overrides), seed=cfg.seed)
            log(f"random start with the architecture and vocabulary of {d}")
            return model.train(), tokenizer, "random"
        model = BertForSequenceClassification.from_pretrained(d, seed=cfg.seed, verbose=cfg.verbose, **overrides)
        return model.train(), tokenizer, "pretrained"
    from .train import load_corpus
    train_docs, _ = load_corpus("default", cfg.seed, verbose=False)
    tokenizer = build_vocab(train_docs, cfg.vocab_size, os.path.join(cfg.out, "vocab.txt"), cfg.verbose)
    config = BertConfig(vocab_size=len(tokenizer.vocab), max_position_embeddings=max(cfg.max_seq_length, 8),
                        **PRESETS[cfg.preset], **overrides)
    log(f"random start: preset {cfg.preset} with a {len(tokenizer.vocab)}-piece vocabulary trained on the corpus")
    return BertForSequenceClassification(config, seed=cfg.seed).train(), tokenizer, "random"


# -- the loop --------------------------------------------------------------------------------------
def finetune(cfg: FinetuneConfig, task: Optional[ClassificationTask] = None):
    """Fine-tune a classification head (and the encoder under it); returns the metrics dict also
    written to metrics.json.  ``task`` defaults to the built-in ``cfg.task``."""
    cfg.validate()
    if cfg.backend:
        backend.set_backend(cfg.backend)
    os.makedirs(cfg.out, exist_ok=True)
    log = print if cfg.verbose else (lambda *a, **k: None)
    task = task if task is not None else load_task(cfg.task)
    K = len(task.label_names)
    model, tokenizer, start = build_model(cfg, K, log)
    T = min(cfg.max_seq_length, model.config.max_position_embeddings)
    train_idx = np.arange(len(task.train_texts))
    if cfg.max_train_per_class:  # the first n of each class in a seeded order
        order = np.random.default_rng([cfg.seed, 7]).permutation(len(train_idx))
        seen = np.zeros(K, dtype=int)
        keep = []
        for i in order:
            if seen[task.train_labels[i]] < cfg.max_train_per_class:
                seen[task.train_labels[i]] += 1
                keep.append(i)
        train_idx = np.sort(np.array(keep))
    train_rows = encode(tokenizer, [task.train_texts[i] for i in train_idx], T)
    train_labels = task.train_labels[train_idx]
    test_rows = encode(tokenizer, task.test_texts, T)
    data = ClassificationBatches(train_rows, train_labels, cfg.batch_size, seed=cfg.seed, pad_id=tokenizer.pad_token_id)
    majority = task.majority_baseline()
    log(f"minibert finetune: task={task.name} start={start} backend={backend.get_backend()} out={cfg.out}")
    log(f"{task!r}\ntraining on {len(train_rows)} sentences; majority-class test accuracy {majority:.3f}, "
        f"chance {1 / K:.3f}")
    log(repr(model))

    opt = AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_path, log_path, step, history = start_or_resume(cfg.out, cfg.resume, model, opt, data, log)

    def run_eval():
        ev = evaluate_classifier(model, test_rows, task.test_labels, K, tokenizer.pad_token_id)
        history["eval"].append({"step": step, **ev})
        log(f"\n[eval @ {step}] accuracy={ev['accuracy']:.4f} balanced={ev['balanced_accuracy']:.4f} "
            f"loss={ev['loss']:.4f}")

    if step == 0 and not history["eval"]:
        run_eval()  # the untrained head: accuracy near chance
    progress = Progress(cfg.max_steps, f"finetune ({start})", log_every=10.0 if cfg.verbose else 1e9)
    t0, ema, stopped_early = time.perf_counter(), None, False
    with open(log_path, "a") as log_file:
        while step < cfg.max_steps:
            if cfg.minutes is not None and time.perf_counter() - t0 > 60 * cfg.minutes:
                stopped_early = True
                break
            batch = data.next_batch()
            out, grad_norm = training_step(model, opt, batch, step, cfg, ckpt_path)
            step += 1
            acc = float((out.logits.argmax(-1) == batch["labels"]).mean())
            rec = {"step": step, "loss": float(out.loss), "accuracy": acc, "lr": opt.lr, "grad_norm": grad_norm}
            log_file.write(json.dumps(rec) + "\n")
            ema = rec["loss"] if ema is None else 0.9 * ema + 0.1 * rec["loss"]
            progress.update(step, loss=ema, acc=acc, epoch=data.epoch)
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                run_eval()
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                log_file.flush()
                save_training_state(ckpt_path, model, opt, step, data.state_dict(), history)
    progress.close()
    elapsed = time.perf_counter() - t0
    if history["eval"][-1]["step"] != step:
        run_eval()
        save_training_state(ckpt_path, model, opt, step, data.state_dict(), history)

    model_dir = os.path.join(cfg.out, "model")
    model.save_pretrained(model_dir, tokenizer)
    _add_label_names(os.path.join(model_dir, "config.json"), task.label_names)
    final = history["eval"][-1]
    metrics = {"task": task.name, "labels": task.label_names, "start": start, "model": cfg.model,
               "eval": {k: v for k, v in final.items() if k != "step"},
               "best_accuracy": max(e["accuracy"] for e in history["eval"]),
               "majority_baseline": majority, "chance": 1 / K,
               "train_examples": len(train_rows), "test_examples": len(test_rows),
               "steps": step, "epochs": step * cfg.batch_size / len(train_rows), "seconds": elapsed,
               "stopped_by_time_budget": stopped_early, "backend": backend.get_backend(),
               "config": {"finetune": dataclasses.asdict(cfg), "model": model.config.to_dict()},
               "eval_history": [{k: v for k, v in e.items() if k != "confusion"} for e in history["eval"]]}
    atomic_write_bytes(os.path.join(cfg.out, "metrics.json"), json.dumps(metrics, indent=2).encode())
    plot_finetune_curves(log_path, history["eval"], os.path.join(cfg.out, "curves.png"), majority, 1 / K,
                         title=f"{task.name}, {start} start")
    if cfg.verbose:
        print(f"\ndone: {step} steps ({metrics['epochs']:.1f} epochs) in {elapsed / 60:.1f} min; held-out accuracy "
              f"{final['accuracy']:.3f} (majority class {majority:.3f}, chance {1 / K:.3f})")
        print(f"wrote {cfg.out}/metrics.json, curves.png, log.jsonl, model/")
    return metrics


def compare_starts(cfg: FinetuneConfig, task: Optional[ClassificationTask] = None):
    """Fine-tune twice with the same data and settings, from ``cfg.model``'s weights and from random
    weights of the same architecture; writes ``out/pretrained``, ``out/random``, ``comparison.json``
    and ``comparison.png``.  Returns ``{"pretrained": metrics, "random": metrics}``."""
    if cfg.model is None:
        raise ValueError("compare_starts needs cfg.model: the pretrained weights to compare with a random start")
    task = task if task is not None else load_task(cfg.task)
    runs = {}
    for start, random_init in (("pretrained", False), ("random", True)):
        runs[start] = finetune(dataclasses.replace(cfg, random_init=random_init, out=os.path.join(cfg.out, start)),
                               task)
    summary = {s: {"accuracy": m["eval"]["accuracy"], "balanced_accuracy": m["eval"]["balanced_accuracy"],
                   "best_accuracy": m["best_accuracy"]} for s, m in runs.items()}
    summary.update(majority_baseline=runs["random"]["majority_baseline"], chance=runs["random"]["chance"])
    atomic_write_bytes(os.path.join(cfg.out, "comparison.json"), json.dumps(summary, indent=2).encode())
    plot_comparison(runs, os.path.join(cfg.out, "comparison.png"))
    if cfg.verbose:
        print(f"held-out accuracy: pretrained start {summary['pretrained']['accuracy']:.3f}, random start "
              f"{summary['random']['accuracy']:.3f} (majority class {summary['majority_baseline']:.3f}); "
              f"wrote {cfg.out}/comparison.png")
    return runs


def _add_label_names(config_path, label_names):
    """transformers' id2label/label2id in config.json, so pipelines print package names."""
    with open(config_path) as f:
        d = json.load(f)
    d["id2label"] = {str(i): n for i, n in enumerate(label_names)}
    d["label2id"] = {n: i for i, n in enumerate(label_names)}
    atomic_write_bytes(config_path, json.dumps(d, indent=2, sort_keys=True).encode())


# -- plots -----------------------------------------------------------------------------------------
def plot_finetune_curves(log_path, eval_history, out_path, majority=None, chance=None, title=None, axes=None):
    """Training loss (raw and smoothed) with held-out loss, and held-out accuracy, over steps."""
    from .plots import _pyplot, read_log, smooth
    plt = _pyplot()
    rows = read_log(log_path)
    steps = [r["step"] for r in rows]
    fig = None
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot(steps, [r["loss"] for r in rows], alpha=0.25, color="C0")
    ax.plot(steps, smooth([r["loss"] for r in rows], 10), color="C0", label="train loss")
    ax.plot([e["step"] for e in eval_history], [e["loss"] for e in eval_history], "o-", color="C3",
            label="held-out loss")
    ax.set_xlabel("step"), ax.set_title("cross-entropy" + (f" ({title})" if title else "")), ax.legend()
    ax = axes[1]
    ax.plot([e["step"] for e in eval_history], [e["accuracy"] for e in eval_history], "o-", label="held-out accuracy")
    if majority is not None:
        ax.axhline(majority, ls="--", color="gray", label="majority class")
    if chance is not None:
        ax.axhline(chance, ls=":", color="gray", label="chance")
    ax.set_ylim(0, 1), ax.set_xlabel("step"), ax.set_title("held-out accuracy"), ax.legend()
    if fig is not None:
        fig.tight_layout()
        fig.savefig(out_path, dpi=100)
        plt.close(fig)


def plot_comparison(runs, out_path=None, ax=None):
    """Held-out accuracy over steps, one line per start ({"pretrained": metrics, "random": metrics})."""
    from .plots import _pyplot
    plt = _pyplot()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (start, m) in enumerate(runs.items()):
        h = m["eval_history"]
        ax.plot([e["step"] for e in h], [e["accuracy"] for e in h], "o-", color=f"C{i}",
                label=f"{start} start ({h[-1]['accuracy']:.2f})")
    any_run = next(iter(runs.values()))
    ax.axhline(any_run["majority_baseline"], ls="--", color="gray", label="majority class")
    ax.axhline(any_run["chance"], ls=":", color="gray", label="chance")
    ax.set_ylim(0, 1), ax.set_xlabel("fine-tuning step"), ax.set_ylabel("held-out accuracy")
    ax.set_title(f"{any_run['task']}: pretrained vs random start"), ax.legend()
    if fig is not None and out_path is not None:
        fig.tight_layout()
        fig.savefig(out_path, dpi=100)
        plt.close(fig)
    return ax


# -- the command line ------------------------------------------------------------------------------
def add_subparser(sub):
    """``minibert finetune``: the arguments mirror ``FinetuneConfig``."""
    from .cli import ShowDefaultsFormatter, add_run_options
    d = FinetuneConfig()
    p = sub.add_parser("finetune", formatter_class=ShowDefaultsFormatter, help="fine-tune a sequence classifier (pretrained or random start) on a built-in task",
                       description="Fine-tune BertForSequenceClassification on the built-in task "
                                   "'stdlib-packages' (which standard-library package does a docstring sentence "
                                   "come from; held out by module). Writes log.jsonl, checkpoint.safetensors, "
                                   "metrics.json, curves.png and model/ into --out.")
    p.add_argument("--model", default=None,
                   help="a `minibert pretrain` output directory (OUT or OUT/model) or any transformers-format "
                        "directory (config.json, model.safetensors, vocab.txt); omitted: a random start with --preset")
    p.add_argument("--random-init", action="store_true",
                   help="random weights with --model's architecture and vocabulary (the baseline)")
    p.add_argument("--compare", action="store_true",
                   help="run both starts (OUT/pretrained, OUT/random) and plot OUT/comparison.png")
    p.add_argument("--task", choices=TASKS, default=d.task, help="the built-in labelled task")
    p.add_argument("--preset", choices=sorted(PRESETS), default=d.preset,
                   help="the architecture of a random start without --model")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps per start")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seeds the initialisation (the classifier, or all of a random start), dropout, "
                        "batch order and the --max-train-per-class subset")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sentences per step")
    p.add_argument("--max-seq-length", type=int, default=d.max_seq_length,
                   help="longer sentences are truncated")
    p.add_argument("--lr", type=float, default=d.lr,
                   help="peak learning rate of AdamW (a full-size BERT wants ~5e-5)")
    p.add_argument("--dropout", type=float, default=d.dropout,
                   help="hidden and attention dropout while fine-tuning (BERT's 0.1, even though minibert pretrains without)")
    p.add_argument("--max-train-per-class", type=int, default=None,
                   help="use at most this many labelled sentences per class (the few-label regime)")
    add_run_options(p, d)
    return p


def run(args):
    """Run ``minibert finetune`` from parsed arguments; returns the exit code."""
    cfg = FinetuneConfig(
        task=args.task, model=args.model, random_init=args.random_init, preset=args.preset, out=args.out,
        max_steps=args.max_steps, minutes=args.minutes, seed=args.seed, batch_size=args.batch_size,
        max_seq_length=args.max_seq_length, lr=args.lr, warmup_steps=args.warmup_steps, dropout=args.dropout,
        max_train_per_class=args.max_train_per_class, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, resume=args.resume, backend=args.backend, verbose=not args.quiet)
    if args.compare:
        if args.random_init:
            raise ValueError("--compare runs both starts itself; drop --random-init")
        compare_starts(cfg)
    else:
        finetune(cfg)
    return 0
