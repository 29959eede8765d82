"""Fine-tuning: a pretrained encoder, a new classification layer, a few hundred steps on labelled text.

    from minibert.training.finetune import FinetuneConfig, finetune, compare_starts
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

Three more built-in tasks, the seed's applications, come from ``minibert.training.applications``:
``stdlib-code-tags`` (token tagging), ``stdlib-quoted-qa`` (span QA with answer decoding) and
``stdlib-same-doc`` (sentence pairs).  **One pipeline serves the four**: ``finetune`` builds the head
the task names (``task.kind``: ``BertForSequenceClassification``, ``BertForTokenClassification``,
``BertForQuestionAnswering``), encodes the task, computes its trivial baselines, trains with the one
training loop and writes the same outputs.  What a task must provide (``ClassificationTask`` below and
``applications.ApplicationTask`` do):

    name, kind, metric, label_names, num_labels, progress  (keys of ``record`` shown in the progress bar)
    examples(tokenizer, max_length) -> (train, test)        lists of dicts of token-level lists / ints
    model_inputs(examples) -> the examples the model trains on (the keys its forward takes)
    baselines(train, test) -> {name: {metric: value, ...}}  trivial baselines on the test side
    evaluate(model, test, pad_id) -> {metric: value, "loss": ...};  describe(ev) -> one line
    record(result) -> extra per-step log values (a ``loop.StepResult``)

``freeze_encoder=True`` trains the head only (the encoder's weights stay exactly as loaded: the
feature-based baseline).

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
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import backend
from ..config import option, redefault
from ..files import atomic_write_bytes, read_config, resolve_model_dir
from ..layers.softmax import softmax_forward
from ..models.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from ..optim import AdamW
from . import applications, loop
from .loop import Job, RunConfig
from .plots import _pyplot, read_log, smooth
from .pretrain import PRESETS, build_vocab, load_corpus

TASKS = ("stdlib-packages",) + applications.APPLICATION_TASKS
HEADS = {"sequence": BertForSequenceClassification, "token": BertForTokenClassification,
         "qa": BertForQuestionAnswering}
STDLIB_PACKAGES = ("asyncio", "email", "idlelib", "distutils", "xml", "importlib")
# Fine-tuning steps when --max-steps is not given.  Span QA needs more: a pretrained Tiny grows the
# "find the question word in the context" attention between steps 300 and 600, and at 300 steps whether
# it has yet is a coin toss of the pretraining run (docs/applications.md, "Why 1000 steps for span QA").
DEFAULT_STEPS = {**dict.fromkeys(TASKS, 300), "stdlib-quoted-qa": 1000}


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
    kind = "sequence"          # the head: BertForSequenceClassification on the pooled [CLS]
    metric = "accuracy"        # the headline of evaluate()
    progress = ("accuracy",)   # shown in the progress bar: the step's training accuracy

    def __repr__(self):
        def counts(y):
            return ", ".join(f"{n} {int((y == i).sum())}" for i, n in enumerate(self.label_names))
        return (f"ClassificationTask({self.name!r}, {len(self.label_names)} classes; "
                f"train {len(self.train_texts)} sentences from {len(set(self.train_groups))} modules ({counts(self.train_labels)}); "
                f"test {len(self.test_texts)} sentences from {len(set(self.test_groups))} other modules "
                f"({counts(self.test_labels)}))")

    @property
    def num_labels(self):
        return len(self.label_names)

    def majority_baseline(self):
        """Test accuracy of always answering the most frequent training class."""
        top = np.bincount(self.train_labels, minlength=len(self.label_names)).argmax()
        return float((self.test_labels == top).mean())

    def examples(self, tokenizer, max_length):
        """-> (train, test) examples ``{"input_ids", "labels"}``: ``[CLS] sentence [SEP]`` truncated to
        ``max_length``, the label an int."""
        return tuple([{"input_ids": ids, "labels": int(y)} for ids, y in zip(encode(tokenizer, texts, max_length), labels)]
                     for texts, labels in ((self.train_texts, self.train_labels), (self.test_texts, self.test_labels)))

    def model_inputs(self, examples):
        return examples

    def baselines(self, train=None, test=None):
        """Always the most frequent training class."""
        return {"majority": {"accuracy": self.majority_baseline()}}

    def evaluate(self, model, examples, pad_id=0):
        return evaluate_classifier(model, [ex["input_ids"] for ex in examples],
                                   np.array([ex["labels"] for ex in examples]), self.num_labels, pad_id)

    @staticmethod
    def describe(ev):
        return f"accuracy={ev['accuracy']:.4f} balanced={ev['balanced_accuracy']:.4f} loss={ev['loss']:.4f}"

    @staticmethod
    def record(result):
        return {"accuracy": step_accuracy(result)}


def _hash(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stdlib_package_task(corpus=None, packages=STDLIB_PACKAGES, test_fraction=0.25):
    """The built-in task: docstring sentence -> its standard-library package, held out by module.

    For each package its modules are put in a fixed pseudo-random order (a hash of the name) and
    moved to the test side until it holds ``test_fraction`` of the package's sentences; the rest
    train.  Deterministic: the same Python gives the same split on every machine.
    """
    from ..data.cpython_docs import load_default_corpus
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
    """The built-in task ``name`` (one of ``TASKS``): a ``ClassificationTask`` or an
    ``applications.ApplicationTask``."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {name!r}")
    if name in applications.APPLICATION_TASKS:
        return applications.load_application_task(name, corpus)
    return stdlib_package_task(corpus)


# -- data ------------------------------------------------------------------------------------------
def encode(tokenizer, texts, max_length):
    """Token ids of each text, ``[CLS] ... [SEP]``, truncated to ``max_length``: a list of lists."""
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


# -- evaluation ------------------------------------------------------------------------------------
def step_accuracy(result):
    """Training accuracy of one step (``loop.StepResult``), over all its micro-batches."""
    correct = sum(int((out.logits.argmax(-1) == b["labels"]).sum()) for out, b in zip(result.outputs, result.micro_batches))
    return correct / sum(len(b["labels"]) for b in result.micro_batches)

def predict_logits(model, tokenizer, texts, max_length=128, batch_size=64):
    """(N, K) logits for ``texts`` (eval mode, restored afterwards)."""
    examples = [{"input_ids": ids} for ids in encode(tokenizer, texts, max_length)]
    return np.concatenate([out.logits for _, out in applications.run_eval(model, examples, tokenizer.pad_token_id,
                                                                           batch_size)])


def classify(model, tokenizer, texts, label_names, max_length=128):
    """[(label, probability)] of the most likely class for every text."""
    p, _ = softmax_forward(predict_logits(model, tokenizer, texts, max_length).astype(np.float64))  # (N, K)
    return [(label_names[int(k)], float(p[i, k])) for i, k in enumerate(p.argmax(-1))]


def evaluate_classifier(model, rows, labels, num_labels, pad_id=0, batch_size=64):
    """Held-out loss, accuracy, per-class accuracy and the confusion matrix (rows: truth)."""
    examples = [{"input_ids": r, "labels": int(y)} for r, y in zip(rows, labels)]
    loss, preds = 0.0, []
    for batch, out in applications.run_eval(model, examples, pad_id, batch_size):
        loss += float(out.loss) * len(batch["labels"])
        preds.append(out.logits.argmax(-1))
    preds, labels = np.concatenate(preds), np.asarray(labels)
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {"loss": loss / len(rows), "accuracy": float((preds == labels).mean()),
            "balanced_accuracy": float(per_class.mean()), "per_class_accuracy": per_class.tolist(),
            "confusion": confusion.tolist()}


# -- configuration ---------------------------------------------------------------------------------
@dataclass
class FinetuneConfig(RunConfig):
    """A fine-tuning run; the fields shared with pretraining are ``RunConfig``'s."""
    task: str = option("stdlib-packages", "the built-in labelled task: package classification, code tagging, "
                                          "span QA or same-document sentence pairs", choices=list(TASKS))
    freeze_encoder: bool = option(False, "train the head only: the encoder's weights (bert.*) are not updated "
                                         "and its backward is not run (the feature-based baseline)")
    model: Optional[str] = option(None, "a `minibert pretrain` output directory (OUT or OUT/model) or any "
                                        "transformers-format directory (config.json, model.safetensors, vocab.txt); "
                                        "omitted: a random start with --preset")
    random_init: bool = option(False, "random weights with --model's architecture and vocabulary (the baseline)")
    preset: str = option("tiny", "the architecture of a random start without --model", choices=sorted(PRESETS))
    out: str = redefault(RunConfig, "out", "runs/finetune")
    max_steps: Optional[int] = redefault(RunConfig, "max_steps", None, type=int, shown_default=(
        f"{DEFAULT_STEPS['stdlib-packages']}; {DEFAULT_STEPS['stdlib-quoted-qa']} for stdlib-quoted-qa"))
    seed: int = option(0, "seeds the initialisation (the classifier, or all of a random start), dropout, batch "
                          "order and the --max-train-per-class subset")
    max_seq_length: int = option(64, "longer sentences are truncated")
    lr: float = option(1e-3, "peak learning rate of AdamW (right for minibert's tiny models; a full-size BERT "
                             "wants ~5e-5)")
    warmup_steps: int = redefault(RunConfig, "warmup_steps", 30)
    dropout: Optional[float] = option(None, "hidden and attention dropout while fine-tuning; default: the model's "
                                            "own (0 for a `minibert pretrain` output, which pretrains without; 0.1 for "
                                            "BERT and MiniLM): a dropout the encoder never saw cost our Tiny a third of "
                                            "its span-QA exact match (docs/applications.md)", type=float)
    max_train_per_class: Optional[int] = option(None, "use at most this many labelled sentences per class "
                                                      "(the few-label regime)", type=int)
    vocab_size: int = option(8192, "the vocabulary trained on the corpus for a random start without --model")
    eval_every: int = redefault(RunConfig, "eval_every", 50)
    checkpoint_every: int = redefault(RunConfig, "checkpoint_every", 100)

    def __post_init__(self):
        if self.max_steps is None:
            self.max_steps = DEFAULT_STEPS.get(self.task)  # an unknown task: validate() names it

    def validate(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        self.validate_run()
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size <= 0:
            raise ValueError(f"vocab_size must be a positive integer, got {self.vocab_size!r}")
        if not isinstance(self.max_seq_length, int) or self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be an integer >= 8, got {self.max_seq_length!r}")
        if self.max_train_per_class is not None and (not isinstance(self.max_train_per_class, int)
                                                     or self.max_train_per_class <= 0):
            raise ValueError(f"max_train_per_class must be None or a positive integer, got {self.max_train_per_class!r}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be None or in [0, 1), got {self.dropout!r}")
        if self.model is not None:
            resolve_model_dir(self.model)


def build_model(cfg, num_labels, log=print, head=BertForSequenceClassification):
    """-> (model, tokenizer, start) with start "pretrained" or "random"; ``head`` is the model class."""
    from ..config import BertConfig
    from ..data.tokenizer import BertTokenizer
    overrides = {"num_labels": num_labels}
    if cfg.dropout is not None:
        overrides.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    if cfg.model is not None:
        d = resolve_model_dir(cfg.model)
        tokenizer = BertTokenizer(os.path.join(d, "vocab.txt"))
        if cfg.random_init:
            model = head(read_config(d, **overrides), seed=cfg.seed)
            log(f"random start with the architecture and vocabulary of {d}")
            return model.train(), tokenizer, "random"
        model = head.from_pretrained(d, seed=cfg.seed, verbose=cfg.verbose, **overrides)
        return model.train(), tokenizer, "pretrained"
    train_docs, _ = load_corpus("default", cfg.seed, verbose=False)
    tokenizer = build_vocab(train_docs, cfg.vocab_size, os.path.join(cfg.out, "vocab.txt"), cfg.verbose)
    config = BertConfig(vocab_size=len(tokenizer.vocab), max_position_embeddings=max(cfg.max_seq_length, 8),
                        **PRESETS[cfg.preset], **overrides)
    log(f"random start: preset {cfg.preset} with a {len(tokenizer.vocab)}-piece vocabulary trained on the corpus")
    return head(config, seed=cfg.seed).train(), tokenizer, "random"


def freeze_encoder(model):
    """Train ``model``'s head only: -> the ``trainable`` predicate for ``AdamW``.

    The encoder's backward is not run for this model (its gradients stay at ``zero_grad``'s zeros, so
    the clipped gradient norm is the head's, and a step costs a forward and the head's backward), and
    AdamW skips every ``bert.*`` parameter (no update and no weight decay: the encoder's weights stay
    bit for bit as loaded).  Dropout inside the encoder still runs in training mode."""
    model.bert.backward = lambda *args, **kwargs: None  # an instance attribute: shadows BertModel.backward
    return lambda name: not name.startswith("bert.")


# -- the pipeline ----------------------------------------------------------------------------------
def limit_per_class(examples, n, seed):
    """The first ``n`` examples of each label in a seeded order (the few-label regime), in their order;
    for tasks with one label per example."""
    if np.ndim(examples[0]["labels"]) != 0:
        raise ValueError("max_train_per_class needs one label per example (stdlib-packages, stdlib-same-doc), "
                         "not one per token or a span")
    seen, keep = {}, []
    for i in np.random.default_rng([seed, 7]).permutation(len(examples)):
        y = examples[i]["labels"]
        if seen.get(y, 0) < n:
            seen[y] = seen.get(y, 0) + 1
            keep.append(i)
    return [examples[i] for i in sorted(keep)]


def finetune(cfg: FinetuneConfig, task=None):
    """Fine-tune the head ``task.kind`` names (and the encoder under it, unless ``cfg.freeze_encoder``) on
    any of the four tasks; returns the metrics dict also written to metrics.json, with the task's
    trivial baselines next to the model's held-out scores.  ``task`` defaults to the built-in ``cfg.task``."""
    cfg.validate()
    if cfg.backend:
        backend.set_backend(cfg.backend)
    os.makedirs(cfg.out, exist_ok=True)
    log = print if cfg.verbose else (lambda *a, **k: None)
    task = task if task is not None else load_task(cfg.task)
    model, tokenizer, start = build_model(cfg, task.num_labels, log, head=HEADS[task.kind])
    T = min(cfg.max_seq_length, model.config.max_position_embeddings)
    train, test = task.examples(tokenizer, T)
    if cfg.max_train_per_class:
        train = limit_per_class(train, cfg.max_train_per_class, cfg.seed)
    baselines = task.baselines(train, test)
    data = applications.ExampleBatches(task.model_inputs(train), cfg.batch_size, seed=cfg.seed,
                                       pad_id=tokenizer.pad_token_id)
    mode = "frozen encoder" if cfg.freeze_encoder else "full fine-tuning"
    log(f"minibert finetune: task={task.name} start={start} ({mode}) backend={backend.get_backend()} out={cfg.out}")
    log(f"{task!r}\n{len(train)} training and {len(test)} test examples; baselines: "
        + "; ".join(f"{b} {task.metric}={v[task.metric]:.3f}" for b, v in baselines.items()))
    log(repr(model))
    trainable = freeze_encoder(model) if cfg.freeze_encoder else None
    opt = AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay, trainable=trainable)
    job = Job(f"finetune {task.name} ({start}{', frozen' if cfg.freeze_encoder else ''})", data,
              next_batch=lambda step: data.next_batch(),
              record=lambda result, batch: {**task.record(result), "epoch": data.epoch},
              evaluate=lambda: task.evaluate(model, test, tokenizer.pad_token_id), describe=task.describe,
              progress=task.progress, eval_at_start=True)  # the untrained head first: near chance
    run = loop.run(model, opt, cfg, job, log)

    model_dir = os.path.join(cfg.out, "model")
    model.save_pretrained(model_dir, tokenizer)
    if task.kind != "qa":
        _add_label_names(os.path.join(model_dir, "config.json"), task.label_names)
    history = run.history["eval"]
    best_name, best_baseline = max(((b, v[task.metric]) for b, v in baselines.items()), key=lambda bv: bv[1])
    metrics = {"task": task.name, "kind": task.kind, "metric": task.metric, "labels": task.label_names,
               "start": start, "model": cfg.model, "freeze_encoder": cfg.freeze_encoder,
               "eval": {k: v for k, v in history[-1].items() if k != "step"},
               "best": max(e[task.metric] for e in history), "baselines": baselines,
               "train_examples": len(train), "test_examples": len(test),
               "trainable_parameters": sum(p.size for n, p, _ in model.named_parameters()
                                           if trainable is None or trainable(n)),
               "steps": run.step, "epochs": run.step * cfg.batch_size / len(train), "seconds": run.seconds,
               "stopped_by_time_budget": run.stopped_early, "backend": backend.get_backend(),
               "config": {"finetune": dataclasses.asdict(cfg), "model": model.config.to_dict()},
               "eval_history": [{k: v for k, v in e.items() if k != "confusion"} for e in history]}
    chance = 1 / task.num_labels if task.kind == "sequence" else None
    if task.kind == "sequence":  # the names `--compare` and lesson 08 read
        metrics.update(best_accuracy=metrics["best"], majority_baseline=baselines["majority"]["accuracy"],
                       chance=chance)
    atomic_write_bytes(os.path.join(cfg.out, "metrics.json"), json.dumps(metrics, indent=2).encode())
    plot_finetune_curves(run.log_path, history, os.path.join(cfg.out, "curves.png"), best_baseline, chance,
                         title=f"{task.name}, {start} start", metric=task.metric, baseline_label=best_name)
    if cfg.verbose:
        print(f"\ndone: {run.step} steps ({metrics['epochs']:.1f} epochs) in {run.seconds / 60:.1f} min; held-out "
              f"{task.metric} {history[-1][task.metric]:.3f} (best trivial baseline, {best_name}: {best_baseline:.3f}"
              + (f"; chance {chance:.3f})" if chance else ")"))
        print(f"wrote {cfg.out}/metrics.json, curves.png, log.jsonl, model/")
    return metrics


def compare_starts(cfg: FinetuneConfig, task=None):
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
    metric = task.metric
    summary = {s: {**{k: v for k, v in m["eval"].items() if np.isscalar(v)}, "best_" + metric: m["best"]}
               for s, m in runs.items()}
    summary.update(metric=metric, baselines=runs["random"]["baselines"])
    if task.kind == "sequence":
        summary.update(majority_baseline=runs["random"]["majority_baseline"], chance=runs["random"]["chance"])
    atomic_write_bytes(os.path.join(cfg.out, "comparison.json"), json.dumps(summary, indent=2).encode())
    plot_comparison(runs, os.path.join(cfg.out, "comparison.png"))
    if cfg.verbose:
        base = max((v[metric], b) for b, v in summary["baselines"].items())
        print(f"held-out {metric}: pretrained start {summary['pretrained'][metric]:.3f}, random start "
              f"{summary['random'][metric]:.3f} (best trivial baseline, {base[1]}: {base[0]:.3f}); "
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
def plot_finetune_curves(log_path, eval_history, out_path, majority=None, chance=None, title=None, axes=None,
                         metric="accuracy", baseline_label="majority"):
    """Training loss (raw and smoothed) with held-out loss, and the held-out ``metric``, over steps
    (``majority``: a baseline's value, drawn as a line labelled ``baseline_label``; ``chance``: another)."""
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
    ax.plot([e["step"] for e in eval_history], [e[metric] for e in eval_history], "o-", label=f"held-out {metric}")
    if majority is not None:
        ax.axhline(majority, ls="--", color="gray", label=f"baseline: {baseline_label}")
    if chance is not None:
        ax.axhline(chance, ls=":", color="gray", label="chance")
    ax.set_ylim(0, 1), ax.set_xlabel("step"), ax.set_title(f"held-out {metric}"), ax.legend()
    if fig is not None:
        fig.tight_layout()
        fig.savefig(out_path, dpi=100)
        plt.close(fig)


def plot_comparison(runs, out_path=None, ax=None):
    """The held-out metric over steps, one line per run ({"pretrained": metrics, "random": metrics, ...}),
    with the task's best trivial baseline (and chance, for a classification)."""
    plt = _pyplot()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
    any_run = next(iter(runs.values()))
    metric = any_run.get("metric", "accuracy")
    for i, (start, m) in enumerate(runs.items()):
        h = m["eval_history"]
        ax.plot([e["step"] for e in h], [e[metric] for e in h], "o-", color=f"C{i}",
                label=f"{start} ({h[-1][metric]:.2f})")
    value, name = max((v[metric], b) for b, v in any_run["baselines"].items())
    ax.axhline(value, ls="--", color="gray", label=f"baseline: {name}")
    if any_run.get("chance"):
        ax.axhline(any_run["chance"], ls=":", color="gray", label="chance")
    ax.set_ylim(0, 1), ax.set_xlabel("fine-tuning step"), ax.set_ylabel(f"held-out {metric}")
    ax.set_title(f"{any_run['task']}: pretrained vs random start"), ax.legend()
    if fig is not None and out_path is not None:
        fig.tight_layout()
        fig.savefig(out_path, dpi=100)
        plt.close(fig)
    return ax
